"""Presigned POST (HTML form uploads with a signed policy) against the
release binary: boto3's `generate_presigned_post` signs, `requests` posts
the multipart form as a browser would. Each policy condition AWS documents
(content-length-range, starts-with, eq), the success_action_* answers,
`${filename}`, and the errors AWS gives for a violated or forged policy."""

import hashlib
import socket
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

import pytest
import requests

BUCKET = "forms"


@pytest.fixture
def s3srv(server_factory):
    srv = server_factory(roles="s3").start()
    srv.s3().create_bucket(Bucket=BUCKET)
    return srv


def post(presigned: dict, data: bytes, filename: str = "photo.png", extra: dict | None = None, **kw):
    fields = dict(presigned["fields"], **(extra or {}))
    files = {"file": (filename, data, kw.pop("content_type", "image/png"))}
    return requests.post(presigned["url"], data=fields, files=files, allow_redirects=False, timeout=30, **kw)


def error_of(resp) -> tuple[str, str]:
    root = ET.fromstring(resp.content)
    return root.findtext("Code"), root.findtext("Message") or ""


def test_form_upload_stores_the_file_and_answers_201(s3srv):
    s3 = s3srv.s3()
    data = b"\x89PNG fake image bytes" * 100
    presigned = s3.generate_presigned_post(
        BUCKET,
        "avatars/${filename}",
        Fields={"success_action_status": "201", "Content-Type": "image/png"},
        Conditions=[
            ["starts-with", "$key", "avatars/"],
            ["content-length-range", 1, 10_000],
            {"success_action_status": "201"},
            {"Content-Type": "image/png"},
        ],
        ExpiresIn=300,
    )
    resp = post(presigned, data, filename="me.png")
    assert resp.status_code == 201, resp.text
    root = ET.fromstring(resp.content)
    ns = {"s3": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    find = (lambda t: root.findtext(f"s3:{t}", namespaces=ns)) if ns else root.findtext
    assert root.tag.endswith("PostResponse")
    assert find("Bucket") == BUCKET
    assert find("Key") == "avatars/me.png", "${filename} takes the uploaded file's name"
    assert find("ETag").strip('"') == hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket=BUCKET, Key="avatars/me.png")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"


def test_default_answer_is_204_and_redirect_is_303(s3srv):
    s3 = s3srv.s3()
    plain = s3.generate_presigned_post(BUCKET, "plain.bin", ExpiresIn=300)
    resp = post(plain, b"abc")
    assert resp.status_code == 204, resp.text
    assert s3.get_object(Bucket=BUCKET, Key="plain.bin")["Body"].read() == b"abc"

    target = "https://app.example/uploaded?from=form"
    redirect = s3.generate_presigned_post(
        BUCKET,
        "redir.bin",
        Fields={"success_action_redirect": target},
        Conditions=[{"success_action_redirect": target}],
        ExpiresIn=300,
    )
    resp = post(redirect, b"xyz")
    assert resp.status_code == 303, resp.text
    location = urlparse(resp.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "app.example", "/uploaded")
    query = parse_qs(location.query)
    assert query["bucket"] == [BUCKET] and query["key"] == ["redir.bin"] and query["from"] == ["form"]
    assert query["etag"][0].strip('"') == hashlib.md5(b"xyz").hexdigest()


def test_policy_violations_get_aws_errors_and_store_nothing(s3srv):
    s3 = s3srv.s3()
    sized = s3.generate_presigned_post(
        BUCKET, "sized.bin", Conditions=[["content-length-range", 10, 100]], ExpiresIn=300
    )
    resp = post(sized, b"x" * 101)
    assert resp.status_code == 400, resp.text
    assert error_of(resp)[0] == "EntityTooLarge"
    resp = post(sized, b"x" * 9)
    assert resp.status_code == 400, resp.text
    assert error_of(resp)[0] == "EntityTooSmall"

    # starts-with: the signed fields say one key, the form sends another.
    prefixed = s3.generate_presigned_post(
        BUCKET, "users/alice/a.png", Conditions=[["starts-with", "$key", "users/alice/"]], ExpiresIn=300
    )
    resp = post(prefixed, b"data", extra={"key": "users/bob/a.png"})
    assert resp.status_code == 403, resp.text
    code, message = error_of(resp)
    assert code == "AccessDenied" and "Policy" in message, (code, message)

    # eq: a Content-Type other than the one the policy pins.
    pinned = s3.generate_presigned_post(
        BUCKET,
        "typed.png",
        Fields={"Content-Type": "image/png"},
        Conditions=[{"Content-Type": "image/png"}],
        ExpiresIn=300,
    )
    resp = post(pinned, b"data", extra={"Content-Type": "text/html"})
    assert resp.status_code == 403, resp.text
    assert error_of(resp)[0] == "AccessDenied"

    # A field the policy does not name is refused as well (AWS: every field
    # but a few must be covered by a condition).
    bare = s3.generate_presigned_post(BUCKET, "extra.bin", ExpiresIn=300)
    resp = post(bare, b"d", extra={"x-amz-meta-evil": "1"})
    assert resp.status_code == 403, resp.text
    assert "x-amz-meta-evil" in error_of(resp)[1]

    for key in ["sized.bin", "users/bob/a.png", "users/alice/a.png", "typed.png", "extra.bin"]:
        assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=key), key


def test_expired_or_forged_policies_are_refused(s3srv):
    s3 = s3srv.s3()
    expired = s3.generate_presigned_post(BUCKET, "late.bin", ExpiresIn=-10)
    resp = post(expired, b"data")
    assert resp.status_code == 403, resp.text
    assert error_of(resp)[0] == "AccessDenied"

    forged = s3srv.s3(secret="not-the-secret").generate_presigned_post(BUCKET, "forged.bin", ExpiresIn=300)
    resp = post(forged, b"data")
    assert resp.status_code == 403, resp.text
    assert error_of(resp)[0] == "SignatureDoesNotMatch"

    # A form without any policy or signature is an anonymous write.
    resp = requests.post(
        f"{s3srv.endpoint}/{BUCKET}", data={"key": "anon.bin"}, files={"file": ("a", b"data")}, timeout=30
    )
    assert resp.status_code == 403, resp.text
    assert error_of(resp)[0] == "AccessDenied"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_malformed_and_oversized_forms(s3srv):
    s3 = s3srv.s3()
    presigned = s3.generate_presigned_post(BUCKET, "big.bin", ExpiresIn=300)
    # Beyond crunchbox's form upload cap (32 MiB, held in memory by s3s):
    # refused while reading, AWS's code, nothing stored.
    resp = post(presigned, b"\0" * (33 * 1024 * 1024))
    assert resp.status_code == 400, resp.text[:300]
    assert error_of(resp)[0] == "EntityTooLarge"
    # A body that is not the multipart form it claims to be.
    resp = requests.post(
        f"{s3srv.endpoint}/{BUCKET}",
        data=b"--nope\r\ngarbage",
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
        timeout=30,
    )
    assert 400 <= resp.status_code < 500, resp.text
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_forms_without_a_valid_signature_cannot_hold_the_upload_turns(s3srv):
    """A form waits for one of the few turns s3s's buffering allows only once
    the fields ahead of its file carry a valid policy signature: ten forms
    stalled before their fields end hold no turn, a signed upload goes
    through meanwhile, and a forged one is refused as soon as its fields
    are read."""
    url = urlparse(s3srv.endpoint)
    head = (
        f"POST /{BUCKET} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1000000\r\n\r\n"
    )
    stalled = []
    try:
        for _ in range(10):
            sock = socket.create_connection((url.hostname, url.port), timeout=30)
            sock.sendall((head + '--XyZ\r\nContent-Disposition: form-data; name="key"\r\n\r\nk').encode())
            stalled.append(sock)
        good = s3srv.s3().generate_presigned_post(BUCKET, "fast.bin", ExpiresIn=300)
        resp = requests.post(good["url"], data=good["fields"], files={"file": ("f", b"data")}, timeout=20)
        assert resp.status_code == 204, resp.text

        forged = s3srv.s3(secret="not-the-secret").generate_presigned_post(BUCKET, "slow.bin", ExpiresIn=300)
        fields = "".join(
            f'--XyZ\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in forged["fields"].items()
        )
        sock = socket.create_connection((url.hostname, url.port), timeout=30)
        stalled.append(sock)
        sock.sendall((head + fields + '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nx').encode())
        answer = sock.recv(4096).decode(errors="replace")
        assert answer.startswith("HTTP/1.1 403") and "SignatureDoesNotMatch" in answer, answer
    finally:
        for sock in stalled:
            sock.close()
