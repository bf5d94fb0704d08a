"""fsspec's s3fs (the S3 layer of pandas, dask and xarray) against the
release binary, as a data pipeline uses it: write and read files (one
large enough for multipart), list, glob, copy, and `rm(recursive=True)`,
which first reads the bucket's versioning.

s3fs pins aiobotocore and so an older botocore than e2e/requirements.txt:
it runs from its own venv (e2e/requirements-clients.txt, see .ci/run)."""

import hashlib
import os

import pytest

s3fs = pytest.importorskip("s3fs", reason="s3fs runs from the clients venv (e2e/requirements-clients.txt)")

from conftest import ACCESS_KEY, REGION, SECRET_KEY  # noqa: E402

MIB = 1024 * 1024


@pytest.fixture
def fs(server_factory):
    srv = server_factory(roles="s3").start()
    fs = s3fs.S3FileSystem(
        key=ACCESS_KEY,
        secret=SECRET_KEY,
        endpoint_url=srv.endpoint,
        client_kwargs={"region_name": REGION},
        use_listings_cache=False,
    )
    fs.srv = srv
    return fs


def test_files_round_trip_list_glob_copy(fs):
    fs.mkdir("lake")
    fs.pipe("lake/raw/2026/a.csv", b"id,name\n1,ada\n")
    fs.pipe("lake/raw/2026/b.csv", b"id,name\n2,bob\n")
    big = os.urandom(12 * MIB + 123)  # beyond s3fs's 5 MiB block: a multipart upload
    with fs.open("lake/raw/big.bin", "wb", block_size=5 * MIB) as f:
        for i in range(0, len(big), MIB):
            f.write(big[i : i + MIB])
    assert fs.cat("lake/raw/2026/a.csv") == b"id,name\n1,ada\n"
    with fs.open("lake/raw/big.bin", "rb") as f:
        f.seek(7 * MIB)
        assert f.read(1000) == big[7 * MIB : 7 * MIB + 1000]
    assert hashlib.sha256(fs.cat("lake/raw/big.bin")).digest() == hashlib.sha256(big).digest()
    assert fs.info("lake/raw/big.bin")["size"] == len(big)
    assert sorted(fs.ls("lake/raw", detail=False)) == ["lake/raw/2026", "lake/raw/big.bin"]
    assert sorted(fs.glob("lake/raw/2026/*.csv")) == ["lake/raw/2026/a.csv", "lake/raw/2026/b.csv"]
    assert fs.du("lake/raw") == len(big) + 2 * len(b"id,name\n1,ada\n")
    fs.copy("lake/raw/2026/a.csv", "lake/clean/a.csv")
    assert fs.cat("lake/clean/a.csv") == b"id,name\n1,ada\n"
    assert fs.exists("lake/clean/a.csv") and not fs.exists("lake/clean/zzz.csv")


def test_recursive_rm_empties_the_bucket(fs):
    fs.mkdir("scratch")
    for i in range(30):
        fs.pipe(f"scratch/d{i % 3}/f{i}.txt", b"x" * i)
    fs.rm("scratch/d1", recursive=True)
    assert not fs.exists("scratch/d1/f1.txt")
    assert len(fs.find("scratch")) == 20
    fs.rm("scratch", recursive=True)  # the objects, then the bucket
    assert not fs.exists("scratch")
    boto = fs.srv.s3()
    assert "scratch" not in [b["Name"] for b in boto.list_buckets()["Buckets"]]


def test_bad_credentials_and_missing_paths_raise(fs):
    fs.mkdir("guarded")
    fs.pipe("guarded/k", b"v")
    bad = s3fs.S3FileSystem(
        key=ACCESS_KEY,
        secret="wrong",
        endpoint_url=fs.srv.endpoint,
        client_kwargs={"region_name": REGION},
        skip_instance_cache=True,
    )
    with pytest.raises(PermissionError):
        bad.cat("guarded/k")
    with pytest.raises(FileNotFoundError):
        fs.cat("guarded/missing")
    with pytest.raises(FileNotFoundError):
        fs.cat("no-such-bucket/k")
