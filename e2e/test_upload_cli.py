"""`crunchbox upload`, the bundled client, against a running release server:
the happy path prints three URLs per file that really serve the variants, and
every way it can go wrong ends with one clear line on stderr and a non-zero
exit status."""

import io
import os
import re
import subprocess
import urllib.request

import pytest
from PIL import Image

from conftest import BINARY, free_port

BOXES = {"default": 200, "small": 100, "large": 600}
LINE = re.compile(r"^\s+(default|small|large)\s+(\S+)$")


def upload(
    *args: str, endpoint: str, token: str | None = None, timeout: float = 90, wait: int = 60
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRUNCHBOX_UPLOAD_")}
    cmd = [str(BINARY), "upload", "--endpoint", endpoint, "--wait-secs", str(wait), *args]
    if token is not None:
        cmd += ["--token", token]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The failure contract: non-zero exit, nothing on stdout, exactly one
    line on stderr, prefixed with the command's name."""
    assert result.returncode != 0, result
    assert result.stdout == "", result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"want one stderr line, got {lines!r}"
    assert lines[0].startswith("crunchbox upload: "), lines[0]
    return lines[0]


def test_uploads_two_photos_and_prints_urls_that_serve(server, corpus):
    photos = [corpus / "mate_Aqua.jpg", corpus / "calla.png"]
    result = upload(*map(str, photos), endpoint=server.web)
    assert result.returncode == 0, (result.stderr, server.log()[-3000:])

    # stdout: "{path}: ready ({id})" then one indented line per variant.
    blocks: dict[str, dict[str, str]] = {}
    current = None
    for line in result.stdout.splitlines():
        if m := re.match(r"^(.*): ready \(([0-9a-f]{32})\)$", line):
            current = blocks.setdefault(m.group(1), {})
        elif m := LINE.match(line):
            assert current is not None, f"URL line before a file line: {line!r}"
            current[m.group(1)] = m.group(2)
        else:
            pytest.fail(f"unexpected stdout line {line!r}")
    assert sorted(blocks) == sorted(map(str, photos))

    for photo in photos:
        with Image.open(photo) as original:
            aspect = original.width / original.height
        urls = blocks[str(photo)]
        assert sorted(urls) == sorted(BOXES)
        for name, url in urls.items():
            assert url.startswith(server.web + "/a/"), url
            with urllib.request.urlopen(url, timeout=30) as resp:
                assert resp.status == 200
                ctype = resp.headers["Content-Type"]
                body = resp.read()
            assert ctype in ("image/jpeg", "image/png"), ctype
            img = Image.open(io.BytesIO(body))
            assert img.format == ctype.split("/")[1].upper(), (img.format, ctype)
            box = BOXES[name]
            assert max(img.size) == box, (name, img.size)  # corpus photos are all larger than 600
            assert abs(img.width / img.height - aspect) < 0.02, (name, img.size, aspect)


def test_server_down(corpus):
    line = one_error_line(upload(str(corpus / "mate_Aqua.jpg"), endpoint=f"http://127.0.0.1:{free_port()}"))
    assert "cannot reach" in line and "crunchbox serve" in line, line


def test_not_a_url(corpus):
    line = one_error_line(upload(str(corpus / "mate_Aqua.jpg"), endpoint="127.0.0.1:8080"))
    assert "not an http:// or https:// URL" in line, line


@pytest.mark.parametrize(
    ("token", "status"),
    [("not-a-configured-token", 403), ("", 401)],
    ids=["unknown-token", "empty-token"],
)
def test_bad_token(server, corpus, token, status):
    """A refused token would refuse every file: said once, not once per file."""
    photos = [str(corpus / "mate_Aqua.jpg"), str(corpus / "calla.png")]
    line = one_error_line(upload(*photos, endpoint=server.web, token=token))
    assert f"refused ({status})" in line and "token" in line, line


def test_missing_file(server, tmp_path):
    missing = tmp_path / "no-such-photo.jpg"
    line = one_error_line(upload(str(missing), endpoint=server.web))
    assert str(missing) in line and "cannot read" in line and "No such file" in line, line


def test_directory_is_not_readable_as_a_file(server, tmp_path):
    line = one_error_line(upload(str(tmp_path), endpoint=server.web))
    assert "cannot read" in line, line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_file(server, corpus, tmp_path):
    locked = tmp_path / "locked.jpg"
    locked.write_bytes((corpus / "mate_Aqua.jpg").read_bytes())
    locked.chmod(0)
    line = one_error_line(upload(str(locked), endpoint=server.web))
    assert "cannot read" in line and "ermission denied" in line, line


def test_file_over_the_server_limit(server_factory, corpus):
    srv = server_factory(env={"CRUNCHBOX_WEB_MAX_UPLOAD_BYTES": "100000"}).start()
    photo = corpus / "mate_Aqua.jpg"
    assert photo.stat().st_size > 100000
    line = one_error_line(upload(str(photo), endpoint=srv.web))
    assert "refused (413)" in line and "100000" in line, line


@pytest.mark.parametrize("name", ["notes.jpg", "notes.txt"])
def test_not_an_image(server, tmp_path, name):
    text = tmp_path / name
    text.write_text("hello, this is not a picture\n")
    line = one_error_line(upload(str(text), endpoint=server.web))
    assert str(text) in line and "not a JPEG, PNG, GIF or WebP image" in line, line


def test_image_that_cannot_be_crunched(server, tmp_path):
    """JPEG magic, then garbage: the server accepts it and the worker fails it."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"garbage" * 10)
    line = one_error_line(upload(str(broken), endpoint=server.web))
    assert "crunch failed" in line, line


def test_one_bad_file_does_not_stop_the_others(server, corpus, tmp_path):
    missing = tmp_path / "missing.png"
    photo = corpus / "mate_Aqua.jpg"
    result = upload(str(missing), str(photo), endpoint=server.web)
    assert result.returncode != 0
    assert f"{photo}: ready (" in result.stdout
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"crunchbox upload: {missing}: cannot read: No such file or directory (os error 2)"
    ]



def test_no_worker_gives_up_after_wait_secs(server_factory, corpus):
    """Without a worker the event stream stays pending: the client gives up
    after --wait-secs with one line, rather than waiting forever."""
    srv = server_factory(roles="s3,sqs,web").start()
    line = one_error_line(upload(str(corpus / "mate_Aqua.jpg"), endpoint=srv.web, wait=2))
    assert "still not crunched after 2s" in line, line
