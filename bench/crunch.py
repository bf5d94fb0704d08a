#!/usr/bin/env python3
"""Crunch throughput against libvips, on one core, per input format.

For every image both tools make the same three variants (600, 200 and 100 px
boxes, JPEG q85 4:2:0, metadata stripped; PNG where crunchbox keeps
transparency). The headline reference is **libvips used well**: pyvips in
one process, one shrink-on-load decode to the 600 box, then 200 and 100
made from that in-memory 600 (lanczos3), the same encodes: exactly
crunchbox's steps. Its time is taken inside Python, so interpreter start-up
is not charged to it; crunchbox's process start is charged to crunchbox.
`vipsthumbnail` run once per box (three decodes per file, the older
reference) is printed for the whole corpus too, and so is the cost of the
worker's WebP twins (`crunch --webp` against plain `crunch`).

The corpus is split into JPEG baseline, JPEG progressive, PNG, GIF and WebP;
each group is timed on its own (best of ROUNDS, tools alternating) and gets
its own ratio. Everything is pinned to one core (taskset) with libvips'
thread pool at 1.

    python3 bench/crunch.py        (env: CRUNCHBOX_CORPUS, ROUNDS=5, CORE=0, CRUNCHBOX_BIN)

Needs `vipsthumbnail` (Debian libvips-tools, installed when missing) and
pyvips (installed into target/bench-venv when missing).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("CRUNCHBOX_CORPUS", ROOT.parent / "shared" / "corpus"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
CORE = os.environ.get("CORE", "0")
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BINARY = Path(os.environ.get("CRUNCHBOX_BIN", TARGET / "release" / "crunchbox"))
VENV = TARGET / "bench-venv"
ENV = {**os.environ, "VIPS_CONCURRENCY": "1"}

# The cascade, run by pyvips in its own process; prints elapsed ns.
CASCADE = r"""
import os, sys, time
import pyvips
pyvips.cache_set_max(0)
out = sys.argv[1]
started = time.perf_counter_ns()
for arg in sys.argv[2:]:
    kind, path = arg.split(":", 1)
    stem = os.path.splitext(os.path.basename(path))[0]
    large = pyvips.Image.thumbnail(path, 600, size="down").copy_memory()
    for suffix, img in (("_large", large), ("", large.thumbnail_image(200, size="down")),
                        ("_small", large.thumbnail_image(100, size="down"))):
        if kind == "jpg":
            img.jpegsave(f"{out}/{stem}{suffix}.jpg", Q=85, strip=True, subsample_mode="on")
        else:
            img.pngsave(f"{out}/{stem}{suffix}.png", strip=True)
print(time.perf_counter_ns() - started)
"""


def kind_of(path: Path) -> str:
    data = path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG progressive" if progressive(data) else "JPEG baseline"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"GIF8":
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return "other"


def progressive(jpeg: bytes) -> bool:
    """Walks the JPEG's markers up to its first start-of-frame."""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            return False
        marker = jpeg[i + 1]
        if marker in (0xC2, 0xC6, 0xCA, 0xCE):
            return True
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return False
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    return False


def ensure_tools() -> None:
    if shutil.which("vipsthumbnail") is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "libvips-tools"], check=True, stdout=subprocess.DEVNULL)
    python = VENV / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import pyvips"], capture_output=True).returncode:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "pyvips"], check=True)
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo build --release first (or set CRUNCHBOX_BIN)")


def fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def run_crunchbox(files: list[Path], out: Path, *flags: str) -> int:
    fresh(out)
    started = time.perf_counter_ns()
    subprocess.run(["taskset", "-c", CORE, str(BINARY), "crunch", *flags, *map(str, files), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter_ns() - started


def run_cascade(files: list[Path], kinds: dict[Path, str], out: Path) -> int:
    fresh(out)
    args = [f"{kinds[f]}:{f}" for f in files]
    done = subprocess.run(["taskset", "-c", CORE, str(VENV / "bin" / "python"), "-c", CASCADE, str(out), *args],
                          check=True, capture_output=True, text=True, env=ENV)
    return int(done.stdout.strip())


def run_vipsthumbnail(files: list[Path], kinds: dict[Path, str], out: Path) -> int:
    fresh(out)
    started = time.perf_counter_ns()
    for box, suffix in ((600, "_large"), (200, ""), (100, "_small")):
        for ext, opts in (("jpg", "[Q=85,strip]"), ("png", "[strip]")):
            group = [str(f) for f in files if kinds[f] == ext]
            if group:
                subprocess.run(["taskset", "-c", CORE, "vipsthumbnail", *group, "-s", str(box),
                                "-o", f"{out}/%s{suffix}.{ext}{opts}"], check=True, env=ENV)
    return time.perf_counter_ns() - started


def main() -> None:
    ensure_tools()
    files = sorted(p for p in CORPUS.iterdir() if kind_of(p) != "other")
    if not files:
        sys.exit(f"no images in {CORPUS} (set CRUNCHBOX_CORPUS)")
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(kind_of(f), []).append(f)
    vips_version = subprocess.run(["vips", "--version"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # crunchbox decides JPEG or PNG per file (transparency); libvips is
        # asked for the same.
        run_crunchbox(files, tmp / "cb")
        kinds = {f: "png" if (tmp / "cb" / f"{f.stem}.png").exists() else "jpg" for f in files}
        outputs = len(list((tmp / "cb").iterdir()))
        run_cascade(files, kinds, tmp / "vc")
        if len(list((tmp / "vc").iterdir())) != outputs:
            sys.exit("the pyvips cascade wrote a different number of files than crunchbox")

        print(f"corpus: {len(files)} images in {CORPUS}, core {CORE}, best of {ROUNDS}, "
              f"{vips_version}, load {os.getloadavg()[0]:.2f}")
        print(f"{'format':<17} {'files':>5} {'crunchbox img/s':>15} {'cascade img/s':>13} {'ratio':>6}")
        total_cb = total_vc = 0
        for name in ("JPEG baseline", "JPEG progressive", "PNG", "GIF", "WebP"):
            group = groups.get(name)
            if not group:
                continue
            best_cb = best_vc = None
            for _ in range(ROUNDS):
                cb = run_crunchbox(group, tmp / "cb")
                vc = run_cascade(group, kinds, tmp / "vc")
                best_cb = cb if best_cb is None else min(best_cb, cb)
                best_vc = vc if best_vc is None else min(best_vc, vc)
            total_cb += best_cb
            total_vc += best_vc
            rate_cb, rate_vc = len(group) * 1e9 / best_cb, len(group) * 1e9 / best_vc
            print(f"{name:<17} {len(group):>5} {rate_cb:>15.2f} {rate_vc:>13.2f} {rate_cb / rate_vc:>5.2f}x")
        size = lambda d: sum(p.stat().st_size for p in d.iterdir())  # noqa: E731
        run_crunchbox(files, tmp / "cb")
        run_cascade(files, kinds, tmp / "vc")
        rate_cb, rate_vc = len(files) * 1e9 / total_cb, len(files) * 1e9 / total_vc
        print(f"{'all':<17} {len(files):>5} {rate_cb:>15.2f} {rate_vc:>13.2f} {rate_cb / rate_vc:>5.2f}x"
              "   <- headline: crunchbox vs libvips used well (one-decode cascade)")
        best_vt = min(run_vipsthumbnail(files, kinds, tmp / "vt") for _ in range(max(1, ROUNDS // 2)))
        rate_vt = len(files) * 1e9 / best_vt
        print(f"vipsthumbnail x3 (three decodes per file): {rate_vt:.2f} img/s; crunchbox {rate_cb / rate_vt:.2f}x")
        print(f"output bytes (all variants): crunchbox {size(tmp / 'cb'):,}, libvips cascade {size(tmp / 'vc'):,}")
        # The worker also writes a WebP twin of every variant (issue 18: at
        # most 15 % fewer images/s than without them).
        best_plain = best_twins = None
        for _ in range(ROUNDS):
            plain, twins = run_crunchbox(files, tmp / "cb"), run_crunchbox(files, tmp / "tw", "--webp")
            best_plain = plain if best_plain is None else min(best_plain, plain)
            best_twins = twins if best_twins is None else min(best_twins, twins)
        webp_bytes = sum(p.stat().st_size for p in (tmp / "tw").iterdir() if p.suffix == ".webp")
        print(f"with WebP twins (--webp, as the worker): {len(files) * 1e9 / best_twins:.2f} img/s vs "
              f"{len(files) * 1e9 / best_plain:.2f} without, {1 - best_plain / best_twins:.1%} fewer images/s; "
              f"twins {webp_bytes:,} bytes vs {size(tmp / 'cb'):,} JPEG/PNG")
        print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
