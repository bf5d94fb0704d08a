"""The avatar pipeline end to end on the release binary: every photo of the
shared corpus uploaded over HTTP becomes ready, each variant has the right
size, type and caching headers and carries no metadata; and a kill -9 in the
middle of uploads loses none that were answered 201.

Nothing here asserts speed: deadlines only bound a hang (two shared cores)."""

import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

TOKEN = "dev-token"
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp"}
BOXES = {"": 200, "_small": 100, "_large": 600}
CACHE_CONTROL = "public, max-age=31536000, immutable"
READY_DEADLINE = 300.0
# The corpus holds one 8.5 MB photo, over the 8 MiB default.
BIG_LIMIT = str(16 * 1024 * 1024)


def photos(corpus: Path) -> list[Path]:
    files = sorted(p for p in corpus.iterdir() if p.suffix.lower() in MIME)
    assert files, f"no images in {corpus}"
    return files


def upload(server, path: Path) -> tuple[int, dict]:
    status, _, body = server.http(
        "POST",
        "/v1/avatar/upload",
        body=path.read_bytes(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": MIME[path.suffix.lower()]},
    )
    return status, json.loads(body) if body else {}


def wait_settled(server, avatar_id: str) -> dict:
    deadline = time.monotonic() + READY_DEADLINE
    while True:
        status, _, body = server.http("GET", f"/v1/avatar/{avatar_id}")
        assert status == 200, body
        doc = json.loads(body)
        if doc["status"] != "pending":
            return doc
        assert time.monotonic() < deadline, f"{avatar_id} still pending after {READY_DEADLINE}s"
        time.sleep(0.2)


def fit(width: int, height: int, side: int) -> tuple[int, int]:
    """crunchbox's box fit: aspect kept, rounded, never upscaled."""
    if width <= side and height <= side:
        return width, height
    if width >= height:
        return side, max(1, min(side, (height * side + width // 2) // width))
    return max(1, min(side, (width * side + height // 2) // height)), side


def expected_source(path: Path) -> tuple[tuple[int, int], str]:
    """The oriented size of an input and the content type its variants get:
    PNG when it has real transparency, JPEG otherwise."""
    with Image.open(path) as img:
        width, height = img.size
        if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            width, height = height, width
        alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        if alpha:
            rgba = img.convert("RGBA")
            alpha = rgba.getchannel("A").getextrema()[0] < 255
    return (width, height), "image/png" if alpha else "image/jpeg"


def check_variant(server, key: str, source: tuple[int, int], content_type: str, side: int) -> None:
    status, raw_headers, body = server.http("GET", f"/a/{key}")
    assert status == 200, (key, body[:200])
    headers = {k.lower(): v for k, v in raw_headers.items()}
    assert headers["content-type"] == content_type, key
    assert int(headers["content-length"]) == len(body), key
    assert headers["cache-control"] == CACHE_CONTROL, key
    assert headers["x-content-type-options"] == "nosniff", key
    assert headers.get("etag"), key

    with Image.open(io.BytesIO(body)) as img:
        assert img.format == {"image/jpeg": "JPEG", "image/png": "PNG"}[content_type], key
        want = fit(*source, side)
        got = img.size
        # The small variants are made from the large one: one more rounding.
        assert abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1, (key, got, want)
        assert got[0] <= min(side, source[0]) and got[1] <= min(side, source[1]), (key, got, source)
        # No metadata of any kind.
        assert len(img.getexif()) == 0, (key, dict(img.getexif()))
        for meta in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment", "photoshop", "adobe"):
            assert meta not in img.info, (key, meta)
        if content_type == "image/png":
            assert not {"text", "zTXt", "iTXt", "tEXt"} & set(img.info), (key, img.info.keys())
        img.load()
    assert b"Exif\x00\x00" not in body, key
    assert b"http://ns.adobe.com/xap/" not in body, key


def test_every_corpus_photo_becomes_ready_with_clean_variants(server_factory, corpus):
    server = server_factory(env={"CRUNCHBOX_WEB_MAX_UPLOAD_BYTES": BIG_LIMIT}).start()
    files = photos(corpus)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: upload(server, p), files))
    ids = {}
    for path, (status, doc) in zip(files, answers):
        assert status == 201, (path.name, doc)
        assert doc["status"] == "pending"
        assert doc["url"] == f"{server.web}/a/{doc['id']}"
        ids[path] = doc["id"]

    for path, avatar_id in ids.items():
        doc = wait_settled(server, avatar_id)
        assert doc["status"] == "ready", (path.name, doc)
        source, content_type = expected_source(path)
        for suffix, side in BOXES.items():
            check_variant(server, avatar_id + suffix, source, content_type, side)
        assert doc["variants"] == {
            "default": f"{server.web}/a/{avatar_id}",
            "small": f"{server.web}/a/{avatar_id}_small",
            "large": f"{server.web}/a/{avatar_id}_large",
        }


def test_default_limit_refuses_the_largest_photo(server, corpus):
    """Refused from the headers alone: a client that asks `Expect:
    100-continue` (as curl does for big bodies) gets the 413 without having
    sent a byte of the photo."""
    big = max(photos(corpus), key=lambda p: p.stat().st_size)
    size = big.stat().st_size
    assert size > 8 * 1024 * 1024, "the corpus no longer has a photo over 8 MiB"
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /v1/avatar/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: image/jpeg\r\nContent-Length: {size}\r\nExpect: 100-continue\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer
    doc = json.loads(body)
    assert doc["code"] == 413 and doc["error"] == "Payload Too Large" and doc["message"], doc


def test_kill9_while_uploading_loses_no_accepted_upload(server_factory, corpus):
    env = {"CRUNCHBOX_WEB_MAX_UPLOAD_BYTES": BIG_LIMIT, "CRUNCHBOX_QUEUE_VISIBILITY_TIMEOUT": "5"}
    server = server_factory(env=env).start()
    # Smaller photos first, so plenty of uploads are in flight at the kill.
    files = sorted(photos(corpus), key=lambda p: p.stat().st_size)[:12]
    accepted: list[tuple[Path, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(offset: int) -> None:
        i = offset
        while not stop.is_set():
            path = files[i % len(files)]
            i += 1
            try:
                status, doc = upload(server, path)
            except Exception:  # noqa: BLE001 - the server died under us
                return
            if status != 201:
                return
            with lock:
                accepted.append((path, doc["id"]))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + READY_DEADLINE
    while True:
        with lock:
            if len(accepted) >= 15:
                break
        assert time.monotonic() < deadline, "uploads never got going"
        time.sleep(0.05)
    server.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    acked = list(accepted)
    assert len(acked) >= 15

    server.start()
    for path, avatar_id in acked:
        doc = wait_settled(server, avatar_id)
        assert doc["status"] == "ready", (path.name, doc)
        source, content_type = expected_source(path)
        check_variant(server, avatar_id + "_large", source, content_type, 600)


def big_jpeg(side: int) -> bytes:
    """A side×side photo-like JPEG (gradients and noise): decoding and
    resizing it keeps a worker busy long enough to be caught mid-crunch."""
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((side, side)),
            Image.radial_gradient("L").resize((side, side)),
            Image.effect_noise((side, side), 40),
        ),
    )
    out = io.BytesIO()
    base.save(out, "JPEG", quality=80)
    return out.getvalue()


def test_sigterm_during_a_crunch_finishes_it_with_no_redelivery(server_factory):
    """Shutdown runs in stages (worker, web, the AWS endpoint, storage): a
    crunch in flight at SIGTERM still has the endpoint for its variant PUTs
    and its DeleteMessage, so it completes and is not crunched again."""
    server = server_factory(env={"CRUNCHBOX_WEB_MAX_UPLOAD_BYTES": BIG_LIMIT}).start()
    s3, sqs = server.s3(), server.sqs()
    url = sqs.get_queue_url(QueueName="crunchbox-crunch")["QueueUrl"]
    photo = big_jpeg(7000)
    status, _, body = server.http(
        "POST", "/v1/avatar/upload", body=photo, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    )
    assert status == 201, body
    avatar_id = json.loads(body)["id"]

    def counts() -> tuple[int, int]:
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])

    def variants_stored() -> int:
        return s3.list_objects_v2(Bucket="crunchbox-public", Prefix=avatar_id).get("KeyCount", 0)

    # Wait until the worker holds the message and has stored nothing yet.
    deadline = time.monotonic() + READY_DEADLINE
    while counts() != (0, 1):
        assert time.monotonic() < deadline, "the worker never took the message"
        time.sleep(0.01)
    assert variants_stored() == 0, "the crunch finished before the test could stop the server mid-crunch"
    assert server.stop() == 0, server.log()[-3000:]
    log = server.log()
    order = [log.find(f"stopping stage=\"{stage}\"") for stage in ("worker", "web", "aws")]
    assert all(i >= 0 for i in order) and order == sorted(order), log[-3000:]

    # Back up without a worker: the crunch had finished, nothing is left to redo.
    server.roles = "s3,sqs,web"
    server.start()
    assert variants_stored() == 6, server.log()[-3000:]  # three variants and their WebP twins
    assert counts() == (0, 0), "the message was not deleted: it would be crunched again"
    status, _, body = server.http("GET", f"/v1/avatar/{avatar_id}")
    assert status == 200 and json.loads(body)["status"] == "ready", body
    assert "ERROR" not in server.log(), server.log()[-3000:]
