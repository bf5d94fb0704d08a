#!/usr/bin/env python3
"""End-to-end avatar pipeline benchmark on the release binary.

For 1, 8 and 32 concurrent clients, each a thread that uploads a corpus
photo over HTTP, waits until it is ready, then takes the next photo. A
client learns readiness in one of two ways (READY), each run on its own:
`poll` asks `HEAD /a/{id}` (the default variant, whose presence is what
"ready" means) until it exists; `sse` reads the upload's event stream
(`GET /v1/avatar/{id}/events`) until its `ready` event. Per level and way:

  * upload→ready latency p50 / p99 (polls back off from POLL to POLL_MAX
    seconds, so 32 pollers do not eat the CPU the server crunches with),
  * uploads/s (uploads completed to ready ÷ wall time),
  * peak RSS of the server process (VmHWM from /proc/PID/status),
  * CPU used by the clients (this process) and by the server, in cores, so
    a run where the load generator crowds out the server shows as such.

Every concurrency level gets a fresh server (fresh data dir, every role on
the embedded driver) so its peak RSS is its own. As the reference, measured
in the same run: `crunchbox crunch --webp` (the same outputs as the
worker's: three variants and their WebP twins) over the same photos
offline, one process per core at once, each going through the corpus
OFFLINE_PASSES times, images/s, before and after the served runs (their
mean is the reference); the ratio says how much of the crunch rate of
every core survives HTTP, S3, SQS and the shared cores.

  $CRUNCHBOX_TOOLS/venv/bin/python bench/pipeline.py   (env: CRUNCHBOX_CORPUS, ROUNDS=2, PASSES, OFFLINE_PASSES, READY=poll,sse, LEVELS=1,8,32)
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "e2e"))
from conftest import BINARY, CORPUS, Server  # noqa: E402

TOKEN = "dev-token"
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp"}
LEVELS = tuple(int(n) for n in os.environ.get("LEVELS", "1,8,32").split(","))
# Uploads per level: PASSES times through the corpus. Short runs are mostly
# ramp-up and tail (the last uploads crunch while other cores idle).
PASSES = int(os.environ.get("PASSES", "8"))
# How clients learn an upload is ready: polling HEAD /a/{id}, or the
# upload's event stream (the push the product offers for exactly this).
READY = tuple(os.environ.get("READY", "poll,sse").split(","))
# Each measurement (the reference, and every served level) is the best of
# ROUNDS runs.
ROUNDS = int(os.environ.get("ROUNDS", "2"))
OFFLINE_PASSES = int(os.environ.get("OFFLINE_PASSES", "3"))
POLL = 0.02
POLL_MAX = 0.1
DEADLINE = 600.0


def photos() -> list[tuple[bytes, str]]:
    files = sorted(p for p in CORPUS.iterdir() if p.suffix.lower() in MIME)
    if not files:
        sys.exit(f"no images in {CORPUS}")
    return [(p.read_bytes(), MIME[p.suffix.lower()]) for p in files]


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def upload(web: str, body: bytes, mime: str) -> str:
    """Uploads; returns the new avatar id."""
    status, answer = request(
        "POST", f"{web}/v1/avatar/upload", body, {"Authorization": f"Bearer {TOKEN}", "Content-Type": mime}
    )
    if status != 201:
        raise RuntimeError(f"upload answered {status}: {answer[:200]!r}")
    return json.loads(answer)["id"]


def ready_by_polling(web: str, avatar_id: str, started: float) -> None:
    """Polls `HEAD /a/{id}` until the default variant exists."""
    pause = POLL
    while True:
        status, _ = request("HEAD", f"{web}/a/{avatar_id}")
        if status == 200:
            return
        if status != 404:
            raise RuntimeError(f"HEAD /a/{avatar_id} answered {status}")
        if time.perf_counter() - started > DEADLINE:
            raise RuntimeError(f"{avatar_id} not ready after {DEADLINE}s")
        time.sleep(pause)
        pause = min(pause * 2, POLL_MAX)


def settled_over_sse(port: int, avatar_id: str) -> str | None:
    """Reads `GET /v1/avatar/{id}/events` until the upload settles; returns
    the last status it announced."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", f"/v1/avatar/{avatar_id}/events", headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"events answered {resp.status}")
        last = None
        while True:
            line = resp.readline()
            if not line:
                return last
            if line.startswith(b"data:"):
                last = json.loads(line[5:])["status"]
                if last in ("ready", "failed"):
                    return last
    finally:
        conn.close()


def upload_until_ready(server: Server, body: bytes, mime: str, ready: str) -> float:
    """Seconds from sending the upload to its default variant existing,
    learnt by polling (`ready="poll"`) or from its event stream (`"sse"`)."""
    started = time.perf_counter()
    avatar_id = upload(server.web, body, mime)
    if ready == "sse":
        last = settled_over_sse(server.web_port, avatar_id)
        if last != "ready":
            raise RuntimeError(f"{avatar_id}'s events ended with {last}")
    else:
        ready_by_polling(server.web, avatar_id, started)
    return time.perf_counter() - started


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of `pid` (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def run_clients(clients: int, total: int, one) -> tuple[list[float], float]:
    """Calls `one(n)` for n in range(total) from `clients` threads, each
    taking the next n when its call returns; returns the calls' results and
    the wall time. Raises if any call failed."""
    results: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                result = one(n)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(str(e))
                return
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} calls failed, e.g. {errors[0]}")
    return results, wall


def latency_summary(latencies: list[float], wall: float) -> dict:
    """Count, p50, p99 (seconds) and rate (per second of `wall`)."""
    latencies = sorted(latencies)
    return {
        "uploads": len(latencies),
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "rate": len(latencies) / wall,
    }


def run_level(clients: int, inputs: list[tuple[bytes, str]], total: int, tmp: Path, ready: str, n: int = 0) -> dict:
    server = Server(tmp / f"c{clients}-{ready}-{n}", env={"CRUNCHBOX_WEB_MAX_UPLOAD_BYTES": str(16 * 1024 * 1024)})
    server.start()
    try:
        # Warm-up: one upload, so connection set-up is not measured.
        upload_until_ready(server, *inputs[0], ready)
        cpu0 = (own_cpu(), process_cpu(server.proc.pid))
        latencies, wall = run_clients(
            clients, total, lambda n: upload_until_ready(server, *inputs[n % len(inputs)], ready)
        )
        cpu1 = (own_cpu(), process_cpu(server.proc.pid))
        rss = peak_rss_mib(server.proc.pid)
    finally:
        server.stop()
    return {
        "clients": clients,
        "ready": ready,
        **latency_summary(latencies, wall),
        "rss": rss,
        "gen_cores": (cpu1[0] - cpu0[0]) / wall,
        "server_cores": (cpu1[1] - cpu0[1]) / wall,
    }


def offline_crunch_rate(tmp: Path, processes: int = 1) -> float:
    """images/s of `crunchbox crunch` over the corpus; with several
    processes, each crunches the whole corpus at the same time (all cores).
    Each process goes through the corpus OFFLINE_PASSES times in a row, so
    the rate is sustained like the served one and not one short burst (a
    single pass is under two seconds; its rate swung by ±10 % run to run)."""
    files = sorted(str(p) for p in CORPUS.iterdir() if p.suffix.lower() in MIME)
    failures: list[int] = []

    def passes(i: int) -> None:
        for n in range(OFFLINE_PASSES):
            # --webp: the served worker writes every variant's WebP twin too.
            out = tmp / f"offline{i}-{n}"
            code = subprocess.call([str(BINARY), "crunch", "--webp", *files, "--out", str(out)],
                                   stdout=subprocess.DEVNULL)
            if code != 0:
                failures.append(code)
                return

    best = None
    for _ in range(ROUNDS):
        started = time.perf_counter()
        threads = [threading.Thread(target=passes, args=(i,)) for i in range(processes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            sys.exit(f"crunchbox crunch exited with {failures[0]}")
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    return processes * OFFLINE_PASSES * len(files) / best


def main() -> None:
    if not BINARY.exists():
        sys.exit(f"{BINARY} missing: CARGO_INCREMENTAL=1 cargo build --release")
    inputs = photos()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"corpus: {len(inputs)} photos from {CORPUS}; {os.cpu_count()} cores; load before: {load}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        single = offline_crunch_rate(tmp)
        cores = os.cpu_count() or 1
        before = offline_crunch_rate(tmp, cores)
        print(f"reference: crunchbox crunch offline, one process: {single:6.2f} images/s; "
              f"{cores} processes at once (all cores): {before:6.2f} images/s")
        rows = []
        for clients in LEVELS:
            total = max(PASSES * len(inputs), 2 * clients)
            for ready in READY:
                # Best of ROUNDS, fresh server each, as the reference is.
                runs = [run_level(clients, inputs, total, tmp, ready, n) for n in range(ROUNDS)]
                rows.append(max(runs, key=lambda r: r["rate"]))
                print(f"  {clients} clients, ready by {ready}: {rows[-1]['rate']:.2f} uploads/s", flush=True)
        # Measured again after the served runs, so drift of the machine
        # during the run moves both sides of the ratio alike.
        after = offline_crunch_rate(tmp, cores)
        offline = (before + after) / 2
        print(f"reference again, {cores} processes at once: {after:6.2f} images/s; "
              f"mean {offline:6.2f} images/s (the 'vs offline' column)")
        print(
            f"{'clients':>7} {'ready by':>8} {'uploads':>7} {'p50 ms':>8} {'p99 ms':>8} {'uploads/s':>9} "
            f"{'peak RSS MiB':>12} {'vs offline':>10} {'CPU clients/server':>18}"
        )
        for r in rows:
            print(
                f"{r['clients']:>7} {r['ready']:>8} {r['uploads']:>7} {r['p50'] * 1000:>8.0f} "
                f"{r['p99'] * 1000:>8.0f} {r['rate']:>9.2f} {r['rss']:>12.1f} {r['rate'] / offline:>9.2f}x "
                f"{r['gen_cores']:>9.2f}/{r['server_cores']:.2f}"
            )
    with open("/proc/loadavg") as f:
        print(f"load after: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
