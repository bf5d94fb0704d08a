#!/usr/bin/env python3
"""Start-up time and idle memory of `crunchbox serve --roles s3,sqs`, the
CI emulator shape, against a baseline binary in the same run.

For each binary, RUNS times, alternating: exec on a fresh data dir, time
until the AWS port accepts a connection (polled every 0.5 ms), then 2 s
idle and the process's VmRSS. Prints medians and the ratio to the
baseline (issue 16's bound: neither may grow by more than 20 %).

    python3 bench/footprint.py --baseline /tmp/crunchbox-base [--binary target/release/crunchbox] [--runs 15]
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def one_run(binary: str, idle: float) -> tuple[float, float]:
    """(ms from exec to accepting, idle RSS in MiB)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, CRUNCHBOX_AWS_LISTEN=f"127.0.0.1:{port}", RUST_LOG="warn")
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary, "serve", "--roles", "s3,sqs", "--data-dir", data], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{binary} exited with {proc.returncode}")
                    if time.perf_counter() - t0 > 30:
                        raise RuntimeError(f"{binary} did not accept within 30 s")
                    time.sleep(0.0005)
            accept_ms = (time.perf_counter() - t0) * 1000
            time.sleep(idle)
            rss = rss_kib(proc.pid) / 1024
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return accept_ms, rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "crunchbox"))
    ap.add_argument("--baseline", required=True, help="the binary to compare with (e.g. built from main before)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--idle", type=float, default=2.0, help="seconds idle before reading RSS")
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "binary": []}
    for i in range(args.runs):
        for name in ("baseline", "binary") if i % 2 == 0 else ("binary", "baseline"):
            results[name].append(one_run(getattr(args, name), args.idle))
        print(f"run {i + 1}/{args.runs}", file=sys.stderr)
    med = {n: (statistics.median(a for a, _ in r), statistics.median(m for _, m in r)) for n, r in results.items()}
    print(f"{'':10} {'exec->accept ms':>16} {'idle RSS MiB':>13}")
    for name in ("baseline", "binary"):
        print(f"{name:10} {med[name][0]:16.1f} {med[name][1]:13.1f}")
    t_ratio, m_ratio = med["binary"][0] / med["baseline"][0], med["binary"][1] / med["baseline"][1]
    print(f"{'ratio':10} {t_ratio:16.2f} {m_ratio:13.2f}   (bound: 1.20 each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
