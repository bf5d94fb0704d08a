#!/usr/bin/env python3
"""Readiness push benchmark (SPEC "Content negotiation and readiness push")
on the release binary.

1. upload→ready over server-sent events: for 1, 8 and 32 concurrent
   clients, each a thread that uploads a 6 MP JPEG (EVENTS_PHOTO, default
   the corpus's 3088×2056 aitzgorri) and reads `GET /v1/avatar/{id}/events`
   until its `ready` event, then takes the next upload. Latency runs from
   sending the upload to reading `ready`; p50/p99 per level, a fresh server
   (every role, embedded driver) per level, one warm-up upload first.
2. STREAMS (default 1,000) open event streams: a server without a worker
   (`--roles s3,sqs,web`, so uploads stay pending), one pending upload per
   stream (one watcher each: the worst case; streams of one id share one),
   all held open for HOLD seconds. Reports the server's RSS before, while
   open and 20 s after closing (the server notices a closed stream at its
   next keep-alive comment), its CPU while the watchers probe S3, and the
   most SDK connections its web tier held to the embedded endpoint then.

  $VENV/bin/python bench/events.py   (env: CRUNCHBOX_BIN, CRUNCHBOX_CORPUS, EVENTS_PHOTO, EVENTS_LEVELS, STREAMS, HOLD)
"""

import os
import selectors
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "e2e"))
from conftest import BINARY, CORPUS, Server  # noqa: E402
from pipeline import latency_summary, peak_rss_mib, process_cpu, run_clients, settled_over_sse, upload  # noqa: E402

LEVELS = tuple(int(n) for n in os.environ.get("EVENTS_LEVELS", "1,8,32").split(",") if n)
PHOTO = Path(os.environ.get("EVENTS_PHOTO", CORPUS / "aitzgorri_by_Aitzol_Berasategi.jpg"))
STREAMS = int(os.environ.get("STREAMS", "1000"))
HOLD = float(os.environ.get("HOLD", "20"))
# The pending uploads of part 2: the web role checks only the magic, and no
# worker runs to crunch them.
TINY_JPEG = b"\xff\xd8\xff\xe0" + bytes(60)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def connections_to(port: int) -> int:
    """Established loopback TCP connections whose remote end is `port`
    (the client side of connections to it), from /proc/net/tcp."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def latency_level(clients: int, photo: bytes, total: int, tmp: Path) -> dict:
    server = Server(tmp / f"c{clients}", env={"CRUNCHBOX_WEB_MAX_UPLOAD_BYTES": str(16 * 1024 * 1024)}).start()
    try:
        settled_over_sse(server.web_port, upload(server.web, photo, "image/jpeg"))  # warm-up

        def one(_: int) -> float:
            started = time.perf_counter()
            last = settled_over_sse(server.web_port, upload(server.web, photo, "image/jpeg"))
            if last != "ready":
                raise RuntimeError(f"ended {last}")
            return time.perf_counter() - started

        latencies, wall = run_clients(clients, total, one)
    finally:
        server.stop()
    return {"clients": clients, **latency_summary(latencies, wall)}


def open_streams(tmp: Path) -> dict:
    server = Server(tmp / "streams", roles="s3,sqs,web").start()
    pid = server.proc.pid
    try:
        ids = [upload(server.web, TINY_JPEG, "image/jpeg") for _ in range(STREAMS)]
        time.sleep(1)
        before = rss_mib(pid)
        sel = selectors.DefaultSelector()
        socks = []
        for avatar_id in ids:
            s = socket.create_connection(("127.0.0.1", server.web_port))
            s.sendall(f"GET /v1/avatar/{avatar_id}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, bytearray())
            socks.append(s)
        # Every stream must deliver its first (pending) event.
        waiting = set(socks)
        deadline = time.monotonic() + 120
        while waiting and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                chunk = key.fileobj.recv(65536)
                if not chunk:
                    raise RuntimeError("a stream closed early")
                key.data.extend(chunk)
                if b'"status":"pending"' in key.data:
                    waiting.discard(key.fileobj)
        if waiting:
            raise RuntimeError(f"{len(waiting)} streams sent no first event")
        cpu0, t0 = process_cpu(pid), time.perf_counter()
        # The web tier's SDK connections to the embedded endpoint, sampled
        # every 50 ms while the watchers probe.
        pool = 0
        while time.perf_counter() - t0 < HOLD:
            pool = max(pool, connections_to(server.aws_port))
            time.sleep(0.05)
        cores = (process_cpu(pid) - cpu0) / (time.perf_counter() - t0)
        during = rss_mib(pid)
        for s in socks:
            sel.unregister(s)
            s.close()
        # The server notices a closed stream at its next keep-alive write (15 s).
        time.sleep(20)
        after = rss_mib(pid)
        peak = peak_rss_mib(pid)
    finally:
        server.stop()
    return {"before": before, "during": during, "after": after, "peak": peak, "cores": cores, "pool": pool}


def main() -> None:
    if not BINARY.exists():
        sys.exit(f"{BINARY} missing: cargo build --release")
    photo = PHOTO.read_bytes()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"photo: {PHOTO.name} ({len(photo) / 1e6:.1f} MB); {os.cpu_count()} cores; load before: {load}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'clients':>7} {'uploads':>7} {'p50 ms':>8} {'p99 ms':>8} {'uploads/s':>9}")
        for clients in LEVELS:
            r = latency_level(clients, photo, max(12, 3 * clients), tmp)
            print(
                f"{r['clients']:>7} {r['uploads']:>7} {r['p50'] * 1000:>8.0f} {r['p99'] * 1000:>8.0f} {r['rate']:>9.2f}",
                flush=True,
            )
        r = open_streams(tmp)
        print(
            f"{STREAMS} open streams (one pending id each), held {HOLD:.0f}s: RSS before {r['before']:.1f} MiB, "
            f"open {r['during']:.1f} MiB, after closing {r['after']:.1f} MiB, peak {r['peak']:.1f} MiB; "
            f"server CPU while open {r['cores']:.2f} cores; at most {r['pool']} SDK connections to the endpoint"
        )
    with open("/proc/loadavg") as f:
        print(f"load after: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
