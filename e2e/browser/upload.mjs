// Drives crunchbox's upload page (`GET /`) in headless Chromium the way a
// person would: pick a file in the page's file input, wait (no reload) for the
// three variant images, measure them, take a screenshot.
//
// usage: node upload.mjs PAGE_URL IMAGE_FILE SCREENSHOT_PNG [TOKEN]
// Prints one JSON object on stdout:
//   {status, variants: {name: {src, width, height}}, shown, navigations, errors,
//    requests: ["METHOD /path", ...], imageTypes: {"/a/...": content-type}}
// Exits non-zero (with the reason on stderr) if the page never shows the images.
// With EXPECT_ERROR=1 it instead waits for the page to show an error; status
// is then that error's text.
import { chromium } from "playwright-core";

const [pageUrl, imageFile, screenshot, token] = process.argv.slice(2);
if (!pageUrl || !imageFile || !screenshot) {
  console.error("usage: node upload.mjs PAGE_URL IMAGE_FILE SCREENSHOT_PNG [TOKEN]");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const timeout = Number(process.env.UPLOAD_TIMEOUT_MS || 60000);
const expectError = process.env.EXPECT_ERROR === "1";

/** Everything the page reported that a user would call a problem. */
const errors = [];

async function drive(page) {
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  page.on("requestfailed", (r) => {
    // The page closes its EventSource once the upload settles, which may
    // abort the stream just before the server ends it: not a failure.
    const closedStream = r.resourceType() === "eventsource" && r.failure()?.errorText === "net::ERR_ABORTED";
    if (!closedStream) errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`http ${r.status()}: ${r.request().method()} ${r.url()}`); });
  // What the page asked the server for (polls would show here), and what
  // each <img> got for its own Accept header.
  const requests = [];
  const imageTypes = {};
  page.on("request", (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
  page.on("response", (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith("/a/")) imageTypes[path] = r.headers()["content-type"];
  });

  const response = await page.goto(pageUrl, { waitUntil: "load" });
  if (!response || !response.ok()) throw new Error(`GET ${pageUrl} answered ${response?.status()}`);
  if (token !== undefined) await page.fill("#token", token);

  // Count main-frame navigations from here on: the images must appear without a reload.
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations += 1; });

  await page.setInputFiles("#file", imageFile);
  if (expectError) {
    await page.waitForSelector("#status.error", { timeout });
  } else {
    try {
      await page.waitForFunction(
        () => {
          const imgs = [...document.querySelectorAll("#variants img")];
          return imgs.length === 3 && imgs.every((i) => i.complete && i.naturalWidth > 0);
        },
        null,
        { timeout, polling: 100 },
      );
    } catch (e) {
      const status = await page.textContent("#status").catch(() => "?");
      throw new Error(`variants did not appear within ${timeout} ms; page says ${JSON.stringify(status)}; ${errors.join("; ")}`);
    }
    // Let the captions pick up the sizes before the picture is taken.
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#variants figcaption")].every((c) => c.textContent.includes("×")),
    );
  }

  const variants = await page.$$eval("#variants img", (imgs) =>
    Object.fromEntries(imgs.map((i) => [i.dataset.variant, { src: i.src, width: i.naturalWidth, height: i.naturalHeight }])),
  );
  await page.screenshot({ path: screenshot, fullPage: true });
  const status = await page.textContent("#status");
  return { status, variants, shown: Object.keys(variants).length, navigations, errors, requests, imageTypes };
}

// --no-sandbox: CI containers often run as root, where Chromium's sandbox refuses to start.
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  console.log(JSON.stringify(await drive(page)));
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
