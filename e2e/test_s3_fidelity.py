"""End-to-end tests of S3 behaviours where the embedded store must answer as
AWS does, with boto3, aws-cli and raw HTTP against the release binary:
GetObjectAttributes with the comma-joined attribute header those clients
send, If-Match / If-None-Match with a list of ETags, the 2 KB limit on user
metadata (PutObject, CopyObject with REPLACE, CreateMultipartUpload), a
CompleteMultipartUpload whose condition fails leaving the upload intact, and
a declared Content-Length over 5 GiB refused before the body is read."""

import base64
import hashlib
import http.client
import json
import os
import urllib.parse

import pytest
from botocore.exceptions import ClientError

MIB = 1024 * 1024
GIB = 1024 * MIB
MAX_METADATA = 2048


@pytest.fixture
def s3srv(server_factory):
    return server_factory(roles="s3").start()


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def status_of(exc: ClientError) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


def quoted_md5(data: bytes) -> str:
    return '"%s"' % hashlib.md5(data).hexdigest()


def metadata_of_size(size: int) -> dict[str, str]:
    """User metadata whose keys and values (no x-amz-meta- prefix) total
    `size` bytes, spread over a few headers."""
    keys = ["alpha", "beta", "gamma"]
    rest = size - sum(len(k) for k in keys)
    values = [rest // 3, rest // 3, rest - 2 * (rest // 3)]
    meta = {k: "v" * n for k, n in zip(keys, values)}
    assert sum(len(k) + len(v) for k, v in meta.items()) == size
    return meta


# GetObjectAttributes


def test_get_object_attributes_answers_every_comma_joined_attribute(s3srv):
    """boto3's comma-joined x-amz-object-attributes gets every requested attribute back."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="attrs")
    data = os.urandom(12_345)
    s3.put_object(Bucket="attrs", Key="obj", Body=data)
    sent: list[bytes] = []
    s3.meta.events.register(
        "before-send.s3.GetObjectAttributes",
        lambda request, **_: sent.append(request.headers.get("x-amz-object-attributes")),
    )
    got = s3.get_object_attributes(Bucket="attrs", Key="obj", ObjectAttributes=["ETag", "ObjectSize", "StorageClass"])
    # The case under test: the client really sent one comma-joined header.
    assert sent == [b"ETag,ObjectSize,StorageClass"]
    assert got["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert got["ObjectSize"] == len(data)
    assert got["StorageClass"] == "STANDARD"
    # Only what was asked for is answered.
    some = s3.get_object_attributes(Bucket="attrs", Key="obj", ObjectAttributes=["ObjectSize", "StorageClass"])
    assert some["ObjectSize"] == len(data)
    assert some["StorageClass"] == "STANDARD"
    assert "ETag" not in some


def test_get_object_attributes_unknown_name_is_invalid_argument(s3srv):
    """An unknown attribute name in the list gets 400 InvalidArgument."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="attrs")
    s3.put_object(Bucket="attrs", Key="obj", Body=b"x")
    for attributes in (["ETag", "Bogus"], ["Bogus"]):
        with pytest.raises(ClientError) as e:
            s3.get_object_attributes(Bucket="attrs", Key="obj", ObjectAttributes=attributes)
        assert status_of(e.value) == 400
        assert error_code(e.value) == "InvalidArgument"


def test_aws_cli_get_object_attributes(s3srv, tmp_path):
    """aws-cli s3api get-object-attributes returns both ETag and ObjectSize."""
    s3srv.s3().create_bucket(Bucket="attrs")
    data = os.urandom(4321)
    src = tmp_path / "obj.bin"
    src.write_bytes(data)
    s3srv.aws_cli("s3api", "put-object", "--bucket", "attrs", "--key", "obj", "--body", str(src))
    args = ["--bucket", "attrs", "--key", "obj", "--object-attributes", "ETag", "ObjectSize"]
    got = json.loads(s3srv.aws_cli("s3api", "get-object-attributes", *args).stdout)
    assert got["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert got["ObjectSize"] == len(data)
    assert "StorageClass" not in got


# If-Match / If-None-Match with a list of ETags


def test_if_none_match_list_containing_etag_is_not_modified(s3srv):
    """If-None-Match listing the object's ETag among others gives 304 on GET and HEAD."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="cond")
    data = b"conditional body"
    etag = s3.put_object(Bucket="cond", Key="obj", Body=data)["ETag"]
    assert etag == quoted_md5(data)
    listed = f'"zzz", {etag}'
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="cond", Key="obj", IfNoneMatch=listed)
    assert status_of(e.value) == 304
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="cond", Key="obj", IfNoneMatch=listed)
    assert status_of(e.value) == 304
    # A list without the ETag still reads the object.
    other = '"zzz", "yyy"'
    assert s3.get_object(Bucket="cond", Key="obj", IfNoneMatch=other)["Body"].read() == data
    assert s3.head_object(Bucket="cond", Key="obj", IfNoneMatch=other)["ContentLength"] == len(data)


def test_if_match_list_proceeds_only_when_etag_listed(s3srv):
    """If-Match with the ETag in a list gives 200; a list without it gives 412 on GET and HEAD."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="cond")
    data = b"match me"
    etag = s3.put_object(Bucket="cond", Key="obj", Body=data)["ETag"]
    listed = f'"zzz", {etag}'
    got = s3.get_object(Bucket="cond", Key="obj", IfMatch=listed)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == data
    head = s3.head_object(Bucket="cond", Key="obj", IfMatch=listed)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert head["ETag"] == etag
    unlisted = '"zzz", "0123456789abcdef0123456789abcdef"'
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="cond", Key="obj", IfMatch=unlisted)
    assert status_of(e.value) == 412
    assert error_code(e.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="cond", Key="obj", IfMatch=unlisted)
    assert status_of(e.value) == 412


# User metadata limit


def test_put_object_metadata_limit(s3srv):
    """PutObject accepts exactly 2048 bytes of user metadata and refuses 2049 with MetadataTooLarge."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="meta")
    at_limit = metadata_of_size(MAX_METADATA)
    s3.put_object(Bucket="meta", Key="ok", Body=b"fits", Metadata=at_limit)
    assert s3.head_object(Bucket="meta", Key="ok")["Metadata"] == at_limit
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="meta", Key="big", Body=b"too much", Metadata=metadata_of_size(MAX_METADATA + 1))
    assert status_of(e.value) == 400
    assert error_code(e.value) == "MetadataTooLarge"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="meta", Key="big")
    assert status_of(e.value) == 404


def test_copy_object_replace_metadata_limit(s3srv):
    """CopyObject with MetadataDirective=REPLACE refuses 2049 bytes of metadata and accepts 2048."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="meta")
    s3.put_object(Bucket="meta", Key="src", Body=b"source", Metadata={"orig": "1"})
    with pytest.raises(ClientError) as e:
        s3.copy_object(
            Bucket="meta",
            Key="dst",
            CopySource={"Bucket": "meta", "Key": "src"},
            MetadataDirective="REPLACE",
            Metadata=metadata_of_size(MAX_METADATA + 1),
        )
    assert status_of(e.value) == 400
    assert error_code(e.value) == "MetadataTooLarge"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="meta", Key="dst")
    assert status_of(e.value) == 404
    at_limit = metadata_of_size(MAX_METADATA)
    s3.copy_object(
        Bucket="meta",
        Key="dst",
        CopySource={"Bucket": "meta", "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata=at_limit,
    )
    assert s3.head_object(Bucket="meta", Key="dst")["Metadata"] == at_limit
    assert s3.get_object(Bucket="meta", Key="dst")["Body"].read() == b"source"


def test_create_multipart_upload_metadata_limit(s3srv):
    """CreateMultipartUpload refuses 2049 bytes of metadata and accepts 2048, which the object keeps."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="meta")
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket="meta", Key="mpu", Metadata=metadata_of_size(MAX_METADATA + 1))
    assert status_of(e.value) == 400
    assert error_code(e.value) == "MetadataTooLarge"
    assert s3.list_multipart_uploads(Bucket="meta").get("Uploads", []) == []
    at_limit = metadata_of_size(MAX_METADATA)
    upload_id = s3.create_multipart_upload(Bucket="meta", Key="mpu", Metadata=at_limit)["UploadId"]
    part = s3.upload_part(Bucket="meta", Key="mpu", UploadId=upload_id, PartNumber=1, Body=b"one part")
    s3.complete_multipart_upload(
        Bucket="meta",
        Key="mpu",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert s3.head_object(Bucket="meta", Key="mpu")["Metadata"] == at_limit


# CompleteMultipartUpload with a failing condition


def test_complete_multipart_failed_condition_keeps_upload(s3srv):
    """A CompleteMultipartUpload failing IfNoneMatch='*' gets 412 and the upload can still be completed."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="mpu")
    s3.put_object(Bucket="mpu", Key="obj", Body=b"already here")
    upload_id = s3.create_multipart_upload(Bucket="mpu", Key="obj")["UploadId"]
    chunks = [os.urandom(5 * MIB), os.urandom(1234)]
    parts = []
    for n, chunk in enumerate(chunks, start=1):
        etag = s3.upload_part(Bucket="mpu", Key="obj", UploadId=upload_id, PartNumber=n, Body=chunk)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket="mpu", Key="obj", UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
        )
    assert status_of(e.value) == 412
    assert error_code(e.value) == "PreconditionFailed"
    # The existing object is untouched and the upload is still there, whole.
    assert s3.get_object(Bucket="mpu", Key="obj")["Body"].read() == b"already here"
    listed = s3.list_parts(Bucket="mpu", Key="obj", UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
        (n, p["ETag"], len(c)) for n, (p, c) in enumerate(zip(parts, chunks), start=1)
    ]
    uploads = s3.list_multipart_uploads(Bucket="mpu").get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [upload_id]
    done = s3.complete_multipart_upload(Bucket="mpu", Key="obj", UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert done["ETag"].endswith('-2"')
    body = s3.get_object(Bucket="mpu", Key="obj")["Body"].read()
    assert body == b"".join(chunks)
    assert s3.list_multipart_uploads(Bucket="mpu").get("Uploads", []) == []


# A declared Content-Length over 5 GiB


def test_put_declaring_over_5gib_is_refused_before_the_body(s3srv):
    """A presigned PUT declaring Content-Length 6 GiB gets 400 EntityTooLarge without sending the body."""
    s3 = s3srv.s3(signature_version="s3v4")
    s3.create_bucket(Bucket="huge")
    url = urllib.parse.urlsplit(
        s3.generate_presigned_url("put_object", Params={"Bucket": "huge", "Key": "big"}, ExpiresIn=300)
    )
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url.query
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("PUT", f"{url.path}?{url.query}", skip_accept_encoding=True)
        conn.putheader("Content-Length", str(6 * GIB))
        conn.endheaders()
        try:
            conn.send(os.urandom(1024))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may already have answered and closed
        # The timeout only catches a server that waits for the 6 GiB.
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 400
    assert b"EntityTooLarge" in body
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="huge", Key="big")
    assert status_of(e.value) == 404


def test_version_ids_other_than_null_are_invalid(s3srv):
    """Buckets here are unversioned: versionId "null" reads the object, any other is InvalidArgument."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="versions")
    s3.put_object(Bucket="versions", Key="k", Body=b"only version")
    assert s3.get_object(Bucket="versions", Key="k", VersionId="null")["Body"].read() == b"only version"
    calls = [
        lambda: s3.get_object(Bucket="versions", Key="k", VersionId="abc"),
        lambda: s3.head_object(Bucket="versions", Key="k", VersionId="abc"),
        lambda: s3.delete_object(Bucket="versions", Key="k", VersionId="abc"),
        lambda: s3.copy_object(
            Bucket="versions", Key="copy", CopySource={"Bucket": "versions", "Key": "k", "VersionId": "abc"}
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] in ("InvalidArgument", "400"), e.value.response
    assert s3.get_object(Bucket="versions", Key="k")["Body"].read() == b"only version"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="versions", Key="copy")


def test_complete_multipart_checks_the_part_checksums_it_names(s3srv):
    """A CompleteMultipartUpload naming a part checksum other than the one stored is InvalidPart; the right one completes."""
    s3 = s3srv.s3()
    s3.create_bucket(Bucket="sums")
    upload = s3.create_multipart_upload(Bucket="sums", Key="obj", ChecksumAlgorithm="SHA256")["UploadId"]
    data = os.urandom(1000)
    part = s3.upload_part(
        Bucket="sums", Key="obj", UploadId=upload, PartNumber=1, Body=data, ChecksumAlgorithm="SHA256"
    )
    right = part["ChecksumSHA256"]
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()

    def complete(checksum):
        parts = [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumSHA256": checksum}]
        return s3.complete_multipart_upload(Bucket="sums", Key="obj", UploadId=upload, MultipartUpload={"Parts": parts})

    with pytest.raises(ClientError) as e:
        complete(wrong)
    assert e.value.response["Error"]["Code"] == "InvalidPart"
    complete(right)
    assert s3.get_object(Bucket="sums", Key="obj")["Body"].read() == data
