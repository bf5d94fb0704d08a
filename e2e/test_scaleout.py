"""Production topology end to end: stateless web and worker processes with
`--driver aws`, meeting only through an S3/SQS they do not own — moto's
server standing in for AWS, or a separate `crunchbox serve --roles s3,sqs`
(the stateful core on its own).

Two webs and two workers crunch 50 uploads spread over both webs; every
upload ends ready with byte-identical variants whichever worker crunched it
(and identical to `crunchbox crunch` offline). A worker killed with -9 in
the middle of its crunches loses nothing: its messages come back after the
visibility timeout and the other worker finishes them.

The helpers here (moto, plain crunchbox processes, uploads) are shared with
test_provision.py."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from conftest import ACCESS_KEY, BINARY, REGION, SECRET_KEY, free_port, wait_for_port

TOKEN = "dev-token"
MAX_UPLOAD = 8 * 1024 * 1024
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
VARIANTS = ("", "_small", "_large")
# Generous: two shared cores, big photos, and redeliveries that wait out a
# visibility timeout. A deadline only bounds a hang; nothing asserts speed.
READY_DEADLINE = 300.0


class Moto:
    """moto's standalone server on a free port (in-memory; one per test)."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.log_path = tmp / "moto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Moto":
        exe = Path(sys.executable).parent / "moto_server"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(exe), "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Backend:
    """An S3 + SQS endpoint with the key pair that signs for it."""

    def __init__(self, endpoint: str, access: str, secret: str):
        self.endpoint, self.access, self.secret = endpoint, access, secret

    def aws_env(self) -> dict:
        """The SDK's default chain, fed from the environment only (no
        profile files, no instance metadata)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access,
            aws_secret_access_key=self.secret,
            region_name=REGION,
        )


def crunchbox_env(backend: Backend, data_dir: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    # A stray CRUNCHBOX_* from the caller's shell must not leak in.
    for key in [k for k in env if k.startswith("CRUNCHBOX_") and k not in ("CRUNCHBOX_BIN", "CRUNCHBOX_CORPUS")]:
        del env[key]
    env.update(backend.aws_env())
    env.update(
        {
            "CRUNCHBOX_DATA_DIR": str(data_dir),
            "CRUNCHBOX_LOG_FORMAT": "json",
            # Unused by web/worker in aws mode; a free port keeps any
            # accidental embedded listener from colliding.
            "CRUNCHBOX_AWS_LISTEN": f"127.0.0.1:{free_port()}",
            "RUST_LOG": env.get("RUST_LOG", "info"),
        }
    )
    env.update(extra or {})
    return env


def provision(backend: Backend, tmp: Path, extra: dict | None = None) -> subprocess.CompletedProcess:
    """`crunchbox provision --driver aws --aws-endpoint-url …`."""
    return subprocess.run(
        [str(BINARY), "provision", "--driver", "aws", "--aws-endpoint-url", backend.endpoint],
        env=crunchbox_env(backend, tmp / "provision-data", extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


class Proc:
    """One `crunchbox serve --roles web|worker --driver aws` process."""

    def __init__(self, name: str, role: str, backend: Backend, tmp: Path, extra: dict | None = None):
        self.name, self.role, self.backend = name, role, backend
        self.web_port = free_port()
        self.log_path = tmp / f"{name}.log"
        env = {
            "CRUNCHBOX_WEB_LISTEN": f"127.0.0.1:{self.web_port}",
            "CRUNCHBOX_WEB_PUBLIC_URL": self.web,
        }
        env.update(extra or {})
        self.env = crunchbox_env(backend, tmp / f"{name}-data", env)
        self.proc: subprocess.Popen | None = None

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def args(self) -> list[str]:
        endpoint = self.backend.endpoint
        return [str(BINARY), "serve", "--roles", self.role, "--driver", "aws", "--aws-endpoint-url", endpoint]

    def start(self, wait: bool = True) -> "Proc":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait and self.role == "web":
            wait_for_port(self.web_port)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc and self.proc.poll() is None, f"{self.name} is not running:\n{self.log()}"
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def events(self, message: str) -> list[dict]:
        """The fields of the JSON log events with this message (mozlog:
        `Fields.msg`; tracing's flat JSON: `message`)."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                fields = event.get("Fields", event)
                if fields.get("msg", fields.get("message")) == message:
                    out.append(fields)
        return out

    def crunched(self) -> set[str]:
        return {e["id"] for e in self.events("crunched")}


@pytest.fixture
def procs():
    """Collects Moto and Proc objects and stops them after the test."""
    started: list = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture(params=["moto", "crunchbox"])
def backend(request, tmp_path, procs, server_factory) -> Backend:
    """The S3/SQS the stateless tiers use: moto, or a crunchbox core."""
    if request.param == "moto":
        moto = Moto(tmp_path).start()
        procs.append(moto)
        # moto accepts any key pair.
        return Backend(moto.endpoint, "moto-key", "moto-secret")
    core = server_factory(roles="s3,sqs", name="core").start()
    return Backend(core.endpoint, ACCESS_KEY, SECRET_KEY)


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def upload(web: str, path: Path) -> str:
    status, _, body = http(
        "POST",
        f"{web}/v1/avatar/upload",
        path.read_bytes(),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": MIME[path.suffix.lower()]},
    )
    assert status == 201, (status, body)
    answer = json.loads(body)
    assert answer["status"] == "pending"
    return answer["id"]


def wait_ready(web: str, ids, deadline: float = READY_DEADLINE) -> None:
    """Polls the status route until every id is ready; fails on `failed`."""
    pending = set(ids)
    end = time.monotonic() + deadline
    while pending and time.monotonic() < end:
        for id_ in sorted(pending):
            status, _, body = http("GET", f"{web}/v1/avatar/{id_}")
            assert status == 200, (id_, status, body)
            state = json.loads(body)["status"]
            assert state != "failed", body
            if state == "ready":
                pending.discard(id_)
        if pending:
            time.sleep(0.5)
    assert not pending, f"{len(pending)} uploads never became ready"


def variants(web: str, id_: str) -> tuple[bytes, ...]:
    out = []
    for suffix in VARIANTS:
        status, headers, body = http("GET", f"{web}/a/{id_}{suffix}")
        assert status == 200, (id_, suffix, status)
        assert headers["Content-Type"] in ("image/jpeg", "image/png")
        assert int(headers["Content-Length"]) == len(body) > 0
        out.append(body)
    return tuple(out)


def photos(corpus: Path) -> list[Path]:
    """Corpus files the web accepts (one wallpaper is over the upload cap)."""
    files = sorted(p for p in corpus.iterdir() if p.suffix.lower() in MIME and p.stat().st_size <= MAX_UPLOAD)
    assert len(files) >= 10
    return files


def offline(corpus_file: Path, out: Path) -> tuple[bytes, ...]:
    """The same file through `crunchbox crunch`, the reference bytes."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BINARY), "crunch", str(corpus_file), "--out", str(out)], check=True, capture_output=True)
    found = []
    for suffix in VARIANTS:
        (path,) = [p for p in out.iterdir() if p.stem == corpus_file.stem + suffix]
        found.append(path.read_bytes())
    return tuple(found)


def start_tiers(backend: Backend, tmp: Path, procs: list, webs: int, workers: int, extra: dict | None = None):
    web_procs = [Proc(f"web{i}", "web", backend, tmp, extra).start() for i in range(webs)]
    worker_procs = [Proc(f"worker{i}", "worker", backend, tmp, extra).start() for i in range(workers)]
    procs.extend(web_procs + worker_procs)
    for w in web_procs:
        status, _, body = http("GET", f"{w.web}/__heartbeat__")
        assert status == 200, body
    return web_procs, worker_procs


def test_two_webs_two_workers_fifty_uploads(backend, tmp_path, procs, corpus):
    done = provision(backend, tmp_path)
    assert done.returncode == 0, done.stderr
    extra = {"CRUNCHBOX_CRUNCH_CONCURRENCY": "2"}
    webs, workers = start_tiers(backend, tmp_path, procs, webs=2, workers=2, extra=extra)

    files = photos(corpus)
    plan = [(webs[i % 2], files[i % len(files)]) for i in range(50)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = list(pool.map(lambda job: upload(job[0].web, job[1]), plan))
    assert len(set(ids)) == 50
    uploaded = time.monotonic()

    wait_ready(webs[0].web, ids)
    # Reported, not asserted: two shared cores.
    ready = time.monotonic()
    print(f"\n50 uploads ({sum(f.stat().st_size for _, f in plan) / 1e6:.0f} MB) in {uploaded - started:.1f} s, "
          f"all ready after {ready - started:.1f} s")

    # Both webs serve the same bytes: they share nothing but S3.
    results = {}
    for id_ in ids:
        got = variants(webs[0].web, id_)
        assert variants(webs[1].web, id_) == got, id_
        results[id_] = got

    # Every worker took part, and each upload was crunched by exactly one
    # of them at a time that counted (a redelivery would crunch it twice,
    # identically).
    by_worker = [w.crunched() for w in workers]
    assert all(by_worker), [len(c) for c in by_worker]
    assert set(ids) <= by_worker[0] | by_worker[1]

    # The same photo gives the same bytes whichever worker crunched it, and
    # the same as the offline crunch.
    crossed = 0
    for n, photo in enumerate(files):
        copies = [id_ for (_, f), id_ in zip(plan, ids) if f == photo]
        assert len({results[i] for i in copies}) == 1, photo.name
        if any(i in by_worker[0] for i in copies) and any(i in by_worker[1] for i in copies):
            crossed += 1
        if n < 3:
            assert results[copies[0]] == offline(photo, tmp_path / "offline"), photo.name
    # At least one photo was crunched by both workers, so "identical"
    # compares their outputs and not one worker with itself.
    assert crossed >= 1
    counts = [len(c) for c in by_worker]
    print(f"\n{backend.endpoint}: crunched per worker {counts}, photos crunched by both: {crossed}")

    # Nothing is left behind in the queues.
    sqs = backend.client("sqs")
    url = sqs.get_queue_url(QueueName="crunchbox-crunch")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def queue_counts(backend: Backend) -> tuple[int, int]:
    sqs = backend.client("sqs")
    url = sqs.get_queue_url(QueueName="crunchbox-crunch")["QueueUrl"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_until(predicate, what: str, deadline: float = READY_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_killed_mid_crunch_loses_nothing(backend, tmp_path, procs, corpus):
    # A short visibility timeout, so the dead worker's messages come back soon.
    extra = {"CRUNCHBOX_QUEUE_VISIBILITY_TIMEOUT": "5", "CRUNCHBOX_CRUNCH_CONCURRENCY": "2"}
    done = provision(backend, tmp_path, extra)
    assert done.returncode == 0, done.stderr
    (web,), (doomed,) = start_tiers(backend, tmp_path, procs, webs=1, workers=1, extra=extra)

    files = photos(corpus)
    ids = [upload(web.web, files[i % len(files)]) for i in range(24)]

    # Let the doomed worker get going, then freeze it so what it holds in
    # flight stays held while we count it: only it has received anything.
    wait_until(lambda: len(doomed.crunched()) >= 1, "the first crunch")
    doomed.signal(signal.SIGSTOP)
    _, held = queue_counts(backend)
    doomed.kill9()
    finished_by_doomed = doomed.crunched()
    assert held >= 1, "the worker held no message when it died"
    assert len(finished_by_doomed) < len(ids)
    print(f"\nkilled after {len(finished_by_doomed)} crunches, holding {held} messages in flight")

    survivor = Proc("survivor", "worker", backend, tmp_path, extra).start()
    procs.append(survivor)
    wait_ready(web.web, ids)

    # Everything the dead worker had not finished — including the messages
    # it held, which come back after their visibility timeout — the other
    # one crunches. Waited for, not asserted at once: a crunch the doomed
    # worker uploaded but was stopped before logging makes its avatar ready
    # before the survivor has redone it.
    wait_until(
        lambda: set(ids) - finished_by_doomed <= survivor.crunched(),
        "the survivor crunching everything the dead worker had not finished",
    )
    # Complete and consistent: copies of one photo, crunched before and
    # after the kill by either worker, are the same bytes.
    for photo in {files[i % len(files)] for i in range(len(ids))}:
        copies = [id_ for i, id_ in enumerate(ids) if files[i % len(files)] == photo]
        assert len({variants(web.web, id_) for id_ in copies}) == 1, photo.name
    assert queue_counts(backend) == (0, 0)


# The IAM policies of README's "Running in production", verbatim apart from
# the placeholders. test_iam_policies_suffice runs the whole pipeline under
# them with moto enforcing IAM, so a call the code makes that the policies
# do not allow fails the test.
WEB_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "HeadBucketAnd404s",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": ["arn:aws:s3:::crunchbox-uploads", "arn:aws:s3:::crunchbox-public"],
        },
        {
            "Sid": "Originals",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::crunchbox-uploads/originals/*",
        },
        {
            "Sid": "FailureRecords",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::crunchbox-uploads/failed/*",
        },
        {
            "Sid": "Variants",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::crunchbox-public/*",
        },
        {
            "Sid": "Tombstones",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": "arn:aws:s3:::crunchbox-uploads/deleted/*",
        },
        {
            "Sid": "CrunchQueue",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl", "sqs:SendMessage", "sqs:GetQueueAttributes"],
            "Resource": "arn:aws:sqs:REGION:ACCOUNT:crunchbox-crunch",
        },
        {
            "Sid": "DeadLetterQueueLookup",
            "Effect": "Allow",
            "Action": "sqs:GetQueueUrl",
            "Resource": "arn:aws:sqs:REGION:ACCOUNT:crunchbox-crunch-dlq",
        },
    ],
}
WORKER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "HeadBucketAnd404s",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": ["arn:aws:s3:::crunchbox-uploads", "arn:aws:s3:::crunchbox-public"],
        },
        {
            "Sid": "ReadOriginals",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::crunchbox-uploads/originals/*",
        },
        {
            "Sid": "WriteFailureRecords",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::crunchbox-uploads/failed/*",
        },
        {
            "Sid": "WriteVariants",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::crunchbox-public/*",
        },
        {
            "Sid": "ReadTombstones",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::crunchbox-uploads/deleted/*",
        },
        {
            "Sid": "SweepOrphanedOriginals",
            "Effect": "Allow",
            "Action": "s3:DeleteObject",
            "Resource": "arn:aws:s3:::crunchbox-uploads/originals/*",
        },
        {
            "Sid": "CrunchQueue",
            "Effect": "Allow",
            "Action": [
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ],
            "Resource": "arn:aws:sqs:REGION:ACCOUNT:crunchbox-crunch",
        },
        {
            "Sid": "DeadLetterQueue",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage"],
            "Resource": "arn:aws:sqs:REGION:ACCOUNT:crunchbox-crunch-dlq",
        },
    ],
}
PROVISIONER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:CreateBucket", "s3:GetBucketNotification", "s3:PutBucketNotification"],
            "Resource": ["arn:aws:s3:::crunchbox-uploads", "arn:aws:s3:::crunchbox-public"],
        },
        {
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl", "sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes"],
            "Resource": [
                "arn:aws:sqs:REGION:ACCOUNT:crunchbox-crunch",
                "arn:aws:sqs:REGION:ACCOUNT:crunchbox-crunch-dlq",
            ],
        },
    ],
}
MOTO_ACCOUNT = "123456789012"


def for_moto(policy: dict) -> str:
    """Fills the placeholders and bridges two moto quirks: it authorises
    HeadBucket as the made-up action `s3:HeadBucket` where AWS uses
    `s3:ListBucket` (grant both), and it checks GetQueueUrl (which names a
    queue by QueueName, not QueueUrl) and CreateQueue against resource `*`
    where AWS uses the queue's ARN (grant those two on `*`)."""
    text = json.dumps(policy).replace("REGION", REGION).replace("ACCOUNT", MOTO_ACCOUNT)
    doc = json.loads(text)
    for statement in list(doc["Statement"]):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "s3:ListBucket" in actions:
            statement["Action"] = actions + ["s3:HeadBucket"]
        by_name = [a for a in actions if a in ("sqs:GetQueueUrl", "sqs:CreateQueue")]
        if by_name:
            doc["Statement"].append({"Effect": "Allow", "Action": by_name, "Resource": "*"})
    return json.dumps(doc)


def iam_user(moto: Moto, name: str, policy: dict) -> Backend:
    """An IAM user with one inline policy, and its key pair."""
    iam = Backend(moto.endpoint, "setup", "setup").client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=for_moto(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Backend(moto.endpoint, key["AccessKeyId"], key["SecretAccessKey"])


def test_iam_policies_suffice(tmp_path, procs, corpus):
    moto = Moto(tmp_path).start()
    procs.append(moto)
    admin = iam_user(moto, "provisioner", PROVISIONER_POLICY)
    web_user = iam_user(moto, "web", WEB_POLICY)
    worker_user = iam_user(moto, "worker", WORKER_POLICY)
    # From here on moto checks every request's signature and policy.
    status, _, body = http("POST", f"{moto.endpoint}/moto-api/reset-auth", b"0", {"Content-Type": "text/plain"})
    assert status == 200, body

    done = provision(admin, tmp_path)
    assert done.returncode == 0, done.stderr
    web = Proc("web", "web", web_user, tmp_path).start()
    worker = Proc("worker", "worker", worker_user, tmp_path).start()
    procs.extend([web, worker])

    # Enforcement is on: the web role may not write variants.
    with pytest.raises(Exception, match="AccessDenied"):
        web_user.client("s3").put_object(Bucket="crunchbox-public", Key="x", Body=b"x")

    assert http("GET", f"{web.web}/__heartbeat__")[0] == 200
    assert http("GET", f"{web.web}/metrics")[0] == 200
    good = upload(web.web, photos(corpus)[0])
    # A JPEG header with nothing after it: the worker records a failure.
    status, _, body = http(
        "POST",
        f"{web.web}/v1/avatar/upload",
        b"\xff\xd8\xff\xe0" + b"\x00" * 64,
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"},
    )
    assert status == 201, body
    bad = json.loads(body)["id"]
    # Not ready yet or ready: never an error (404s need s3:ListBucket).
    assert http("GET", f"{web.web}/a/{good}_large")[0] in (200, 404)

    wait_ready(web.web, [good])
    variants(web.web, good)
    end = time.monotonic() + READY_DEADLINE
    while json.loads(http("GET", f"{web.web}/v1/avatar/{bad}")[2])["status"] == "pending":
        assert time.monotonic() < end, "the bad upload never failed"
        time.sleep(0.5)
    assert json.loads(http("GET", f"{web.web}/v1/avatar/{bad}")[2])["status"] == "failed"

    auth = {"Authorization": f"Bearer {TOKEN}"}
    for id_ in (good, bad):
        status, _, body = http("DELETE", f"{web.web}/v1/avatar/{id_}", headers=auth)
        assert status == 200, body
        assert http("GET", f"{web.web}/v1/avatar/{id_}")[0] == 404
    assert http("GET", f"{web.web}/a/{good}")[0] == 404

    for p in (web, worker):
        assert "AccessDenied" not in p.log(), p.log()


def test_public_url_elsewhere_and_a_keeps_working(tmp_path, procs, corpus):
    """web.public_url may name a CDN or a bucket website: the URLs handed
    out use it, and the web role still serves /a/{id} itself, so it can be
    the CDN's origin."""
    moto = Moto(tmp_path).start()
    procs.append(moto)
    backend = Backend(moto.endpoint, "moto-key", "moto-secret")
    assert provision(backend, tmp_path).returncode == 0
    cdn = "https://avatars.cdn.example"
    (web,), _ = start_tiers(backend, tmp_path, procs, webs=1, workers=1, extra={"CRUNCHBOX_WEB_PUBLIC_URL": cdn + "/"})

    photo = photos(corpus)[0]
    status, _, body = http(
        "POST",
        f"{web.web}/v1/avatar/upload",
        photo.read_bytes(),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": MIME[photo.suffix.lower()]},
    )
    assert status == 201, body
    answer = json.loads(body)
    id_ = answer["id"]
    assert answer["url"] == f"{cdn}/a/{id_}"
    wait_ready(web.web, [id_])
    status_body = json.loads(http("GET", f"{web.web}/v1/avatar/{id_}")[2])
    assert status_body["variants"] == {
        "default": f"{cdn}/a/{id_}",
        "small": f"{cdn}/a/{id_}_small",
        "large": f"{cdn}/a/{id_}_large",
    }
    # The origin answers for the CDN: same bytes as the public bucket holds.
    served = variants(web.web, id_)
    stored = backend.client("s3").get_object(Bucket="crunchbox-public", Key=id_)["Body"].read()
    assert served[0] == stored
    status, headers, _ = http("GET", f"{web.web}/a/{id_}")
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert http("GET", f"{web.web}/a/{id_}", headers={"If-None-Match": headers["ETag"]})[0] == 304
