"""Power-loss tests (issue 13): plfs (e2e/powerloss/plfs.py), a FUSE file
system that keeps everything not yet fsynced in memory and drops it on a
"power cut", under SQLite, deliberately wrong writers and crunchbox.

Harness validation alone (no crunchbox binary needed):
    pytest -q e2e/test_powerloss.py -k harness
The crunchbox run (POWERLOSS_CUTS cuts, default 5; POWERLOSS_SEED):
    pytest -q -s e2e/test_powerloss.py -k crunchbox
"""

import ctypes
import hashlib
import io
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from conftest import ACCESS_KEY, BINARY, CORPUS, REGION, SECRET_KEY, Server

sys.path.insert(0, str(Path(__file__).resolve().parent / "powerloss"))
from harness import PowerLossMount, available, fsync_path, makedirs_durable  # noqa: E402

WRITERS = Path(__file__).resolve().parent / "powerloss" / "writers.py"
CUTS = int(os.environ.get("POWERLOSS_CUTS", "5"))
SEED = int(os.environ.get("POWERLOSS_SEED", str(int(time.time()))))
# POWERLOSS_CRASH_ONLY=1: sync instead of cutting (kill -9 only), to check the checks
CRASH_ONLY = os.environ.get("POWERLOSS_CRASH_ONLY") == "1"
# POWERLOSS_SYNC_DIRS=1 (diagnosis only): fsync every directory under the data
# dir after the kill, before the cut, to see what file data alone loses
SYNC_DIRS = os.environ.get("POWERLOSS_SYNC_DIRS") == "1"


@pytest.fixture
def plfs(tmp_path):
    why = available()
    assert why is None, f"plfs cannot run here: {why} (.ci/run installs fuse3 and mfusepy)"
    m = PowerLossMount(tmp_path / "backing", tmp_path / "mnt", log=tmp_path / "plfs.log")
    with m:
        yield m


def write_file(path: Path, data: bytes, sync: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# the model, operation by operation


def test_harness_model(plfs):
    m = plfs.mount
    for d in "abcdef":
        os.mkdir(m / d)
    fsync_path(m)
    # a: a process sees its own unsynced writes, names and sizes; data synced
    # but the name never: gone (fsync of a new file does not make its name durable)
    write_file(m / "a" / "pending", b"abc")
    assert (m / "a" / "pending").read_bytes() == b"abc" and os.path.getsize(m / "a" / "pending") == 3
    write_file(m / "a" / "synced-file-only", b"data", sync=True)
    # b: name durable before its data: an empty file; both synced: kept
    write_file(m / "b" / "name-only", b"lost data")
    write_file(m / "b" / "both", b"kept", sync=True)
    fsync_path(m / "b")
    (m / "b" / "created-after-dirsync").write_bytes(b"x")
    # c: unlink without a dir sync comes back
    write_file(m / "c" / "victim", b"v", sync=True)
    fsync_path(m / "c")
    os.unlink(m / "c" / "victim")
    assert not (m / "c" / "victim").exists()
    # e: a durable file overwritten and truncated without fsync: old content
    write_file(m / "e" / "old", b"old contents", sync=True)
    fsync_path(m / "e")
    with open(m / "e" / "old", "r+b") as f:
        f.write(b"NEW")
        f.truncate(5)
    assert (m / "e" / "old").read_bytes() == b"NEW c"
    # d: rename within a dir is durable only with the dir; a deep new
    # subtree is durable when every new level's parent was synced
    write_file(m / "d" / "tmp1", b"one", sync=True)
    write_file(m / "d" / "tmp2", b"two", sync=True)
    makedirs_durable(m / "d" / "x" / "y", m / "d")  # fsyncs x, then d
    write_file(m / "d" / "x" / "y" / "f", b"deep", sync=True)
    fsync_path(m / "d" / "x" / "y")
    os.rename(m / "d" / "tmp1", m / "d" / "final1")
    os.rename(m / "d" / "tmp2", m / "d" / "final2")
    fsync_path(m / "d" / "final2")  # the file, not the dir: not enough
    # a new tree below a parent that is never synced: gone, whatever was synced inside
    os.makedirs(m / "lost" / "sub")
    write_file(m / "lost" / "sub" / "f", b"f", sync=True)
    fsync_path(m / "lost" / "sub")
    fsync_path(m / "lost")
    # f: sync_file_range reaches nothing (the sled 0.34 log write)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(m / "f" / "sfr", os.O_WRONLY | os.O_CREAT, 0o644)
    os.fsync(fd)
    fsync_path(m / "f")
    os.write(fd, b"sync_file_range only")
    assert libc.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), 7) == 0
    os.close(fd)

    rec = plfs.power_cycle()
    assert rec["dropped_bytes"] > 0
    assert sorted(os.listdir(m)) == list("abcdef")
    assert os.listdir(m / "a") == []
    assert sorted(os.listdir(m / "b")) == ["both", "name-only"]
    assert (m / "b" / "both").read_bytes() == b"kept"
    assert (m / "b" / "name-only").read_bytes() == b""
    assert (m / "c" / "victim").read_bytes() == b"v"
    assert (m / "e" / "old").read_bytes() == b"old contents"
    assert (m / "f" / "sfr").read_bytes() == b""
    assert sorted(os.listdir(m / "d")) == ["tmp1", "tmp2", "x"]
    assert (m / "d" / "tmp2").read_bytes() == b"two"
    assert (m / "d" / "x" / "y" / "f").read_bytes() == b"deep"
    # and the backing dir is exactly that (plus the hidden stash, which now
    # only holds extra links to files looked up since the mount)
    b = plfs.backing
    assert sorted(os.listdir(b)) == [".plstash", *"abcdef"]
    assert all(os.stat(p).st_nlink >= 2 for p in (b / ".plstash").iterdir())
    assert (b / "d" / "x" / "y" / "f").read_bytes() == b"deep"

    # a rename made durable in one dir: atomically replaced
    os.rename(m / "d" / "tmp1", m / "d" / "tmp2")
    # rmdir of a tree, made durable
    os.unlink(m / "d" / "x" / "y" / "f")
    os.rmdir(m / "d" / "x" / "y")
    os.rmdir(m / "d" / "x")
    fsync_path(m / "d")
    # a renamed directory
    os.rename(m / "e", m / "a" / "e2")
    fsync_path(m / "a")
    fsync_path(m)
    plfs.power_cycle()
    assert sorted(os.listdir(m / "d")) == ["tmp2"]
    assert (m / "d" / "tmp2").read_bytes() == b"one"
    assert sorted(os.listdir(m)) == list("abcdf")
    assert (m / "a" / "e2" / "old").read_bytes() == b"old contents"

    # a clean "sync" keeps everything
    write_file(m / "d" / "s", b"s")
    plfs.command("sync")
    plfs.power_cycle()
    assert (m / "d" / "s").read_bytes() == b"s"


def test_harness_read_your_writes_matches_a_real_file(plfs, tmp_path):
    """Random writes, truncates and extends: the mount reads like a real
    file; after fsync + cut it holds exactly that content; without, the last
    synced content."""
    rnd = random.Random(SEED)
    real = tmp_path / "real"
    durable = b""
    for rounds in range(6):
        path = plfs.mount / "f"
        with open(path, "a+b") as f, open(real, "a+b") as g:
            for _ in range(300):
                op = rnd.random()
                if op < 0.7:
                    off = rnd.randint(0, 400_000)
                    data = rnd.randbytes(rnd.choice([1, 100, 4096, 65536, 70_000, 200_000]))
                    os.pwrite(f.fileno(), data, off)
                    os.pwrite(g.fileno(), data, off)
                elif op < 0.85:
                    n = rnd.randint(0, 500_000)
                    os.ftruncate(f.fileno(), n)
                    os.ftruncate(g.fileno(), n)
                else:
                    off, n = rnd.randint(0, 500_000), rnd.randint(1, 200_000)
                    assert os.pread(f.fileno(), n, off) == os.pread(g.fileno(), n, off)
                assert os.fstat(f.fileno()).st_size == os.fstat(g.fileno()).st_size
            assert path.read_bytes() == real.read_bytes()
            if rounds % 2 == 0:
                os.fsync(f.fileno())
                durable = real.read_bytes()
        if rounds == 0:
            fsync_path(plfs.mount)
        plfs.power_cycle()
        assert (plfs.mount / "f").read_bytes() == durable, f"round {rounds}"
        real.write_bytes(durable)


def test_harness_throughput(plfs):
    """MB/s through the mount: 1 MiB writes + fsync, then reads."""
    data = os.urandom(1 << 20)
    n = 64
    t0 = time.monotonic()
    fd = os.open(plfs.mount / "big", os.O_WRONLY | os.O_CREAT, 0o644)
    for i in range(n):
        os.write(fd, data)
    t1 = time.monotonic()
    os.fsync(fd)
    t2 = time.monotonic()
    os.close(fd)
    fd = os.open(plfs.mount / "big", os.O_RDONLY)
    got = 0
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        got += len(b)
    os.close(fd)
    t3 = time.monotonic()
    assert got == n << 20
    # small writes (4 KiB, like SQLite pages)
    fd = os.open(plfs.mount / "small", os.O_WRONLY | os.O_CREAT, 0o644)
    small = os.urandom(4096)
    t4 = time.monotonic()
    for i in range(2048):
        os.write(fd, small)
    os.fsync(fd)
    t5 = time.monotonic()
    os.close(fd)
    st = plfs.stats()
    w, s, r, sw = n / (t1 - t0), n / (t2 - t1), n / (t3 - t2), 8 / (t5 - t4)
    print(f"\nplfs throughput: write {w:.0f} MB/s (1 MiB writes, {st['writes']} FUSE writes for "
          f"{st['bytes_written'] >> 20} MiB), fsync {s:.0f} MB/s, read {r:.0f} MB/s, 4 KiB writes {sw:.1f} MB/s")
    assert w > 5 and s > 5 and r > 5, "plfs is too slow for the crunchbox run"


# ---------------------------------------------------------------------------
# validation against writers known to be right and wrong


def run_writers(args_list: list[list[str]], seconds: float) -> list[str]:
    """Runs writers for `seconds`, kill -9s them; returns what they acked.
    stdout is drained while they run, so a full pipe never throttles them."""
    procs = [subprocess.Popen([sys.executable, str(WRITERS), *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for a in args_list]
    outs: list[list[bytes]] = [[] for _ in procs]

    def drain(p, out):
        for line in p.stdout:
            out.append(line)

    readers = [threading.Thread(target=drain, args=(p, o), daemon=True) for p, o in zip(procs, outs)]
    for t in readers:
        t.start()
    time.sleep(seconds)
    for p in procs:
        assert p.poll() is None, f"writer died: {p.stderr.read().decode()[-2000:]}"
        p.send_signal(signal.SIGKILL)
    for p, t in zip(procs, readers):
        p.wait()
        t.join(timeout=30)
    return [line.decode().split(" ", 1)[1].strip() for o in outs for line in o if line.startswith(b"ack ")]


def test_harness_sqlite_wal_full_loses_nothing(plfs):
    rnd = random.Random(SEED)
    db = plfs.mount / "db" / "t.sqlite"
    makedirs_durable(db.parent, plfs.mount)
    sys.path.insert(0, str(WRITERS.parent))
    import writers

    writers.sqlite_setup(str(db))
    fsync_path(db.parent)
    acked: set[str] = set()
    cuts = max(3, CUTS)
    rows = []
    for k in range(cuts):
        got = run_writers([["sqlite", str(db), f"c{k}p{p}", "2"] for p in range(3)], rnd.uniform(1.0, 3.0))
        acked.update(got)
        rec = plfs.power_cycle()
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        have = {}
        for ident, body, digest in con.execute("SELECT id, body, sha FROM t"):
            assert hashlib.sha256(body).hexdigest() == digest, f"row {ident}: wrong bytes"
            have[ident] = body
        con.close()
        lost = acked - set(have)
        rows.append((len(got), len(acked), len(have), len(lost), rec["dropped_bytes"]))
        print(f"\nsqlite cut {k + 1}: {len(got)} rows acked this round, {len(acked)} in all, {len(have)} in the db, "
              f"{len(lost)} lost; {rec['dropped_bytes']} unsynced bytes dropped, {rec['fsync']} fsyncs")
        assert not lost, f"{len(lost)} acknowledged rows lost, e.g. {sorted(lost)[:5]}"
    assert len(acked) > 100, "too few rows to tell"


@pytest.mark.parametrize("mode", ["append", "sfr"])
def test_harness_unsynced_writer_shows_loss(plfs, mode):
    """A writer that acknowledges before any fsync (or after sync_file_range,
    like sled 0.34's log) must lose acknowledged records at a cut."""
    path = plfs.mount / "log"
    write_file(path, b"", sync=True)
    fsync_path(plfs.mount)
    acked = []
    for k in range(2):
        acked += run_writers([[mode, str(path), f"c{k}"]], 1.0)
        rec = plfs.power_cycle()
        have = {line.split(" ", 1)[0] for line in path.read_text().splitlines()}
        lost = set(acked) - have
        print(f"\n{mode} cut {k + 1}: {len(acked)} acked, {len(have)} survived, {len(lost)} lost; "
              f"{rec['dropped_bytes']} bytes dropped")
        assert lost, "a writer that never fsyncs lost nothing: the harness drops nothing"
        assert len(lost) == len(acked), "nothing unsynced should survive a cut"


# ---------------------------------------------------------------------------
# crunchbox on plfs: kill -9 + power cut under mixed load, POWERLOSS_CUTS times

TOKEN = "dev-token"
BUCKET = "powerloss"
QUEUE = "powerloss"
# 64 KiB is the store's inline/blob boundary: both sides of it, up to ~1.1 MB.
SIZES = [0, 1, 100, 4096, 65_536, 65_537, 200_000, 600_000, 1_100_000]
PART = 5 * 1024 * 1024
FAST = BotoConfig(connect_timeout=2, read_timeout=30, retries={"max_attempts": 1, "mode": "standard"},
                  s3={"addressing_style": "path"})
DRAIN = 12.0  # after a restart, messages are received until none new arrives for this long
KINDS = ("objects", "multipart", "buckets", "queues", "messages", "uploads", "events")
EV_BUCKET = "powerloss-events"  # its ObjectCreated events go to EV_QUEUE
EV_QUEUE = "powerloss-events"


def aws(kind: str, srv):
    return boto3.client(kind, endpoint_url=srv.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION, config=FAST)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PLServer(Server):
    """conftest.Server with its log outside the mount and a start that
    notices a server that dies at start instead of waiting out the port."""

    def start(self, timeout: float = 60.0) -> "PLServer":
        log = open(self.log_path, "ab")
        log.write(f"\n==== start {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--roles", self.roles, "--data-dir", str(self.data_dir)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self.log_offset = log.tell()
        deadline = time.monotonic() + timeout
        for port in (self.aws_port, self.web_port):
            while True:
                if self.proc.poll() is not None:
                    raise StartFailed(self.proc.returncode, self.log()[self.log_offset:])
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise StartFailed(None, self.log()[self.log_offset:])
                    time.sleep(0.05)
        return self


class StartFailed(Exception):
    def __init__(self, code, log):
        at = log.find("panicked at")
        head = log[at: at + 600].split("stack backtrace")[0] if at >= 0 else ""
        super().__init__(f"server did not start after the power cut (exit {code}): {head}\n...\n{log[-1500:]}")


class Versions:
    """One thing's states in order (None = absent); `acked` indexes the last
    one acknowledged; later ones were in flight at the kill: allowed."""

    def __init__(self, first=None):
        self.versions = [first]
        self.acked = 0

    def valid(self):
        return self.versions[self.acked:]


class Gate:
    """Lets load calls through while open; close() waits until none is in flight."""

    def __init__(self, stop: threading.Event):
        self.cv = threading.Condition()
        self.is_open, self.active, self.stop = True, 0, stop

    def __enter__(self):
        with self.cv:
            while not self.is_open and not self.stop.is_set():
                self.cv.wait(0.1)
            self.active += 1

    def __exit__(self, *exc):
        with self.cv:
            self.active -= 1
            self.cv.notify_all()

    def close(self) -> None:
        with self.cv:
            self.is_open = False
            assert self.cv.wait_for(lambda: self.active == 0, timeout=90), "a load call hung"

    def open(self) -> None:
        with self.cv:
            self.is_open = True
            self.cv.notify_all()


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.objects: dict[str, Versions] = {}
        self.buckets: dict[str, Versions] = {}
        self.queues: dict[str, Versions] = {}
        self.mp: dict[str, dict] = {}
        self.bodies: set[str] = set()  # every body a send attempted
        self.sent: set[str] = set()  # acknowledged sends
        self.deleted: dict[str, float] = {}  # body -> when its delete was acknowledged
        self.deleting: set[str] = set()  # bodies a delete was attempted for (gone is fine)
        self.received: set[str] = set()
        self.uploads: list[str] = []
        self.ev_acked: set[str] = set()  # keys of EV_BUCKET whose PUT was acknowledged
        self.ev_seen: set[str] = set()  # keys an ObjectCreated record arrived for
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.counts = {k: 0 for k in ("put", "overwrite", "delete", "mp_create", "mp_part", "mp_complete", "mp_abort",
                                      "bucket_create", "bucket_delete", "queue_create", "queue_delete", "send",
                                      "send_batch", "recv", "msg_delete", "change_visibility", "upload",
                                      "event_put")}

    def attempt(self, table: dict, name: str, state) -> int:
        with self.lock:
            v = table.setdefault(name, Versions())
            v.versions.append(state)
            return len(v.versions) - 1

    def ack(self, table: dict, name: str, idx: int, count: str, n: int = 1) -> None:
        with self.lock:
            v = table[name]
            v.acked = max(v.acked, idx)
            self.counts[count] += n

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n


def call(gate: Gate, ledger: Ledger, fn, *args, **kw):
    """One load call; None (counted as an error) if it failed."""
    with gate:
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001
            kind = getattr(e, "response", {}).get("Error", {}).get("Code") or type(e).__name__
            with ledger.lock:
                ledger.errors += 1
                ledger.error_kinds[kind] = ledger.error_kinds.get(kind, 0) + 1
    time.sleep(0.05)
    return None


def s3_load(srv, ledger, stop, gate, n):
    rnd = random.Random(SEED * 100 + n)
    s3 = aws("s3", srv)
    mine: list[str] = []
    while not stop.is_set():
        roll = rnd.random()
        if roll < 0.1 and mine:
            key = rnd.choice(mine)
            idx = ledger.attempt(ledger.objects, key, None)
            if call(gate, ledger, s3.delete_object, Bucket=BUCKET, Key=key) is not None:
                ledger.ack(ledger.objects, key, idx, "delete")
            continue
        overwrite = roll < 0.3 and bool(mine)
        key = rnd.choice(mine) if overwrite else f"obj/{n}-{len(mine)}"
        if not overwrite:
            mine.append(key)
        data = rnd.randbytes(rnd.choice(SIZES))
        idx = ledger.attempt(ledger.objects, key, (sha(data), len(data)))
        if call(gate, ledger, s3.put_object, Bucket=BUCKET, Key=key, Body=data) is not None:
            ledger.ack(ledger.objects, key, idx, "overwrite" if overwrite else "put")


def multipart_load(srv, ledger, stop, gate):
    rnd = random.Random(SEED + 3)
    s3 = aws("s3", srv)
    i = 0
    while not stop.is_set():
        i += 1
        key = f"mp/{i}"
        out = call(gate, ledger, s3.create_multipart_upload, Bucket=BUCKET, Key=key)
        if out is None:
            continue
        uid = out["UploadId"]
        rec = {"key": key, "parts": {}, "end": None}
        with ledger.lock:
            ledger.mp[uid] = rec
            ledger.counts["mp_create"] += 1
        parts = [rnd.randbytes(PART), rnd.randbytes(rnd.randint(1, 300_000))]
        for pn, data in enumerate(parts, 1):
            got = call(gate, ledger, s3.upload_part, Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=pn, Body=data)
            if got is None:
                break
            with ledger.lock:
                rec["parts"][pn] = (got["ETag"], len(data))
                ledger.counts["mp_part"] += 1
        else:
            roll = rnd.random()
            if roll < 0.25:
                continue  # left open: must survive every cut
            if roll < 0.4:
                rec["end"] = "aborting"
                if call(gate, ledger, s3.abort_multipart_upload, Bucket=BUCKET, Key=key, UploadId=uid) is not None:
                    rec["end"] = "aborted"
                    ledger.count("mp_abort")
                continue
            whole = b"".join(parts)
            idx = ledger.attempt(ledger.objects, key, (sha(whole), len(whole)))
            rec["end"] = "completing"
            done = [{"PartNumber": pn, "ETag": rec["parts"][pn][0]} for pn in (1, 2)]
            if call(gate, ledger, s3.complete_multipart_upload, Bucket=BUCKET, Key=key, UploadId=uid,
                    MultipartUpload={"Parts": done}) is not None:
                rec["end"] = "completed"
                ledger.ack(ledger.objects, key, idx, "mp_complete")


def admin_load(srv, ledger, stop, gate):
    """Creates buckets and queues, and deletes some of them again."""
    rnd = random.Random(SEED + 5)
    s3, sqs = aws("s3", srv), aws("sqs", srv)
    i = 0
    live_b: list[str] = []
    live_q: list[str] = []
    while not stop.is_set():
        i += 1
        roll = rnd.random()
        if roll < 0.3:
            name = f"b-{SEED % 10000}-{i}"
            idx = ledger.attempt(ledger.buckets, name, "exists")
            if call(gate, ledger, s3.create_bucket, Bucket=name) is not None:
                ledger.ack(ledger.buckets, name, idx, "bucket_create")
                live_b.append(name)
        elif roll < 0.45 and live_b:
            name = live_b.pop(rnd.randrange(len(live_b)))
            idx = ledger.attempt(ledger.buckets, name, None)
            if call(gate, ledger, s3.delete_bucket, Bucket=name) is not None:
                ledger.ack(ledger.buckets, name, idx, "bucket_delete")
        elif roll < 0.75:
            name = f"q-{SEED % 10000}-{i}"
            idx = ledger.attempt(ledger.queues, name, "exists")
            if call(gate, ledger, sqs.create_queue, QueueName=name) is not None:
                ledger.ack(ledger.queues, name, idx, "queue_create")
                live_q.append(name)
        elif live_q:
            name = live_q.pop(rnd.randrange(len(live_q)))
            out = call(gate, ledger, sqs.get_queue_url, QueueName=name)
            if out is None:
                continue
            idx = ledger.attempt(ledger.queues, name, None)
            if call(gate, ledger, sqs.delete_queue, QueueUrl=out["QueueUrl"]) is not None:
                ledger.ack(ledger.queues, name, idx, "queue_delete")
        time.sleep(0.05)


def sqs_send(srv, ledger, stop, gate, url, batch):
    sqs = aws("sqs", srv)
    while not stop.is_set():
        bodies = [uuid.uuid4().hex + "x" * random.randint(0, 2000) for _ in range(10 if batch else 1)]
        with ledger.lock:
            ledger.bodies.update(bodies)
        if batch:
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
            out = call(gate, ledger, sqs.send_message_batch, QueueUrl=url, Entries=entries)
            acked = [bodies[int(s["Id"])] for s in out.get("Successful", [])] if out else []
        else:
            acked = bodies if call(gate, ledger, sqs.send_message, QueueUrl=url, MessageBody=bodies[0]) else []
        with ledger.lock:
            ledger.sent.update(acked)
            ledger.counts["send_batch" if batch else "send"] += len(acked)


def receive_once(sqs, ledger, url, wait, gate=None, rnd=random):
    """One receive; then deletes (single or batched), or changes visibility."""
    started = time.monotonic()
    out = call(gate or Gate(threading.Event()), ledger, sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=10,
               WaitTimeSeconds=wait)
    msgs = (out or {}).get("Messages", [])
    resurrected, alien = [], []
    with ledger.lock:
        for m in msgs:
            body = m["Body"]
            at = ledger.deleted.get(body)
            if at is not None and at < started:
                resurrected.append(body)
            if body not in ledger.bodies:
                alien.append(body)
            ledger.received.add(body)
            ledger.counts["recv"] += 1
    if not msgs:
        return resurrected, alien, []
    g = gate or Gate(threading.Event())
    with ledger.lock:
        change = gate is not None and rnd.random() < 0.2
        if not change:
            ledger.deleting.update(m["Body"] for m in msgs)
    if change:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": rnd.choice([0, 1, 3])}
                   for i, m in enumerate(msgs)]
        if call(g, ledger, sqs.change_message_visibility_batch, QueueUrl=url, Entries=entries) is not None:
            ledger.count("change_visibility", len(entries))
        return resurrected, alien, [m["Body"] for m in msgs]
    if rnd.random() < 0.5:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        res = call(g, ledger, sqs.delete_message_batch, QueueUrl=url, Entries=entries)
        done = [msgs[int(s["Id"])]["Body"] for s in res.get("Successful", [])] if res else []
    else:
        done = [m["Body"] for m in msgs if call(g, ledger, sqs.delete_message, QueueUrl=url,
                                                ReceiptHandle=m["ReceiptHandle"]) is not None]
    now = time.monotonic()
    with ledger.lock:
        for body in done:
            ledger.deleted.setdefault(body, now)
        ledger.counts["msg_delete"] += len(done)
    return resurrected, alien, [m["Body"] for m in msgs]


def sqs_receive(srv, ledger, stop, gate, url, found):
    sqs = aws("sqs", srv)
    rnd = random.Random(SEED + 9)
    while not stop.is_set():
        res, alien, _ = receive_once(sqs, ledger, url, 1, gate, rnd)
        with ledger.lock:
            found["resurrected"] += len(res)
            found["alien"] += len(alien)


def event_load(srv, ledger, stop, gate):
    """PUTs to the bucket with notifications: each acknowledged PUT's event
    must arrive, whatever cut comes (it is in the same commit as the PUT)."""
    rnd = random.Random(SEED + 7)
    s3 = aws("s3", srv)
    i = 0
    while not stop.is_set():
        i += 1
        key = f"ev/{i} {rnd.randrange(1 << 30):x}"  # a space: keys arrive URL-encoded
        if call(gate, ledger, s3.put_object, Bucket=EV_BUCKET, Key=key, Body=rnd.randbytes(64)) is not None:
            with ledger.lock:
                ledger.ev_acked.add(key)
            ledger.count("event_put")


def drain_events(sqs, ledger, url) -> int:
    """Receives (and deletes) event records until every acknowledged PUT's
    has arrived, or nothing new came for DRAIN s; returns how many are missing."""
    from urllib.parse import unquote_plus

    last = time.monotonic()
    while time.monotonic() - last < DRAIN:
        with ledger.lock:
            if ledger.ev_acked <= ledger.ev_seen:
                break
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in got:
            body = json.loads(m["Body"])
            for r in body.get("Records", []):
                if r["eventName"].startswith("ObjectCreated:"):
                    with ledger.lock:
                        ledger.ev_seen.add(unquote_plus(r["s3"]["object"]["key"]))
                    last = time.monotonic()
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    with ledger.lock:
        return len(ledger.ev_acked - ledger.ev_seen)


def web_load(srv, ledger, stop, gate, images):
    rnd = random.Random(SEED + 7)
    while not stop.is_set():
        mime, data = rnd.choice(images)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": mime}
        with gate:
            try:
                status, _, body = srv.http("POST", "/v1/avatar/upload", data, headers)
            except Exception:  # noqa: BLE001
                status, body = 0, b""
        if status == 201:
            with ledger.lock:
                ledger.uploads.append(json.loads(body)["id"])
                ledger.counts["upload"] += 1
        time.sleep(0.3)


def tree(root: Path) -> dict[str, int]:
    """path -> size of every file below root; directories as path/ -> -1."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = -1
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                out[os.path.relpath(p, root)] = os.path.getsize(p)
            except OSError:
                pass
    return out


def tree_diff(before: dict[str, int], after: dict[str, int]) -> str:
    """What the cut took from the data dir, for the log."""
    def files(t):
        return {p: n for p, n in t.items() if n >= 0}

    fb, fa = files(before), files(after)
    gone_dirs = sorted(p for p in before if before[p] < 0 and p not in after)
    # only the topmost gone dirs
    top = [d for d in gone_dirs if not any(d != e and d.startswith(e) for e in gone_dirs)]
    gone = sorted(set(fb) - set(fa))
    shrunk = sorted(p for p in fb if p in fa and fa[p] < fb[p])
    by: dict[str, int] = {}
    for p in gone:
        parts = p.split(os.sep)
        k = "s3/blobs/*" if parts[:2] == ["s3", "blobs"] else (os.sep.join(parts[:-1]) or ".")
        by[k] = by.get(k, 0) + 1
    lines = [f"files before the cut {len(fb)} ({sum(fb.values())} B), after {len(fa)} ({sum(fa.values())} B)"]
    if top:
        lines.append(f"  directories gone (never made durable in their parent): {', '.join(top[:10])}")
    if gone:
        lines.append(f"  files gone: {len(gone)}: " + ", ".join(f"{k}: {v}" for k, v in sorted(by.items())[:12]))
    if shrunk:
        lines.append("  files shrunk: " + ", ".join(f"{p} {fb[p]} -> {fa[p]} B" for p in shrunk[:8]))
    return "\n".join(lines)


class Check:
    """After a restart: everything acknowledged, counted per kind."""

    def __init__(self, srv, ledger, url_holder):
        self.srv, self.ledger = srv, ledger
        self.url_holder = url_holder
        self.verified: dict[str, tuple] = {}

    def run(self) -> tuple[dict, dict, list[str]]:
        lost = {k: 0 for k in KINDS}
        checked = {k: 0 for k in KINDS}
        notes: list[str] = []
        s3, sqs = aws("s3", self.srv), aws("sqs", self.srv)
        led = self.ledger
        # buckets
        with led.lock:
            buckets = {n: v.valid() for n, v in led.buckets.items()}
            buckets[BUCKET] = ["exists"]
            queues = {n: v.valid() for n, v in led.queues.items()}
            queues[QUEUE] = ["exists"]
        for name, valid in buckets.items():
            try:
                s3.head_bucket(Bucket=name)
                exists = True
            except Exception as e:  # noqa: BLE001
                code = getattr(e, "response", {}).get("Error", {}).get("Code")
                if code not in ("404", "NoSuchBucket"):
                    raise
                exists = False
            checked["buckets"] += 1
            if exists and "exists" not in valid:
                notes.append(f"bucket {name} is back after an acknowledged delete")
                lost["buckets"] += 1
            if not exists and None not in valid:
                notes.append(f"acknowledged bucket {name} lost")
                lost["buckets"] += 1
        for name, valid in queues.items():
            try:
                sqs.get_queue_url(QueueName=name)
                exists = True
            except Exception as e:  # noqa: BLE001
                code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
                if "NonExistentQueue" not in code and "QueueDoesNotExist" not in code:
                    raise
                exists = False
            checked["queues"] += 1
            if exists and "exists" not in valid:
                notes.append(f"queue {name} is back after an acknowledged delete")
                lost["queues"] += 1
            if not exists and None not in valid:
                notes.append(f"acknowledged queue {name} lost")
                lost["queues"] += 1
        # objects
        listed = {}
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
                for o in page.get("Contents", []):
                    listed[o["Key"]] = (o["ETag"], o["Size"], o["LastModified"])
        except Exception as e:  # noqa: BLE001
            notes.append(f"cannot list {BUCKET}: {e}")
        with led.lock:
            valid = {k: v.valid() for k, v in led.objects.items()}
        for key in sorted(set(listed) - set(valid)):
            notes.append(f"listed key nobody wrote: {key}")
            lost["objects"] += 1
        for key, vs in valid.items():
            if all(v is None for v in vs) and key not in listed:
                continue
            checked["objects"] += 1
            if key not in listed:
                if None not in vs:
                    lost["objects"] += 1
                    if lost["objects"] <= 5:
                        notes.append(f"acknowledged object {key} lost")
                continue
            entry = listed[key]
            if self.verified.get(key) == entry:
                continue
            try:
                body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            except Exception as e:  # noqa: BLE001
                lost["objects"] += 1
                notes.append(f"object {key} listed but unreadable: {e}")
                continue
            if sha(body) not in {v[0] for v in vs if v is not None}:
                lost["objects"] += 1
                notes.append(f"object {key}: partial or wrong bytes ({len(body)} B)")
                continue
            self.verified[key] = entry
        # multipart
        open_ids = set()
        try:
            for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET):
                open_ids.update(u["UploadId"] for u in page.get("Uploads", []))
        except Exception as e:  # noqa: BLE001
            notes.append(f"cannot list multipart uploads: {e}")
        with led.lock:
            mp = {uid: (r["key"], dict(r["parts"]), r["end"]) for uid, r in led.mp.items()}
        for uid, (key, parts, end) in mp.items():
            is_open = uid in open_ids
            if end in ("completed", "aborted"):
                if is_open:
                    lost["multipart"] += 1
                    notes.append(f"multipart {key} open again after an acknowledged {end}")
                continue
            checked["multipart"] += 1
            if end is None and not is_open:
                lost["multipart"] += 1
                notes.append(f"acknowledged multipart upload {key} lost")
                continue
            if is_open:
                have = {p["PartNumber"]: (p["ETag"], p["Size"])
                        for p in s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid).get("Parts", [])}
                for pn, part in parts.items():
                    if have.get(pn) != part:
                        lost["multipart"] += 1
                        notes.append(f"multipart {key} part {pn}: acked {part}, listed {have.get(pn)}")
        # avatar uploads
        with led.lock:
            ids = list(led.uploads)
        for ident in ids:
            checked["uploads"] += 1
            status, _, body = self.srv.http("GET", f"/v1/avatar/{ident}")
            if status != 200:
                lost["uploads"] += 1
                if lost["uploads"] <= 3:
                    notes.append(f"upload {ident} answered 201, now {status} {body[:100]!r}")
        # messages: every acknowledged, undeleted one arrives (then is deleted)
        url = self.url_holder.get("url")
        resurrected = alien = 0
        with led.lock:
            expect = led.sent - set(led.deleted) - led.deleting
        checked["messages"] = len(expect)
        if url:
            # until all arrived, or nothing new for DRAIN s (> any visibility timeout used)
            seen: set[str] = set()
            last = time.monotonic()
            while time.monotonic() - last < DRAIN and not expect <= seen:
                r, a, bodies = receive_once(sqs, led, url, 1)
                resurrected += len(r)
                alien += len(a)
                if set(bodies) & (expect - seen):
                    last = time.monotonic()
                seen.update(bodies)
            missing = expect - seen
            lost["messages"] = len(missing)
            if missing:
                notes.append(f"{len(missing)} acknowledged messages never received (of {len(expect)})")
        if resurrected:
            lost["messages"] += resurrected
            notes.append(f"{resurrected} messages back after an acknowledged delete")
        if alien:
            notes.append(f"{alien} messages nobody sent")
            lost["messages"] += alien
        # event notifications: every acknowledged PUT's record arrives
        ev_url = self.url_holder.get("events")
        if ev_url:
            with led.lock:
                checked["events"] = len(led.ev_acked)
            lost["events"] = drain_events(sqs, led, ev_url)
            if lost["events"]:
                notes.append(f"{lost['events']} acknowledged PUTs' events never arrived")
        return lost, checked, notes


def test_crunchbox_acknowledged_survives_power_cuts(tmp_path, corpus):
    assert BINARY.exists(), f"release binary missing at {BINARY}"
    why = available()
    assert why is None, f"plfs cannot run here: {why}"
    print(f"\npowerloss seed {SEED}, {CUTS} cuts{' (CRASH ONLY: nothing dropped)' if CRASH_ONLY else ''}"
          f"{' (SYNC_DIRS: directories fsynced by the test before each cut)' if SYNC_DIRS else ''}")
    rnd = random.Random(SEED)
    plm = PowerLossMount(tmp_path / "backing", tmp_path / "mnt", log=tmp_path / "plfs.log").start()
    data = plm.mount / "data"
    makedirs_durable(data, plm.mount)  # the operator's data dir exists, durably
    srv = PLServer(data, env={"CRUNCHBOX_QUEUE_VISIBILITY_TIMEOUT": "15"})
    srv.log_path = tmp_path / "server.log"
    images = []
    for p in sorted(corpus.iterdir()):
        mime = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}.get(p.suffix.lower())
        if mime and p.stat().st_size < 400_000:
            images.append((mime, p.read_bytes()))
    assert images, "no small corpus images"

    ledger = Ledger()
    stop = threading.Event()
    gate = Gate(stop)
    found = {"resurrected": 0, "alien": 0}
    url_holder: dict = {}
    threads: list[threading.Thread] = []
    totals = {k: 0 for k in KINDS}
    began = time.monotonic()
    try:
        srv.start()
        s3, sqs = aws("s3", srv), aws("sqs", srv)
        s3.create_bucket(Bucket=BUCKET)
        url_holder["url"] = sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        url = url_holder["url"]
        s3.create_bucket(Bucket=EV_BUCKET)
        ev_url = sqs.create_queue(QueueName=EV_QUEUE)["QueueUrl"]
        ev_arn = sqs.get_queue_attributes(QueueUrl=ev_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket=EV_BUCKET, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": ev_arn, "Events": ["s3:ObjectCreated:*"]}]})
        url_holder["events"] = ev_url
        loads = [(s3_load, (n,)) for n in range(3)] + [(multipart_load, ()), (admin_load, ()), (event_load, ())]
        loads += [(sqs_send, (url, False)), (sqs_send, (url, True)), (sqs_receive, (url, found)),
                  (web_load, (images,))]
        threads = [threading.Thread(target=f, args=(srv, ledger, stop, gate, *a), daemon=True) for f, a in loads]
        for t in threads:
            t.start()
        check = Check(srv, ledger, url_holder)
        prev = dict(ledger.counts)
        for k in range(CUTS):
            time.sleep(rnd.uniform(2.0, 6.0))
            srv.kill9()
            gate.close()
            before = tree(data)
            if SYNC_DIRS:
                for dirpath, _, _ in os.walk(data):
                    fsync_path(Path(dirpath))
                fsync_path(data)
            rec = plm.power_cycle(crash_only=CRASH_ONLY)
            after = tree(data)
            with ledger.lock:
                now = dict(ledger.counts)
            acked = {c: now[c] - prev[c] for c in now if now[c] != prev[c]}
            prev = now
            print(f"cut {k + 1}: acked this round {acked}; plfs dropped {rec['dropped_bytes']} unsynced B "
                  f"(writes {rec['written']} B, synced {rec['synced']} B, {rec['fsync']} fsync, "
                  f"{rec['fsyncdir']} dir fsync so far)\n  data dir: " + tree_diff(before, after).replace("\n", "\n  "))
            t0 = time.monotonic()
            try:
                srv.start()
            except StartFailed as e:
                print(f"cut {k + 1}: SERVER DID NOT START:\n{e}")
                raise
            lost, checked, notes = check.run()
            with ledger.lock:
                lost["messages"] += found["resurrected"] + found["alien"]
                found["resurrected"] = found["alien"] = 0
            for kind in KINDS:
                totals[kind] += lost[kind]
            print(f"  restart and checks {time.monotonic() - t0:.1f} s; checked {checked}; lost {lost}")
            for n in notes[:15]:
                print(f"    {n}")
            assert "panicked" not in srv.log()[srv.log_offset:], srv.log()[-3000:]
            assert not any(lost.values()), f"cut {k + 1}: acknowledged state lost: {lost}; {notes[:10]}"
            gate.open()
    finally:
        stop.set()
        gate.open()
        srv.kill9()
        for t in threads:
            t.join(timeout=60)
        c = ledger.counts
        print(f"powerloss: {len(plm.cuts)} cuts in {time.monotonic() - began:.0f} s (seed {SEED}); "
              f"{ledger.errors} failed calls {ledger.error_kinds}; lost in total {totals}\n"
              f"  acked: {c['put']} puts, {c['overwrite']} overwrites, {c['delete']} deletes, "
              f"{c['mp_complete']} multipart completed ({c['mp_part']} parts, {c['mp_abort']} aborted), "
              f"{c['bucket_create']}/{c['bucket_delete']} buckets created/deleted, "
              f"{c['queue_create']}/{c['queue_delete']} queues created/deleted, "
              f"{c['send'] + c['send_batch']} messages sent ({c['msg_delete']} deleted, "
              f"{c['change_visibility']} visibility changes), {c['upload']} avatar uploads, "
              f"{c['event_put']} PUTs with event notifications ({len(ledger.ev_seen)} of their events seen)")
        plm.__exit__(None, None, None)
