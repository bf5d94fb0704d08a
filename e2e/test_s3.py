"""End-to-end tests of the embedded S3 with boto3 and aws-cli against the
release binary, including a kill -9 in the middle of a stream of writes."""

import hashlib
import os
import threading
import time
import urllib.error
import urllib.request

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

MIB = 1024 * 1024


@pytest.fixture
def s3srv(server_factory):
    return server_factory(roles="s3").start()


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def test_boto3_put_get_list(s3srv):
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="e2e")
    data = os.urandom(300_000)
    put = s3.put_object(Bucket="e2e", Key="dir/obj", Body=data, ContentType="image/png", Metadata={"k": "v"})
    assert put["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket="e2e", Key="dir/obj")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"k": "v"}
    part = s3.get_object(Bucket="e2e", Key="dir/obj", Range="bytes=5-9")
    assert part["Body"].read() == data[5:10]
    listed = s3.list_objects_v2(Bucket="e2e", Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/obj"]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="e2e", Key="missing")
    assert error_code(e.value) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3srv.s3(secret="wrong").list_buckets()
    assert error_code(e.value) == "SignatureDoesNotMatch"


def test_boto3_multipart_via_transfer_manager(s3srv, tmp_path):
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="mpu")
    src = tmp_path / "big.bin"
    data = os.urandom(12 * MIB + 123)
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.upload_file(str(src), "mpu", "big.bin", Config=cfg)
    head = s3.head_object(Bucket="mpu", Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-3"')
    dst = tmp_path / "back.bin"
    s3.download_file("mpu", "big.bin", str(dst), Config=cfg)
    assert dst.read_bytes() == data


def test_presigned_urls(s3srv):
    s3 = s3srv.s3(signature_version="s3v4")
    s3.create_bucket(Bucket="pre")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "pre", "Key": "k"}, ExpiresIn=300)
    # The URL was signed without a Content-Type; urllib would add one.
    req = urllib.request.Request(put_url, data=b"via presigned put", method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "pre", "Key": "k"}, ExpiresIn=300)
    with urllib.request.urlopen(get_url, timeout=30) as resp:
        assert resp.read() == b"via presigned put"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(get_url.replace("/pre/k?", "/pre/other?"), timeout=30)
    assert e.value.code == 403


def test_anonymous_reads_only_on_public_bucket(s3srv):
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="crunchbox-public")
    s3.create_bucket(Bucket="crunchbox-uploads")
    s3.put_object(Bucket="crunchbox-public", Key="a.jpg", Body=b"jpeg")
    s3.put_object(Bucket="crunchbox-uploads", Key="a.jpg", Body=b"orig")
    with urllib.request.urlopen(f"{s3srv.endpoint}/crunchbox-public/a.jpg", timeout=30) as resp:
        assert resp.read() == b"jpeg"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{s3srv.endpoint}/crunchbox-uploads/a.jpg", timeout=30)
    assert e.value.code == 403


def test_aws_cli_cp_ls_sync_s3api(s3srv, tmp_path):
    assert s3srv.aws_cli("s3", "mb", "s3://cli").returncode == 0
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(7 * MIB), "sub/c d.txt": b"spaces + plus"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    s3srv.aws_cli("s3", "cp", str(src / "a.txt"), "s3://cli/single/a.txt")
    ls = s3srv.aws_cli("s3", "ls", "s3://cli/single/").stdout
    assert "a.txt" in ls
    s3srv.aws_cli("s3", "sync", str(src), "s3://cli/tree")
    listing = s3srv.aws_cli("s3", "ls", "--recursive", "s3://cli/tree/").stdout
    for name in files:
        assert f"tree/{name}" in listing
    # A second sync has nothing to upload.
    again = s3srv.aws_cli("s3", "sync", str(src), "s3://cli/tree").stdout
    assert "upload:" not in again
    back = tmp_path / "back"
    s3srv.aws_cli("s3", "sync", "s3://cli/tree", str(back))
    for name, data in files.items():
        assert (back / name).read_bytes() == data
    head = s3srv.aws_cli("s3api", "head-object", "--bucket", "cli", "--key", "single/a.txt").stdout
    assert '"ContentLength": 5' in head
    missing = s3srv.aws_cli("s3api", "head-object", "--bucket", "cli", "--key", "nope", check=False)
    assert missing.returncode != 0
    rb = s3srv.aws_cli("s3", "rb", "s3://cli", check=False)
    assert rb.returncode != 0 and "BucketNotEmpty" in rb.stderr


def test_kill9_loses_no_acknowledged_object(server_factory):
    srv = server_factory(roles="s3").start()
    s3 = srv.s3()
    s3.create_bucket(Bucket="crash")
    acked: dict[str, bytes] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def writer(worker: int) -> None:
        client = srv.s3()
        i = 0
        while not stop.is_set() and i < 2000:
            key = f"w{worker}/obj{i:05d}"
            size = 200_000 if i % 3 == 0 else 3000
            data = os.urandom(size)
            try:
                client.put_object(Bucket="crash", Key=key, Body=data)
            except Exception:
                return
            with lock:
                acked[key] = data
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 60:
                break
        time.sleep(0.05)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked) >= 10, "the writers made no progress before the crash"

    srv.start()
    s3 = srv.s3()
    with lock:
        snapshot = dict(acked)
    for key, data in snapshot.items():
        body = s3.get_object(Bucket="crash", Key=key)["Body"].read()
        assert body == data, key
    # Whatever is listed (acknowledged or not) is whole: its bytes match its ETag.
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket="crash"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket="crash", Key=obj["Key"])["Body"].read()
            assert len(body) == obj["Size"]
            assert obj["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    leftovers = list((srv.data_dir / "s3" / "tmp").iterdir())
    assert leftovers == []
