#!/usr/bin/env python3
"""Bounded disk use (issue 13, item 3): fill and drain the embedded store
CYCLES times and print the data dir's size after every cycle.

One cycle: PUT ~FILL_MB of mixed objects (inline and blob sizes, a few
multipart uploads), send MESSAGES SQS messages in batches of 10, then delete
every object and receive + delete every message. The size after each drain
is read with the server still running and again after a clean restart.

    python bench/disk_cycles.py [--cycles 10] [--fill-mb 500] [--messages 50000] [--binary PATH]

The reference is the store's own size after the first cycle: the run fails
(exit 1) when the last cycle ends above 2× that.
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig
from ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
ACCESS, SECRET, REGION = "crunchbox", "crunchbox-secret", "us-east-1"
# Sizes in bytes and their weights: both sides of the 64 KiB inline/blob boundary.
SIZES = [(1_000, 30), (16_384, 25), (65_536, 15), (200_000, 15), (1_048_576, 10), (5_000_000, 5)]
BUCKET, QUEUE = "cycles", "cycles"
THREADS = 8



def du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def parts(data: Path) -> dict[str, int]:
    """Sizes of the store's parts: S3 metadata (sled), S3 blobs, queue (sled)."""
    out = {}
    for name in ("s3/meta", "s3/blobs", "queue"):
        p = data / name
        out[name] = du(p) if p.exists() else 0
    out["total"] = du(data)
    return out


class Server:
    def __init__(self, binary: Path, data: Path):
        self.binary, self.data = binary, data
        self.port = free_port()
        self.proc = None
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self):
        env = dict(os.environ, CRUNCHBOX_AWS_LISTEN=f"127.0.0.1:{self.port}", RUST_LOG="warn")
        self.log = open(self.data.parent / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--roles", "s3,sqs", "--data-dir", str(self.data)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.log.close()

    def client(self, kind):
        return boto3.client(
            kind, endpoint_url=self.endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
            region_name=REGION, config=BotoConfig(s3={"addressing_style": "path"}, max_pool_connections=THREADS * 2),
        )


def fill(srv: Server, fill_bytes: int, messages: int, rnd: random.Random, cycle: int) -> int:
    s3, sqs = srv.client("s3"), srv.client("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    blob = os.urandom(5_000_000)
    sizes, weights = zip(*SIZES)
    plan, total = [], 0
    while total < fill_bytes:
        size = rnd.choices(sizes, weights)[0]
        plan.append(size)
        total += size

    def put(i_size):
        i, size = i_size
        off = (i * 7919) % (len(blob) - size + 1)
        s3.put_object(Bucket=BUCKET, Key=f"c{cycle}/o{i:06d}", Body=blob[off:off + size])

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, enumerate(plan)))
        # A few multipart uploads (two 5 MiB parts each).
        def multipart(j):
            key = f"c{cycle}/mp{j}"
            up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=n,
                                                             Body=blob[:5_000_000] + bytes(242_880))["ETag"]}
                    for n in (1, 2)]
            s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload={"Parts": done})
        list(pool.map(multipart, range(4)))

        def send(b):
            entries = [{"Id": str(k), "MessageBody": f"c{cycle}-m{b}-{k}-" + "x" * rnd.randrange(10, 400)}
                       for k in range(10)]
            out = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            assert not out.get("Failed"), out
        list(pool.map(send, range(messages // 10)))
    return total + 4 * 2 * 5_242_880


def drain(srv: Server, messages: int) -> None:
    s3, sqs = srv.client("s3"), srv.client("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [o["Key"] for o in page.get("Contents", [])]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda chunk: s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in chunk]}),
                      [keys[i:i + 1000] for i in range(0, len(keys), 1000)]))
        left = [messages]
        lock = threading.Lock()

        def consume(_):
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                          VisibilityTimeout=300).get("Messages", [])
                if not got:
                    with lock:
                        if left[0] <= 0:
                            return
                    continue
                sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                                 for i, m in enumerate(got)])
                with lock:
                    left[0] -= len(got)
        list(pool.map(consume, range(THREADS)))
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0", attrs


def mb(n: int) -> str:
    return f"{n / 1e6:8.1f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--fill-mb", type=int, default=500)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "crunchbox")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="crunchbox-cycles-"))
    data = work / "data"
    srv = Server(args.binary, data)
    srv.start()
    srv.client("s3").create_bucket(Bucket=BUCKET)
    srv.client("sqs").create_queue(QueueName=QUEUE)
    print(f"{args.cycles} cycles of ~{args.fill_mb} MB and {args.messages} messages; data dir {data}")
    print(f"{'cycle':>5} {'filled MB':>9} {'peak MB':>8} {'drained MB':>10} {'restart MB':>10} "
          f"{'s3/meta':>8} {'s3/blobs':>8} {'queue':>8} {'secs':>6}")
    first = None
    last = None
    try:
        for c in range(1, args.cycles + 1):
            t0 = time.monotonic()
            wrote = fill(srv, args.fill_mb * 1_000_000, args.messages, rnd, c)
            peak = parts(data)["total"]
            drain(srv, args.messages)
            drained = parts(data)["total"]
            srv.stop()
            srv.start()
            after = parts(data)
            print(f"{c:>5} {mb(wrote):>9} {mb(peak)} {mb(drained):>10} {mb(after['total']):>10} "
                  f"{mb(after['s3/meta'])} {mb(after['s3/blobs'])} {mb(after['queue'])} {time.monotonic() - t0:6.0f}",
                  flush=True)
            first = first or after["total"]
            last = after["total"]
    finally:
        srv.stop()
    ratio = last / first if first else 0
    print(f"after cycle 1: {mb(first).strip()} MB; after cycle {args.cycles}: {mb(last).strip()} MB; "
          f"ratio {ratio:.2f} (limit 2.00)")
    for dirpath, _, files in os.walk(data):
        if files:
            sizes = [os.stat(os.path.join(dirpath, f)).st_size for f in files]
            print(f"  {Path(dirpath).relative_to(data)}: {len(files)} files, {mb(sum(sizes)).strip()} MB"
                  f" (largest {mb(max(sizes)).strip()} MB)")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
