"""The upload page (`GET /`) in Debian's headless Chromium, driven by
playwright-core (e2e/browser/upload.mjs): pick a photo in the page's file
input, the three variants appear without a reload, at the sizes SPEC gives
and with the original's aspect ratio; the page follows the upload's event
stream and never polls its status."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
SCRIPT = BROWSER_DIR / "upload.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")
BOXES = {"default": 200, "small": 100, "large": 600}
TOKEN = "browser-test-token"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs npm)"),
]


@pytest.fixture(scope="module", autouse=True)
def playwright_installed():
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        # Absent only when nobody ran `npm ci` (.ci/run does): fail loudly rather than skip.
        pytest.fail(f"playwright-core missing: run `npm ci` in {BROWSER_DIR}")


@pytest.fixture
def web(server_factory):
    """A server whose upload token is not the page's default, so the test
    also proves the token field is what the page sends."""
    return server_factory(env={"CRUNCHBOX_WEB_UPLOAD_TOKENS": TOKEN}).start()


def drive(url: str, image: Path, shot: Path, token: str, expect_error: bool = False) -> dict:
    env = dict(os.environ, CHROMIUM=CHROMIUM, UPLOAD_TIMEOUT_MS="60000", EXPECT_ERROR="1" if expect_error else "0")
    result = subprocess.run(
        [NODE, str(SCRIPT), url, str(image), str(shot), token],
        cwd=BROWSER_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, f"upload.mjs failed:\n{result.stderr}"
    print(f"screenshot: {shot}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_variants(report: dict, original: Path, web_url: str) -> None:
    assert report["navigations"] == 0, "the page reloaded or navigated"
    assert report["errors"] == [], report["errors"]
    # EventSource, not polling: one stream, no status GETs.
    streams = [r for r in report["requests"] if r.startswith("GET /v1/avatar/") and r.endswith("/events")]
    polls = [r for r in report["requests"] if r.startswith("GET /v1/avatar/") and not r.endswith("/events")]
    assert len(streams) == 1 and polls == [], report["requests"]
    # Chromium's own Accept names image/webp: every <img> got the WebP twin.
    assert sorted(report["imageTypes"].values()) == ["image/webp"] * 3, report["imageTypes"]
    assert report["status"] == "Ready."
    with Image.open(original) as img:
        aspect = img.width / img.height
        big = img.width, img.height
    variants = report["variants"]
    assert sorted(variants) == sorted(BOXES)
    ids = {v["src"].removeprefix(web_url + "/a/").split("_")[0] for v in variants.values()}
    assert len(ids) == 1 and len(ids.pop()) == 32, variants
    for name, box in BOXES.items():
        w, h = variants[name]["width"], variants[name]["height"]
        assert 0 < w <= box and 0 < h <= box, (name, w, h)
        assert max(w, h) == min(box, max(big)), (name, w, h)  # fills its box; never upscaled
        assert abs(w / h - aspect) <= max(1 / w, 1 / h) * aspect + 0.01, (name, w, h, aspect)


def test_upload_page_shows_the_three_variants(web, corpus, tmp_path):
    photo = corpus / "mate_Aqua.jpg"
    report = drive(web.web + "/", photo, tmp_path / "upload-page.png", TOKEN)
    check_variants(report, photo, web.web)
    assert (tmp_path / "upload-page.png").stat().st_size > 10_000


def test_type_comes_from_the_bytes_not_the_name(web, corpus, tmp_path):
    """A PNG without an extension: Chromium gives it no type, the page sniffs it."""
    photo = tmp_path / "calla-without-extension"
    shutil.copyfile(corpus / "calla.png", photo)
    report = drive(web.web + "/", photo, tmp_path / "no-extension.png", TOKEN)
    check_variants(report, photo, web.web)
    assert all(v["src"].startswith(web.web + "/a/") for v in report["variants"].values())


def test_wrong_token_is_shown_as_an_error(web, corpus, tmp_path):
    report = drive(web.web + "/", corpus / "mate_Aqua.jpg", tmp_path / "refused.png", "dev-token", expect_error=True)
    assert report["status"].startswith("Upload refused (403)"), report["status"]
    assert report["shown"] == 0
    assert report["navigations"] == 0


DIRECT = BROWSER_DIR / "direct.mjs"


def test_app_on_another_origin_uploads_straight_to_s3(server_factory, corpus, tmp_path):
    """A page served from one origin PUTs with a presigned URL, reads the
    object back and posts a presigned form, all across origins under the
    bucket's CORS rules; a page from an origin the rules do not name is
    stopped by the browser itself, and nothing of it is stored."""
    import base64

    from conftest import free_port

    srv = server_factory(roles="s3").start()
    s3 = srv.s3()
    s3.create_bucket(Bucket="direct")
    allowed_port, blocked_port = free_port(), free_port()
    s3.put_bucket_cors(
        Bucket="direct",
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [f"http://127.0.0.1:{allowed_port}"],
                    "AllowedMethods": ["GET", "PUT", "POST"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 60,
                }
            ]
        },
    )
    content = (corpus / "calla.png").read_bytes()
    presign = lambda op, key, **p: s3.generate_presigned_url(  # noqa: E731
        op, Params={"Bucket": "direct", "Key": key, **p}, ExpiresIn=300
    )
    plan = {
        "allowed_port": allowed_port,
        "blocked_port": blocked_port,
        "put_url": presign("put_object", "put.png", ContentType="image/png"),
        "get_url": presign("get_object", "put.png"),
        "post": s3.generate_presigned_post(
            "direct",
            "form/${filename}",
            Fields={"success_action_status": "201", "Content-Type": "image/png"},
            Conditions=[{"success_action_status": "201"}, {"Content-Type": "image/png"}],
            ExpiresIn=300,
        ),
        "blocked_put_url": presign("put_object", "blocked.png", ContentType="image/png"),
        "content_b64": base64.b64encode(content).decode(),
    }
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    result = subprocess.run(
        [NODE, str(DIRECT), str(plan_file)],
        cwd=BROWSER_DIR,
        env=dict(os.environ, CHROMIUM=CHROMIUM),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, f"direct.mjs failed:\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    allowed, blocked = report["allowed"], report["blocked"]

    assert allowed["put"]["status"] == 200, allowed
    assert allowed["put"]["etag"], "ETag is exposed to the page by the rule"
    assert allowed["get"] == {"status": 200, "same": True}, allowed
    assert allowed["post"]["status"] == 201, allowed
    assert "<Key>form/face.png</Key>" in allowed["post"]["body"], allowed
    assert s3.get_object(Bucket="direct", Key="put.png")["Body"].read() == content
    assert s3.get_object(Bucket="direct", Key="form/face.png")["Body"].read() == content

    assert "error" in blocked["put"], f"the browser let a disallowed origin through: {blocked}"
    assert "Contents" not in s3.list_objects_v2(Bucket="direct", Prefix="blocked")
