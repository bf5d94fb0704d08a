"""Chaos (issue 7): kill -9 the release binary at random moments during mixed
load, at least 20 times, and check after every restart that nothing
acknowledged was lost and nothing partial is visible:

- S3 objects (puts, overwrites, deletes): every key reads as the state its
  last acknowledged write left, or as a later write that was in flight at the
  kill; never a prefix, never bytes nobody sent, never a key nobody wrote;
- S3 multipart: an acknowledged CreateMultipartUpload stays listed with
  every acknowledged part (same ETag and size) until an acknowledged
  Complete/Abort; a completed upload is a whole object;
- SQS: every acknowledged send (single and batch) is received eventually,
  with exactly the body sent; a message whose delete was acknowledged never
  comes back;
- avatar uploads: every one answered 201 stays known after each restart and
  ends `ready` with all three variants served;
- liveness: while the server is up, S3 writes keep being acknowledged (a
  write path that hangs while reads still answer fails the test).

Then a full drain (objects, multipart uploads, every queue) and a clean
restart: no blob file and no temp file may remain; the data dir's bytes at
start, at peak (sampled at every kill) and after the drain are printed (sled
files do not shrink: reported, not asserted).

Load pauses (in-flight calls finish, none start) while the checks run, so a
check never races a write. CHAOS_KILLS (default 20) and CHAOS_SEED set the
number of kills and the seed; the seed is printed so a failure can be
replayed.
"""

import hashlib
import io
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig
from PIL import Image

from conftest import ACCESS_KEY, REGION, SECRET_KEY

KILLS = int(os.environ.get("CHAOS_KILLS", "20"))
SEED = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
TOKEN = "dev-token"
BUCKET = "chaos"
QUEUE = "chaos"
PIPELINE_BUCKETS = ("crunchbox-uploads", "crunchbox-public")
CRUNCH_QUEUES = ("crunchbox-crunch", "crunchbox-crunch-dlq")
# 64 KiB is the inline/blob boundary of the store: both sides of it.
SIZES = [0, 1, 100, 4096, 65_536, 65_537, 70_000, 300_000, 1_500_000]
PART = 5 * 1024 * 1024
# A crunch message in flight at a kill comes back after this (default 60 s).
CRUNCH_VISIBILITY = "15"
# Deadlines only bound a hang; nothing asserts speed.
DEADLINE = 180.0
# No S3 write acknowledged by any of the writer threads for this long while
# the server is up is a hang, not slowness (sled's flush_async once
# deadlocked every PUT under concurrent writes; reads still answered).
STALL = 4.0
# One attempt, short timeouts: an acknowledgement is a single, unambiguous
# answer, and load threads do not hang on a dead server.
FAST = BotoConfig(
    connect_timeout=2,
    read_timeout=30,
    retries={"max_attempts": 1, "mode": "standard"},
    s3={"addressing_style": "path"},
)


def client(kind: str, srv):
    return boto3.client(
        kind,
        endpoint_url=srv.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=FAST,
    )


def disk(data_dir: Path) -> dict[str, int]:
    """Bytes of the files under the data dir, by part (directories excluded)."""
    out = {"total": 0, "blob_files": 0, "blobs": 0, "tmp_files": 0, "s3_sled": 0, "queue_sled": 0}
    for root, _, files in os.walk(data_dir):
        rel = Path(root).relative_to(data_dir).parts
        for f in files:
            try:
                size = os.path.getsize(os.path.join(root, f))
            except OSError:
                continue
            out["total"] += size
            if rel[:2] == ("s3", "blobs"):
                out["blob_files"] += 1
                out["blobs"] += size
            elif rel[:2] == ("s3", "tmp"):
                out["tmp_files"] += 1
            elif rel[:2] == ("s3", "meta"):
                out["s3_sled"] += size
            elif rel[:1] == ("queue",):
                out["queue_sled"] += size
    return out


def small_jpeg(seed: int) -> bytes:
    rnd = random.Random(seed)
    img = Image.new("RGB", (rnd.randint(40, 300), rnd.randint(40, 300)), tuple(rnd.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Gate:
    """Lets load calls through while open; close() waits until none is in flight."""

    def __init__(self, stop: threading.Event):
        self.cv = threading.Condition()
        self.is_open = True
        self.active = 0
        self.stop = stop

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
            assert self.cv.wait_for(lambda: self.active == 0, timeout=60), "a load call hung for 60 s"

    def open(self) -> None:
        with self.cv:
            self.is_open = True
            self.cv.notify_all()


class Key:
    """One key's writes in order: (sha256, size) or None for a delete. The
    first entry is the initial absence; `acked` indexes the last write the
    server acknowledged. Later entries were in flight at a kill: allowed."""

    def __init__(self):
        self.versions: list[tuple[str, int] | None] = [None]
        self.acked = 0

    def valid(self) -> list[tuple[str, int] | None]:
        return self.versions[self.acked :]


class Ledger:
    """What the load threads attempted and what the server acknowledged."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys: dict[str, Key] = {}
        self.mp: dict[str, dict] = {}  # upload id -> {"key", "parts": {n: (etag, size)}, "end": None|"completing"|...}
        self.bodies: set[str] = set()  # every body a send attempted
        self.sent: set[str] = set()
        self.received: set[str] = set()
        self.deleted: dict[str, float] = {}  # body -> when its delete was acked
        self.resurrected: list[str] = []
        self.alien: list[str] = []
        self.uploads: list[str] = []
        self.errors = 0
        self.last_write = 0.0  # when an S3 write was last acknowledged
        self.counts = {"put": 0, "overwrite": 0, "delete": 0, "mp_part": 0, "mp_done": 0, "send": 0, "recv": 0,
                       "upload": 0}

    def attempt(self, key: str, version) -> int:
        with self.lock:
            k = self.keys.setdefault(key, Key())
            k.versions.append(version)
            return len(k.versions) - 1

    def ack(self, key: str, index: int, count: str) -> None:
        with self.lock:
            k = self.keys[key]
            k.acked = max(k.acked, index)
            self.counts[count] += 1
            self.last_write = time.monotonic()

    def failed(self) -> None:
        with self.lock:
            self.errors += 1


def call(gate: Gate, ledger: Ledger, fn, *args, **kw):
    """One load call through the gate; None (counted) if it failed."""
    with gate:
        try:
            return fn(*args, **kw)
        except Exception:
            ledger.failed()
    time.sleep(0.05)
    return None


def s3_load(srv, ledger: Ledger, stop, gate: Gate, n: int):
    """Puts new keys, overwrites and deletes this thread's own keys."""
    rnd = random.Random(SEED * 100 + n)
    s3 = client("s3", srv)
    mine: list[str] = []
    while not stop.is_set():
        roll = rnd.random()
        if roll < 0.1 and mine:
            key = rnd.choice(mine)
            idx = ledger.attempt(key, None)
            if call(gate, ledger, s3.delete_object, Bucket=BUCKET, Key=key) is not None:
                ledger.ack(key, idx, "delete")
            continue
        overwrite = roll < 0.35 and bool(mine)
        key = rnd.choice(mine) if overwrite else f"obj/{n}-{len(mine)}"
        if not overwrite:
            mine.append(key)
        data = rnd.randbytes(rnd.choice(SIZES))
        idx = ledger.attempt(key, (sha(data), len(data)))
        if call(gate, ledger, s3.put_object, Bucket=BUCKET, Key=key, Body=data) is not None:
            ledger.ack(key, idx, "overwrite" if overwrite else "put")


def multipart_load(srv, ledger: Ledger, stop, gate: Gate):
    """Create, two parts, then complete (most), abort, or leave it open."""
    rnd = random.Random(SEED + 3)
    s3 = client("s3", srv)
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
        parts = [rnd.randbytes(PART), rnd.randbytes(rnd.randint(1, 200_000))]
        for n, data in enumerate(parts, 1):
            got = call(gate, ledger, s3.upload_part, Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n, Body=data)
            if got is None:
                break
            with ledger.lock:
                rec["parts"][n] = (got["ETag"], len(data))
                ledger.counts["mp_part"] += 1
                ledger.last_write = time.monotonic()
        else:
            roll = rnd.random()
            if roll < 0.15:
                continue  # left open: must survive every kill
            if roll < 0.3:
                rec["end"] = "aborting"
                if call(gate, ledger, s3.abort_multipart_upload, Bucket=BUCKET, Key=key, UploadId=uid) is not None:
                    rec["end"] = "aborted"
                continue
            whole = b"".join(parts)
            idx = ledger.attempt(key, (sha(whole), len(whole)))
            rec["end"] = "completing"
            done = [{"PartNumber": n, "ETag": rec["parts"][n][0]} for n in (1, 2)]
            ok = call(
                gate, ledger, s3.complete_multipart_upload,
                Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": done},
            )
            if ok is not None:
                rec["end"] = "completed"
                ledger.ack(key, idx, "mp_done")


def sqs_send(srv, ledger: Ledger, stop, gate: Gate, url: str, batch: bool):
    sqs = client("sqs", srv)
    while not stop.is_set():
        bodies = [uuid.uuid4().hex for _ in range(10 if batch else 1)]
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
            ledger.counts["send"] += len(acked)


def receive_once(sqs, ledger: Ledger, url: str, wait: int, gate: Gate | None = None) -> None:
    """One receive, then deletes (alternately one by one and batched)."""
    started = time.monotonic()
    if gate is None:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
    else:
        out = call(gate, ledger, sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
    msgs = (out or {}).get("Messages", [])
    with ledger.lock:
        for m in msgs:
            body = m["Body"]
            deleted_at = ledger.deleted.get(body)
            if deleted_at is not None and deleted_at < started:
                ledger.resurrected.append(body)
            if body not in ledger.bodies:
                ledger.alien.append(body)
            ledger.received.add(body)
            ledger.counts["recv"] += 1
    if not msgs:
        return
    gate = gate or Gate(threading.Event())
    if random.random() < 0.5:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        res = call(gate, ledger, sqs.delete_message_batch, QueueUrl=url, Entries=entries)
        done = [msgs[int(s["Id"])]["Body"] for s in res.get("Successful", [])] if res else []
    else:
        done = [m["Body"] for m in msgs
                if call(gate, ledger, sqs.delete_message, QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])]
    now = time.monotonic()
    with ledger.lock:
        for body in done:
            ledger.deleted.setdefault(body, now)


def sqs_receive(srv, ledger: Ledger, stop, gate: Gate, url: str):
    sqs = client("sqs", srv)
    while not stop.is_set():
        receive_once(sqs, ledger, url, 1, gate)


def web_load(srv, ledger: Ledger, stop, gate: Gate, images: list[bytes]):
    rnd = random.Random(SEED + 7)
    while not stop.is_set():
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
        with gate:
            try:
                status, _, body = srv.http("POST", "/v1/avatar/upload", rnd.choice(images), headers)
            except Exception:
                status, body = 0, b""
        if status == 201:
            with ledger.lock:
                ledger.uploads.append(json.loads(body)["id"])
                ledger.counts["upload"] += 1
        else:
            ledger.failed()
        time.sleep(0.05)


class Checker:
    """The checks run while load is paused. Objects whose listing entry
    (ETag, size, mtime) was read and verified once are not read again until
    the final check; blobs are immutable, so that entry names those bytes."""

    def __init__(self, srv, ledger: Ledger):
        self.srv, self.ledger = srv, ledger
        self.verified: dict[str, tuple] = {}
        self.settled: set[str] = set()  # uploads seen ready
        self.reads = 0

    def objects(self, full: bool = False) -> int:
        s3 = self.srv.s3()
        listed = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for o in page.get("Contents", []):
                listed[o["Key"]] = (o["ETag"], o["Size"], o["LastModified"])
        with self.ledger.lock:
            valid = {k: v.valid() for k, v in self.ledger.keys.items()}
        alien = sorted(set(listed) - set(valid))
        assert not alien, f"listed keys nobody wrote: {alien[:10]}"
        lost = sorted(k for k, v in valid.items() if k not in listed and None not in v)
        assert not lost, f"acknowledged objects lost: {lost[:10]} ({len(lost)})"
        for key, entry in listed.items():
            sizes = {v[1] for v in valid[key] if v is not None}
            assert entry[1] in sizes, f"{key}: listed with {entry[1]} B, acknowledged/in-flight sizes {sizes}"
            if not full and self.verified.get(key) == entry:
                continue
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            self.reads += 1
            digests = {v[0] for v in valid[key] if v is not None}
            assert sha(body) in digests, f"{key}: partial or wrong bytes ({len(body)} B)"
            self.verified[key] = entry
        return len(listed)

    def multipart(self) -> int:
        s3 = self.srv.s3()
        open_ids = set()
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET):
            open_ids.update(u["UploadId"] for u in page.get("Uploads", []))
        with self.ledger.lock:
            mp = {uid: (r["key"], dict(r["parts"]), r["end"]) for uid, r in self.ledger.mp.items()}
        checked = 0
        for uid, (key, parts, end) in mp.items():
            listed = uid in open_ids
            if end in ("completed", "aborted"):
                assert not listed, f"multipart {key} still open after an acknowledged {end}"
                continue
            if end is None:
                assert listed, f"acknowledged multipart upload lost: {key} {uid}"
            if listed:
                have = {p["PartNumber"]: (p["ETag"], p["Size"]) for p in s3.list_parts(
                    Bucket=BUCKET, Key=key, UploadId=uid).get("Parts", [])}
                for n, part in parts.items():
                    assert have.get(n) == part, f"multipart {key} part {n}: acked {part}, listed {have.get(n)}"
                checked += 1
        return checked

    def uploads(self, final: bool = False) -> None:
        """Every 201 upload is still known; at the end, ready with variants."""
        with self.ledger.lock:
            ids = list(self.ledger.uploads)
        for ident in ids:
            if ident in self.settled and not final:
                continue
            deadline = time.monotonic() + DEADLINE
            while True:
                status, _, body = self.srv.http("GET", f"/v1/avatar/{ident}")
                assert status == 200, f"upload {ident} answered 201, now {status} {body[:200]!r}"
                st = json.loads(body)
                if not final or st["status"] != "pending" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert st["status"] in ("pending", "ready"), f"upload {ident}: {st}"
            if st["status"] == "ready":
                self.settled.add(ident)
            if final:
                assert st["status"] == "ready", f"upload {ident} answered 201 but is {st}"
                for suffix in ("", "_small", "_large"):
                    status, headers, _ = self.srv.http("HEAD", f"/a/{ident}{suffix}")
                    length = {k.lower(): v for k, v in headers.items()}.get("content-length", "0")
                    assert status == 200 and int(length) > 0, (ident, suffix, status, headers)

    def no_panic(self) -> None:
        log = self.srv.log()
        assert "panicked" not in log, log[log.index("panicked") - 2000 :][:4000]


def queue_depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(int(attrs[a]) for a in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                       "ApproximateNumberOfMessagesDelayed"))


def drain(srv, ledger: Ledger, url: str) -> None:
    """Every queue empty through receives and deletes, then every object and
    multipart upload deleted."""
    sqs = client("sqs", srv)
    deadline = time.monotonic() + DEADLINE
    while queue_depth(sqs, url) > 0:
        assert time.monotonic() < deadline, "chaos queue does not drain"
        receive_once(sqs, ledger, url, 1)
    # Crunch messages redelivered after a kill are crunched again; wait
    # them out so nothing rewrites variants after they were deleted.
    for name in CRUNCH_QUEUES:
        q = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        while queue_depth(sqs, q) > 0:
            assert time.monotonic() < deadline, f"{name} does not drain"
            time.sleep(0.5)
    s3 = srv.s3()
    for bucket in (BUCKET, *PIPELINE_BUCKETS):
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for u in page.get("Uploads", []):
                s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, bucket


def test_kill9_during_mixed_load_loses_nothing_acknowledged(server_factory):
    print(f"\nchaos seed {SEED}, {KILLS} kills")
    began = time.monotonic()
    rnd = random.Random(SEED)
    srv = server_factory(env={"CRUNCHBOX_QUEUE_VISIBILITY_TIMEOUT": CRUNCH_VISIBILITY}).start()
    srv.s3().create_bucket(Bucket=BUCKET)
    url = srv.sqs().create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "3"})["QueueUrl"]
    assert srv.http("GET", "/__heartbeat__")[0] == 200
    start = disk(srv.data_dir)
    peak = dict(start)

    ledger = Ledger()
    stop = threading.Event()
    gate = Gate(stop)
    images = [small_jpeg(i) for i in range(5)]
    loads = [(s3_load, (n,)) for n in range(4)] + [(multipart_load, ())]
    loads += [(sqs_send, (url, False)), (sqs_send, (url, True)), (sqs_receive, (url,)), (web_load, (images,))]
    threads = [threading.Thread(target=f, args=(srv, ledger, stop, gate, *a), daemon=True) for f, a in loads]
    for t in threads:
        t.start()

    check = Checker(srv, ledger)
    opened = time.monotonic()
    try:
        for k in range(KILLS):
            # Mostly mid-load; now and then right after a restart.
            time.sleep(rnd.uniform(0.0, 0.3) if rnd.random() < 0.2 else rnd.uniform(0.5, 5.0))
            with ledger.lock:
                quiet = time.monotonic() - max(ledger.last_write, opened)
            assert quiet < STALL, f"no S3 write acknowledged for {quiet:.1f} s under load before kill {k + 1}: hang"
            srv.kill9()
            gate.close()
            now = disk(srv.data_dir)
            peak = {p: max(peak[p], now[p]) for p in peak}
            srv.start()
            n_obj, n_mp = check.objects(), check.multipart()
            check.uploads()
            check.no_panic()
            with ledger.lock:
                print(f"kill {k + 1}: {n_obj} objects, {n_mp} open multipart uploads checked; "
                      f"acked {ledger.counts}; {ledger.errors} failed calls")
            gate.open()
            opened = time.monotonic()
    except BaseException:
        srv.kill9()  # a failed check or a hung server: let the load threads fail fast
        raise
    finally:
        stop.set()
        gate.open()
        for t in threads:
            t.join(timeout=60)
    gate.close()

    n_obj, n_mp = check.objects(full=True), check.multipart()
    # Every acknowledged message arrives, exactly as sent, and none after its delete.
    sqs = client("sqs", srv)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with ledger.lock:
            if ledger.sent <= ledger.received:
                break
        receive_once(sqs, ledger, url, 1)
    check.uploads(final=True)
    now = disk(srv.data_dir)
    peak = {p: max(peak[p], now[p]) for p in peak}
    with ledger.lock:
        lost = ledger.sent - ledger.received
        assert not lost, f"{len(lost)} acknowledged messages never received, e.g. {sorted(lost)[:5]}"
        assert not ledger.resurrected, f"messages back after an acknowledged delete: {ledger.resurrected[:5]}"
        assert not ledger.alien, f"messages nobody sent: {ledger.alien[:5]}"

    drain(srv, ledger, url)
    drained = disk(srv.data_dir)
    assert srv.stop() == 0, "graceful stop after the drain failed"
    srv.start()
    assert srv.http("GET", "/__heartbeat__")[0] == 200
    assert srv.stop() == 0
    end = disk(srv.data_dir)
    check.no_panic()
    assert end["blob_files"] == 0, f"{end['blob_files']} blob files left after a full drain and restart"
    assert end["tmp_files"] == 0, f"{end['tmp_files']} temp files left after a restart"

    c = ledger.counts
    print(
        f"chaos: {KILLS} kills in {time.monotonic() - began:.0f} s (seed {SEED}); failed calls {ledger.errors}\n"
        f"  acked: {c['put']} puts, {c['overwrite']} overwrites, {c['delete']} deletes, {c['mp_done']} multipart "
        f"completed ({c['mp_part']} parts), {c['send']} messages, {c['upload']} avatar uploads\n"
        f"  checked at the end: {n_obj} objects (all read; {check.reads} reads in total), {n_mp} open multipart "
        f"uploads, {len(ledger.sent)} messages received ({c['recv']} receives), {len(ledger.uploads)} uploads ready "
        f"with 3 variants\n"
        f"  data dir bytes: start {start['total']}, peak {peak['total']} (blobs {peak['blobs']}), drained "
        f"{drained['total']}, drained + restart {end['total']} (s3 sled {end['s3_sled']}, queue sled "
        f"{end['queue_sled']}, blobs {end['blobs']}); growth {end['total'] - start['total']:+d} B"
    )
