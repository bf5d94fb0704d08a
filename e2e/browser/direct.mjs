// A web app on another origin uploading straight to crunchbox's S3 from
// headless Chromium, as a browser app with presigned URLs does: the page's
// own `fetch` runs the CORS preflight and the actual request, so what the
// browser allows or blocks is what this reports.
//
// usage: node direct.mjs PLAN_JSON
// PLAN_JSON: {"allowed_port", "blocked_port", "put_url", "get_url", "post": {url, fields},
//             "blocked_put_url", "content_b64"}
// Serves an empty page on both ports (two origins the bucket's CORS rules
// tell apart) and prints one JSON object:
//   {allowed: {put, get, post}, blocked: {put}} with each step's status,
//   headers the page could read, or the error the browser raised.
import http from "node:http";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

function servePage(port) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>app</title><p>app page</p>");
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

/** Runs in the page: PUT, read back, form POST; every failure captured. */
async function allowedSteps(plan) {
  const bytes = Uint8Array.from(atob(plan.content_b64), (c) => c.charCodeAt(0));
  const step = async (fn) => {
    try {
      return await fn();
    } catch (e) {
      return { error: String(e) };
    }
  };
  const put = await step(async () => {
    const r = await fetch(plan.put_url, { method: "PUT", body: bytes, headers: { "Content-Type": "image/png" } });
    return { status: r.status, etag: r.headers.get("ETag") };
  });
  const get = await step(async () => {
    const r = await fetch(plan.get_url);
    const back = new Uint8Array(await r.arrayBuffer());
    return { status: r.status, same: back.length === bytes.length && back.every((b, i) => b === bytes[i]) };
  });
  const post = await step(async () => {
    const form = new FormData();
    for (const [k, v] of Object.entries(plan.post.fields)) form.append(k, v);
    form.append("file", new Blob([bytes], { type: "image/png" }), "face.png");
    const r = await fetch(plan.post.url, { method: "POST", body: form });
    return { status: r.status, body: await r.text() };
  });
  return { put, get, post };
}

async function blockedSteps(plan) {
  try {
    const r = await fetch(plan.blocked_put_url, {
      method: "PUT",
      body: new Uint8Array([1, 2, 3]),
      headers: { "Content-Type": "image/png" },
    });
    return { put: { status: r.status } };
  } catch (e) {
    return { put: { error: String(e) } };
  }
}

const servers = [await servePage(plan.allowed_port), await servePage(plan.blocked_port)];
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
});
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${plan.allowed_port}/`);
  const allowed = await page.evaluate(allowedSteps, plan);
  await page.goto(`http://127.0.0.1:${plan.blocked_port}/`);
  const blocked = await page.evaluate(blockedSteps, plan);
  console.log(JSON.stringify({ allowed, blocked }));
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
  for (const s of servers) s.close();
}
