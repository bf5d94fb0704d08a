#!/usr/bin/env python3
"""Sustained mixed load against the release binary (issue 7).

Holds CONNS concurrent keep-alive connections (one per client thread, spread
over PROCS client processes so one GIL is not the bottleneck) of mixed
traffic for DURATION seconds on loopback: avatar uploads, /a/ GETs, S3 GET
and PUT, SQS send and receive (+ batch delete of what was received). Prints
per kind the request count, errors and p50/p99 latency, the server's peak RSS
(VmHWM) and CPU time, and, as the reference measured in the same run, each
kind's p50 on the idle server over a single connection (ratio = loaded p99 /
idle p50).

    e2e/.venv/bin/python bench/load.py [--duration 120] [--conns 200] [--procs 2]

The load generator shares the machine's cores with the server (and a Python
client costs far more per request than the server does), so throughput is a
floor and latencies include client-side queueing. Exits non-zero on any error.
"""

import argparse
import http.client
import io
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig
from PIL import Image
from ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
ACCESS, SECRET, REGION, TOKEN = "crunchbox", "crunchbox-secret", "us-east-1", "dev-token"
# Share of the connections per kind.
MIX = {"upload": 1, "a_get": 4, "s3_get": 4, "s3_put": 3, "sqs_send": 3, "sqs_recv": 3}
# Timed kinds: the connection kinds, plus the batch delete a receiver sends.
KINDS = [*MIX, "sqs_delete"]
BUCKET = "load"



def jpeg(seed: int, side: int = 256) -> bytes:
    rnd = random.Random(seed)
    img = Image.new("RGB", (side, side), tuple(rnd.randrange(256) for _ in range(3)))
    for _ in range(20):
        x, y = rnd.randrange(side), rnd.randrange(side)
        img.paste(tuple(rnd.randrange(256) for _ in range(3)), (x, y, min(side, x + 40), min(side, y + 40)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def aws_client(session, kind: str, endpoint: str):
    """One client per connection: a pool of one, one attempt (a retry would hide an error)."""
    cfg = BotoConfig(
        max_pool_connections=1,
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"},
    )
    return session.client(
        kind, endpoint_url=endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET, region_name=REGION,
        config=cfg,
    )


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = {k: [] for k in KINDS}
        self.errors: dict[str, int] = {k: 0 for k in KINDS}
        self.samples: dict[str, str] = {}

    def ok(self, kind: str, seconds: float):
        with self.lock:
            self.lat[kind].append(seconds)

    def fail(self, kind: str, what: str):
        with self.lock:
            self.errors[kind] += 1
            self.samples.setdefault(kind, what[:300])

    def merge(self, other: dict) -> None:
        for k in KINDS:
            self.lat[k].extend(other["lat"][k])
            self.errors[k] += other["errors"][k]
        for k, v in other["samples"].items():
            self.samples.setdefault(k, v)


class Conn:
    """One connection's client: a boto3 client (S3/SQS) or an HTTP/1.1 keep-alive connection (web)."""

    def __init__(self, kind: str, n: int, target: dict, session):
        self.kind, self.n, self.target = kind, n, target
        self.rnd = random.Random(n)
        self.i = 0
        if kind.startswith("s3"):
            self.aws = aws_client(session, "s3", target["endpoint"])
        elif kind.startswith("sqs"):
            self.aws = aws_client(session, "sqs", target["endpoint"])
        else:
            self.web = self.new_web()

    def new_web(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.target["web_port"], timeout=60)

    def web_request(self, method, path, body=None, headers=None):
        self.web.request(method, path, body=body, headers=headers or {})
        resp = self.web.getresponse()
        return resp.status, resp.read()

    def once(self, stats: Stats) -> None:
        """One request (a receiver: one receive, then one batch delete of what it got)."""
        state, rnd, kind = self.target["state"], self.rnd, self.kind
        self.i += 1
        t0 = time.monotonic()
        try:
            if kind == "upload":
                headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
                status, body = self.web_request("POST", "/v1/avatar/upload", rnd.choice(state["images"]), headers)
                ok = status == 201
            elif kind == "a_get":
                ident = rnd.choice(state["ids"])
                status, body = self.web_request("GET", f"/a/{ident}{rnd.choice(['', '_small', '_large'])}")
                ok = status == 200 and len(body) > 0
            elif kind == "s3_get":
                key = rnd.choice(state["keys"])
                body = self.aws.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                ok, status = len(body) == state["sizes"][key], 200
            elif kind == "s3_put":
                data = rnd.randbytes(rnd.choice([1024, 16384, 65536, 262144]))
                self.aws.put_object(Bucket=BUCKET, Key=f"put/{self.n}/{self.i % 50}", Body=data)
                ok, status, body = True, 200, b""
            elif kind == "sqs_send":
                self.aws.send_message(QueueUrl=state["queue"], MessageBody=f"m-{self.n}-{self.i}")
                ok, status, body = True, 200, b""
            else:
                self.receive(stats, t0)
                return
            if ok:
                stats.ok(kind, time.monotonic() - t0)
            else:
                stats.fail(kind, f"status {status}: {body[:200]!r}")
        except Exception as e:  # noqa: BLE001 - every failure is counted
            stats.fail(kind, repr(e))
            if kind in ("upload", "a_get"):
                self.web.close()
                self.web = self.new_web()
            time.sleep(0.05)

    def receive(self, stats: Stats, t0: float) -> None:
        # Short polls: a long poll's latency is its wait, not the server's.
        queue = self.target["state"]["queue"]
        msgs = self.aws.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        stats.ok("sqs_recv", time.monotonic() - t0)
        if not msgs:
            time.sleep(0.05)
            return
        t1 = time.monotonic()
        try:
            entries = [{"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(msgs)]
            res = self.aws.delete_message_batch(QueueUrl=queue, Entries=entries)
        except Exception as e:  # noqa: BLE001
            stats.fail("sqs_delete", repr(e))
            return
        if res.get("Failed"):
            stats.fail("sqs_delete", repr(res["Failed"][:2]))
        else:
            stats.ok("sqs_delete", time.monotonic() - t1)


def kind_of(n: int) -> str:
    kinds = [k for k, w in MIX.items() for _ in range(w)]
    return kinds[n % len(kinds)]


def client_process(numbers: list[int], target: dict, start_at: float, duration: float, out) -> None:
    """Runs the connections `numbers` from `start_at` (wall clock) for `duration` s."""
    session = boto3.session.Session()
    conns = [Conn(kind_of(n), n, target, session) for n in numbers]
    stats = Stats()

    def loop(conn: Conn) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        until = time.monotonic() + (start_at + duration - time.time())
        while time.monotonic() < until:
            conn.once(stats)

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 180)
    hung = sum(t.is_alive() for t in threads)
    out.put({"lat": stats.lat, "errors": stats.errors, "samples": stats.samples, "hung": hung})


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(target: dict) -> dict:
    session = boto3.session.Session()
    s3, sqs = aws_client(session, "s3", target["endpoint"]), aws_client(session, "sqs", target["endpoint"])
    s3.create_bucket(Bucket=BUCKET)
    keys, sizes = [], {}
    for i in range(20):
        key = f"seed/{i}"
        body = random.Random(i).randbytes([4096, 32768, 131072][i % 3])
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        keys.append(key)
        sizes[key] = len(body)
    queue = sqs.create_queue(QueueName="load", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    images = [jpeg(i) for i in range(8)]
    conn = http.client.HTTPConnection("127.0.0.1", target["web_port"], timeout=60)
    ids = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    for img in images[:5]:
        conn.request("POST", "/v1/avatar/upload", body=img, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 201, (resp.status, body)
        ids.append(json.loads(body)["id"])
    for ident in ids:
        deadline = time.monotonic() + 120
        while True:
            conn.request("GET", f"/v1/avatar/{ident}")
            st = json.loads(conn.getresponse().read())["status"]
            if st == "ready":
                break
            assert st == "pending" and time.monotonic() < deadline, st
            time.sleep(0.1)
    return {"keys": keys, "sizes": sizes, "queue": queue, "images": images, "ids": ids}


def measure_reference(target: dict) -> dict:
    """Each kind's p50 on the idle server, one connection, 3 s each."""
    session = boto3.session.Session()
    stats = Stats()
    for kind in MIX:
        conn = Conn(kind, 10_000, target, session)
        until = time.monotonic() + 3
        while time.monotonic() < until:
            conn.once(stats)
    # Drain what the reference sent so the load starts from an empty queue.
    aws_client(session, "sqs", target["endpoint"]).purge_queue(QueueUrl=target["state"]["queue"])
    errors = sum(stats.errors.values())
    assert errors == 0, f"errors on the idle server: {stats.samples}"
    return {k: statistics.median(v) if v else float("nan") for k, v in stats.lat.items()}


def crunch_backlog(target: dict) -> int:
    sqs = aws_client(boto3.session.Session(), "sqs", target["endpoint"])
    url = sqs.get_queue_url(QueueName="crunchbox-crunch")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--procs", type=int, default=2, help="client processes the connections are spread over")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "crunchbox"))
    args = ap.parse_args()

    data = Path(tempfile.mkdtemp(prefix="crunchbox-load-"))
    aws_port, web_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "CRUNCHBOX_AWS_LISTEN": f"127.0.0.1:{aws_port}",
            "CRUNCHBOX_WEB_LISTEN": f"127.0.0.1:{web_port}",
            "CRUNCHBOX_WEB_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
            "RUST_LOG": "warn",
        }
    )
    log_path = data.parent / f"{data.name}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([args.binary, "serve", "--data-dir", str(data)], env=env, stdout=log, stderr=subprocess.STDOUT)
    failed = True
    try:
        wait_port(aws_port)
        wait_port(web_port)
        target = {"endpoint": f"http://127.0.0.1:{aws_port}", "web_port": web_port}
        target["state"] = setup(target)
        reference = measure_reference(target)
        load_before = os.getloadavg()
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        # Building 200 clients takes a while on two shared cores: start later.
        start_at = time.time() + 10 + args.conns * 0.05
        workers = [
            ctx.Process(target=client_process, args=(list(range(p, args.conns, args.procs)), target, start_at,
                                                     args.duration, out))
            for p in range(args.procs)
        ]
        for w in workers:
            w.start()
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = cpu_seconds(proc.pid)
        stats = Stats()
        hung = 0
        for _ in workers:
            got = out.get(timeout=args.duration + 600)
            stats.merge(got)
            hung += got["hung"]
        elapsed = args.duration
        cpu = cpu_seconds(proc.pid) - cpu0
        for w in workers:
            w.join(timeout=30)
        late = time.time() - (start_at + args.duration)
        info = {
            "hwm": proc_status(proc.pid, "VmHWM"),
            "rss": proc_status(proc.pid, "VmRSS"),
            "cpu": cpu,
            "backlog": crunch_backlog(target),
            "load_before": load_before,
            "hung": hung,
            "late": late,
        }
        errors = report(args, stats, reference, elapsed, info)
        failed = errors > 0 or hung > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)
        problems = [line for line in log_path.read_text(errors="replace").splitlines() if "panicked" in line]
        if problems:
            print(f"server log ({log_path}): {problems[:3]}")
            failed = True
        else:
            log_path.unlink(missing_ok=True)
    sys.exit(1 if failed else 0)


def report(args, stats: Stats, reference: dict, elapsed: float, info: dict) -> int:
    la0, la = info["load_before"], os.getloadavg()
    print(f"load: {args.conns} connections over {args.procs} client processes, {elapsed:.0f} s "
          f"(last thread done {info['late']:+.1f} s after the end); loadavg before {la0[0]:.2f}, after "
          f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (machine shared)")
    print(f"{'kind':<11} {'conns':>5} {'requests':>9} {'req/s':>7} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'idle p50 ms':>11} {'p99/idle':>8}")
    total_req = total_err = 0
    every: list[float] = []
    for kind in KINDS:
        lat = stats.lat[kind]
        conns = sum(1 for n in range(args.conns) if kind_of(n) == kind)
        p50, p99, ref = pct(lat, 50) * 1000, pct(lat, 99) * 1000, reference.get(kind, float("nan")) * 1000
        print(f"{kind:<11} {conns:>5} {len(lat):>9} {len(lat) / elapsed:>7.1f} {stats.errors[kind]:>6} "
              f"{p50:>8.1f} {p99:>8.1f} {ref:>11.1f} {p99 / ref if ref else float('nan'):>8.1f}")
        total_req += len(lat)
        total_err += stats.errors[kind]
        every.extend(lat)
    print(f"total: {total_req} ok, {total_err} errors, {info['hung']} hung ({total_req / elapsed:.0f} req/s); "
          f"all kinds p50 {pct(every, 50) * 1000:.1f} ms, p99 {pct(every, 99) * 1000:.1f} ms")
    print(f"server: peak RSS (VmHWM) {info['hwm'] / 2**20:.1f} MiB, RSS at end {info['rss'] / 2**20:.1f} MiB, "
          f"CPU {info['cpu']:.0f} s in {elapsed:.0f} s ({info['cpu'] / elapsed:.2f} cores); "
          f"crunch backlog at end {info['backlog']} messages")
    for kind, sample in stats.samples.items():
        print(f"  first {kind} error: {sample}")
    sys.stdout.flush()
    return total_err


if __name__ == "__main__":
    main()
