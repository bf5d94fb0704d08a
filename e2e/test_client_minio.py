"""minio-py (MinIO's Python SDK, its own signer and XML parsing) against
the release binary: buckets, objects of known and unknown length (the
latter multipart), ranges, stat, listing, copy, tags, bulk delete,
presigned URLs, and the errors it reports for bad keys and missing objects.

Runs from the clients venv (e2e/requirements-clients.txt, see .ci/run)."""

import io
import os
import urllib.request
from datetime import timedelta

import pytest

minio = pytest.importorskip("minio", reason="minio-py runs from the clients venv (e2e/requirements-clients.txt)")

from minio.commonconfig import CopySource, Tags  # noqa: E402
from minio.deleteobjects import DeleteObject  # noqa: E402
from minio.error import S3Error  # noqa: E402

from conftest import ACCESS_KEY, REGION, SECRET_KEY  # noqa: E402

MIB = 1024 * 1024


@pytest.fixture
def mc(server_factory):
    srv = server_factory(roles="s3").start()
    client = minio.Minio(
        f"127.0.0.1:{srv.aws_port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region=REGION
    )
    client.srv = srv
    return client


def test_objects_round_trip(mc):
    mc.make_bucket("mini")
    assert mc.bucket_exists("mini") and not mc.bucket_exists("other")
    small = b"hello minio"
    meta = {"x-amz-meta-owner": "ada"}
    mc.put_object("mini", "dir/small.txt", io.BytesIO(small), len(small), content_type="text/plain", metadata=meta)
    big = os.urandom(11 * MIB + 5)
    # Unknown length: minio-py streams it as a multipart upload of 5 MiB parts.
    mc.put_object("mini", "dir/big.bin", io.BytesIO(big), -1, part_size=5 * MIB)

    got = mc.get_object("mini", "dir/small.txt")
    try:
        assert got.read() == small
    finally:
        got.close()
        got.release_conn()
    ranged = mc.get_object("mini", "dir/big.bin", offset=6 * MIB, length=100)
    try:
        assert ranged.read() == big[6 * MIB : 6 * MIB + 100]
    finally:
        ranged.close()
        ranged.release_conn()
    stat = mc.stat_object("mini", "dir/small.txt")
    assert stat.size == len(small) and stat.content_type == "text/plain"
    assert stat.metadata.get("x-amz-meta-owner") == "ada"
    assert mc.stat_object("mini", "dir/big.bin").size == len(big)
    assert mc.stat_object("mini", "dir/big.bin").etag.endswith("-3"), "a three-part multipart ETag"

    names = sorted(o.object_name for o in mc.list_objects("mini", prefix="dir/", recursive=True))
    assert names == ["dir/big.bin", "dir/small.txt"]
    top = [o.object_name for o in mc.list_objects("mini")]
    assert top == ["dir/"], "a delimiter listing shows the common prefix"

    mc.copy_object("mini", "copy.txt", CopySource("mini", "dir/small.txt"))
    assert mc.stat_object("mini", "copy.txt").size == len(small)

    tags = Tags.new_object_tags()
    tags["stage"] = "raw"
    mc.set_object_tags("mini", "copy.txt", tags)
    assert dict(mc.get_object_tags("mini", "copy.txt")) == {"stage": "raw"}

    url = mc.presigned_get_object("mini", "dir/small.txt", expires=timedelta(minutes=5))
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == small

    errors = list(mc.remove_objects("mini", [DeleteObject(n) for n in ["copy.txt", "dir/small.txt", "dir/big.bin"]]))
    assert errors == []
    assert list(mc.list_objects("mini", recursive=True)) == []
    mc.remove_bucket("mini")
    assert not mc.bucket_exists("mini")


def test_errors_come_back_as_s3_errors(mc):
    mc.make_bucket("errs")
    with pytest.raises(S3Error) as missing:
        mc.stat_object("errs", "nope")
    assert missing.value.code in ("NoSuchKey", "NoSuchObject")
    mc.make_bucket("errs")  # owned already: us-east-1's legacy answer is 200, as AWS
    with pytest.raises(S3Error) as bad_name:
        mc._url_open("PUT", REGION, bucket_name="Bad_Name")  # the SDK itself refuses such names
    assert bad_name.value.code == "InvalidBucketName"
    host = f"127.0.0.1:{mc.srv.aws_port}"
    bad = minio.Minio(host, access_key=ACCESS_KEY, secret_key="wrong", secure=False, region=REGION)
    with pytest.raises(S3Error) as denied:
        bad.list_objects("errs").__next__()
    assert denied.value.code == "SignatureDoesNotMatch"
    mc.put_object("errs", "k", io.BytesIO(b"v"), 1)
    with pytest.raises(S3Error) as not_empty:
        mc.remove_bucket("errs")
    assert not_empty.value.code == "BucketNotEmpty"
