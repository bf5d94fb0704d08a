"""The CI surface of `crunchbox serve` on the release binary, as LocalStack
users' scripts meet it: the unsigned health and init documents, init hooks
(`init_dir`: ready.d/ and shutdown.d/) driven by aws-cli through nothing but
the environment the server hands them, the `Ready.` line, `awslocal` with
LocalStack's test/test keys, reset and the SQS peek (dev endpoints only),
`crunchbox wait`, and `serve --ephemeral`.

Nothing here asserts speed: every wait polls with a deadline that only
bounds a hang (two shared cores)."""

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from conftest import ACCESS_KEY, BINARY, REGION, SECRET_KEY, free_port

RESET_PATHS = ("/_crunchbox/reset", "/_localstack/state/reset")
HEALTH_PATHS = ("/_localstack/health", "/_crunchbox/health")
PEEK_PATH = "/_aws/sqs/messages"
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
READY_LINE = "Ready."
# Bound hangs only: aws-cli takes a second or two per call on a busy machine.
READY_TIMEOUT = 120.0
AVATAR_TIMEOUT = 180.0
WEB_BUCKETS = {"crunchbox-uploads", "crunchbox-public"}
WEB_QUEUES = {"crunchbox-crunch", "crunchbox-crunch-dlq"}
TOKEN = "dev-token"

# AWS settings a developer's shell or CI may carry: none of them may leak in,
# so what the hooks and awslocal see comes from crunchbox (or awslocal) alone.
INHERITED_AWS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_REGION", "AWS_DEFAULT_REGION",
    "LOCALSTACK_HOST", "CRUNCHBOX_INIT_DIR", "CRUNCHBOX_AWS_DEV_ENDPOINTS", "CRUNCHBOX_AWS_EXTRA_CREDENTIALS",
)
# No config files, no pager, and never the instance metadata service (a
# credential chain left without keys would otherwise try 169.254.169.254).
HERMETIC_AWS = {
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_PAGER": "",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_DEFAULT_OUTPUT": "json",
}


# ---------------------------------------------------------------- tools, env

def tool_dirs() -> list[str]:
    """The venv's bin dir (aws, awslocal, python3) first."""
    dirs = [str(Path(sys.executable).parent)]
    if os.environ.get("VIRTUAL_ENV"):
        dirs.append(str(Path(os.environ["VIRTUAL_ENV"]) / "bin"))
    return dirs


def tool_path() -> str:
    return os.pathsep.join([*tool_dirs(), os.environ.get("PATH", "/usr/bin:/bin")])


def find_tool(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join(tool_dirs())) or shutil.which(name, path=tool_path())
    assert found, f"{name} not found on {tool_path()} (pip install -r e2e/requirements.txt)"
    return found


def server_env(**more: str | None) -> dict:
    """Extra environment for a server (conftest.Server's env; None removes a
    variable): aws-cli reachable for hooks, no inherited AWS settings."""
    env: dict = {key: None for key in INHERITED_AWS}
    env.update(HERMETIC_AWS)
    env["PATH"] = tool_path()
    env.update(more)
    return env


def client_env(**more: str) -> dict:
    """A full environment for a client process (awslocal, crunchbox wait)."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_AWS and not k.startswith("CRUNCHBOX_")}
    env.update(HERMETIC_AWS)
    env["PATH"] = tool_path()
    env.update(more)
    return env


def dev_env(**more: str | None) -> dict:
    return server_env(CRUNCHBOX_AWS_DEV_ENDPOINTS="true", **more)


# ------------------------------------------------------------------- waiting

def tail(srv, n: int = 3000) -> str:
    if srv is None:
        return ""
    return f"--- stderr/log ---\n{srv.log()[-n:]}\n--- stdout ---\n{srv.stdout()[-n:]}"


def wait_until(check, what: str, timeout: float, srv=None):
    """Polls check() until it returns something truthy; fails at the deadline
    or as soon as the server exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if srv is not None and srv.proc is not None and srv.proc.poll() is not None:
            pytest.fail(f"server exited ({srv.proc.returncode}) while waiting for {what}\n{tail(srv)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout}s\n{tail(srv)}")
        time.sleep(0.1)


def stdout_lines(srv) -> list[str]:
    return [line.rstrip("\r") for line in srv.stdout().splitlines()]


def wait_ready_line(srv, timeout: float = READY_TIMEOUT) -> None:
    wait_until(lambda: READY_LINE in stdout_lines(srv), f"'{READY_LINE}' line on stdout", timeout, srv)


# ---------------------------------------------------------------------- HTTP

def aws_http(srv, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    """Unsigned HTTP to the AWS port; returns (status, lower-cased headers, body)."""
    if body is None and method in ("POST", "PUT"):
        body = b""
    req = urllib.request.Request(srv.endpoint + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw, data = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        status, raw, data = e.code, e.headers, e.read()
    return status, {k.lower(): v for k, v in raw.items()}, data


def get_json(srv, path: str) -> dict:
    status, headers, body = aws_http(srv, "GET", path)
    assert status == 200, (path, status, body[:500])
    assert "application/json" in headers.get("content-type", ""), (path, headers)
    return json.loads(body)


def init_doc(srv) -> dict:
    return get_json(srv, "/_localstack/init")


def reset(srv, path: str = RESET_PATHS[0]) -> tuple[int, bytes]:
    status, _, body = aws_http(srv, "POST", path)
    return status, body


def peek(srv, queue_url: str | None, as_json: bool = True) -> tuple[int, dict, bytes]:
    query = "" if queue_url is None else "?" + urllib.parse.urlencode({"QueueUrl": queue_url})
    headers = {"Accept": "application/json"} if as_json else {}
    return aws_http(srv, "GET", PEEK_PATH + query, headers=headers)


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def peeked_xml(body: bytes) -> list[dict]:
    """A ReceiveMessageResponse's messages as the JSON shape's dicts."""
    root = ET.fromstring(body)
    assert local(root.tag) == "ReceiveMessageResponse", body[:300]
    out = []
    for msg in (e for e in root.iter() if local(e.tag) == "Message"):
        doc: dict = {"Attributes": {}}
        for child in msg:
            name = local(child.tag)
            if name == "Attribute":
                fields = {local(c.tag): c.text or "" for c in child}
                doc["Attributes"][fields["Name"]] = fields["Value"]
            elif len(child) == 0:
                doc[name] = child.text or ""
        out.append(doc)
    return out


# ----------------------------------------------------------------- init dirs

def write_script(path: Path, text: str, executable: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755 if executable else 0o644)
    return path


def record(order: Path, name: str) -> str:
    """A shell line appending the script's name to the order file."""
    return f"echo {shlex.quote(name)} >> {shlex.quote(str(order))}\n"


def order_of(order: Path) -> list[str]:
    return order.read_text().split() if order.exists() else []


def script_states(doc: dict) -> list[tuple[str, str, str]]:
    return sorted((s["name"], s["stage"], s["state"]) for s in doc["scripts"])


# -------------------------------------------------------------------- S3/SQS

def bucket_names(srv) -> set[str]:
    return {b["Name"] for b in srv.s3().list_buckets()["Buckets"]}


def queue_names(srv) -> set[str]:
    return {url.rsplit("/", 1)[-1] for url in srv.sqs().list_queues().get("QueueUrls", [])}


def receive_all(sqs, url: str, want: int, timeout: float = 15.0, **kw) -> list[dict]:
    """Receives until `want` distinct messages arrived or the deadline passed."""
    got: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   MessageSystemAttributeNames=["ApproximateReceiveCount"], **kw)
        for msg in resp.get("Messages", []):
            got.setdefault(msg["MessageId"], msg)
    return list(got.values())


def queue_counts(sqs, url: str) -> tuple[str, str]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]


@dataclass
class Populated:
    buckets: list[str]
    objects: dict[tuple[str, str], bytes]
    queue: str  # two messages, one of them in flight for 60 s
    fifo: str  # one message


def populate(srv, tag: str) -> Populated:
    """Buckets with and without objects, a standard queue with a visible and
    an in-flight message, a FIFO queue with a message."""
    s3, sqs = srv.s3(), srv.sqs()
    bucket = f"reset-{tag}"
    objects = {(bucket, "k1"): b"one", (bucket, "dir/k2"): b"two"}
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=f"{bucket}-empty")
    for (b, key), data in objects.items():
        s3.put_object(Bucket=b, Key=key, Body=data)
    queue = sqs.create_queue(QueueName=f"reset-{tag}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="stays visible")
    sqs.send_message(QueueUrl=queue, MessageBody="goes in flight")
    taken = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=60, WaitTimeSeconds=5)
    assert len(taken.get("Messages", [])) == 1, taken
    fifo = sqs.create_queue(QueueName=f"reset-{tag}.fifo",
                            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    sqs.send_message(QueueUrl=fifo, MessageBody="fifo", MessageGroupId="g")
    return Populated([bucket, f"{bucket}-empty"], objects, queue, fifo)


def assert_populated(srv, state: Populated) -> None:
    """Everything populate() made is still there, message states included."""
    s3, sqs = srv.s3(), srv.sqs()
    assert set(state.buckets) <= bucket_names(srv)
    for (bucket, key), data in state.objects.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, (bucket, key)
    urls = sqs.list_queues().get("QueueUrls", [])
    assert state.queue in urls and state.fifo in urls, urls
    assert queue_counts(sqs, state.queue) == ("1", "1")
    assert queue_counts(sqs, state.fifo)[0] == "1"


def assert_all_gone(srv, state: Populated) -> None:
    """No bucket, no queue; recreated under the same names they are empty, so
    objects and messages went too, not just the names."""
    s3, sqs = srv.s3(), srv.sqs()
    assert s3.list_buckets()["Buckets"] == []
    assert sqs.list_queues().get("QueueUrls", []) == []
    bucket = state.buckets[0]
    s3.create_bucket(Bucket=bucket)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    url = sqs.create_queue(QueueName=state.queue.rsplit("/", 1)[-1])["QueueUrl"]
    assert queue_counts(sqs, url) == ("0", "0")
    assert receive_all(sqs, url, 1, timeout=2) == []


# ----------------------------------------------------------------- web role

def jpeg_bytes() -> bytes:
    img = Image.new("RGB", (640, 480))
    img.putdata([(x % 256, y % 256, (x + y) % 256) for y in range(480) for x in range(640)])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def upload_ready(srv, data: bytes) -> str:
    """Uploads through the web role and waits for the avatar to be ready."""
    status, _, body = srv.http("POST", "/v1/avatar/upload", body=data,
                               headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"})
    assert status == 201, body
    avatar_id = json.loads(body)["id"]

    def settled():
        st, _, doc = srv.http("GET", f"/v1/avatar/{avatar_id}")
        assert st == 200, doc
        doc = json.loads(doc)
        return doc if doc["status"] != "pending" else None

    doc = wait_until(settled, f"avatar {avatar_id} to settle", AVATAR_TIMEOUT, srv)
    assert doc["status"] == "ready", doc
    return avatar_id


# ---------------------------------------------------------- crunchbox wait

def run_wait(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BINARY), "wait", *args], env=env or client_env(), capture_output=True, text=True,
                          timeout=timeout)


def nonempty_lines(*texts: str) -> list[str]:
    return [line for text in texts for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------- awslocal

def awslocal(srv, *args: str) -> subprocess.CompletedProcess:
    """awslocal exactly as a LocalStack CI script runs it: no keys in the
    environment (it falls back to test/test), the endpoint from the
    environment variables awscli-local reads."""
    env = client_env(
        AWS_ENDPOINT_URL=srv.endpoint,
        LOCALSTACK_HOST=f"127.0.0.1:{srv.aws_port}",
        DISABLE_DEPRECATION_NOTICE="1",
    )
    return subprocess.run([find_tool("awslocal"), *args], env=env, capture_output=True, text=True, timeout=120)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


# ============================================================== health, init

@pytest.mark.parametrize(
    ("roles", "services"),
    [
        ("s3,sqs", {"s3": "running", "sqs": "running", "sts": "running"}),
        ("sqs", {"sqs": "running", "sts": "running"}),
        ("s3", {"s3": "running", "sts": "running"}),
    ],
)
def test_health_names_exactly_the_running_services(server_factory, roles, services):
    """Both health paths answer unsigned with LocalStack's document, listing
    the running roles' services (and sts) only, with the binary's version."""
    srv = server_factory(roles=roles, env=server_env()).start()
    version = ok(subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, timeout=30))
    docs = [get_json(srv, path) for path in HEALTH_PATHS]
    assert docs[0] == docs[1]
    doc = docs[0]
    assert doc["services"] == services
    assert doc["edition"] == "crunchbox"
    assert SEMVER.match(doc["version"]), doc
    assert doc["version"] in version, (doc["version"], version)


def test_without_init_dir_ready_at_once(server_factory):
    """No init_dir: the init document settles on READY with no scripts, and
    the `Ready.` line is printed once on stdout (CI greps for it)."""
    srv = server_factory(roles="s3,sqs", env=server_env(), split_stdout=True).start()
    wait_ready_line(srv)
    doc = wait_until(lambda: (d := init_doc(srv))["completed"]["READY"] and d, "READY true", 30, srv)
    assert doc["completed"] == {"BOOT": True, "START": True, "READY": True, "SHUTDOWN": False}
    assert doc["scripts"] == []
    assert stdout_lines(srv).count(READY_LINE) == 1
    assert READY_LINE not in srv.log().splitlines(), "Ready. belongs on stdout, not in the log"


def test_ready_hooks_run_in_order_with_the_endpoint_in_their_environment(server_factory, tmp_path):
    """ready.d/ runs in name order once the endpoint answers: *.sh with sh,
    *.py with python3, other executables directly. aws-cli in a hook needs no
    keys or region: the server's environment suffices (`aws s3` honours
    AWS_ENDPOINT_URL too; aws-cli v1's `sqs` in us-east-1 does not, it forces
    queue.amazonaws.com unless --endpoint-url is given). A failing
    hook is ERROR with its output logged, later hooks still run, the server
    keeps serving, and `Ready.` comes after the last hook."""
    init = tmp_path / "init"
    order = tmp_path / "order.txt"
    env_dump = tmp_path / "hook-env.json"
    ready = init / "ready.d"
    write_script(ready / "01-resources.sh", "set -e\n" + record(order, "01-resources.sh")
                 + "aws s3 mb s3://ci-bucket\n"
                 + "aws --endpoint-url \"$AWS_ENDPOINT_URL\" sqs create-queue --queue-name ci-queue\n")
    write_script(ready / "02-fails.sh", record(order, "02-fails.sh")
                 + "echo hook-02-said-this-on-stdout\necho hook-02-said-this-on-stderr >&2\nexit 3\n")
    write_script(ready / "03-after.sh", record(order, "03-after.sh"))
    write_script(ready / "04-env.py", (
        "import json, os\n"
        f"open({str(order)!r}, 'a').write('04-env.py\\n')\n"
        "keys = ['AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_DEFAULT_REGION']\n"
        f"json.dump({{k: os.environ.get(k) for k in keys}}, open({str(env_dump)!r}, 'w'))\n"
    ))
    write_script(ready / "05-direct", "#!/bin/sh\n" + record(order, "05-direct"))

    srv = server_factory(roles="s3,sqs", split_stdout=True, env=server_env(CRUNCHBOX_INIT_DIR=str(init))).start()
    wait_ready_line(srv)
    # Ready. is printed after the last hook finished.
    assert order_of(order) == ["01-resources.sh", "02-fails.sh", "03-after.sh", "04-env.py", "05-direct"]
    assert stdout_lines(srv).count(READY_LINE) == 1

    assert json.loads(env_dump.read_text()) == {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{srv.aws_port}",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }
    srv.s3().head_bucket(Bucket="ci-bucket")
    assert srv.sqs().get_queue_url(QueueName="ci-queue")["QueueUrl"].endswith("/ci-queue")

    doc = init_doc(srv)
    assert doc["completed"] == {"BOOT": True, "START": True, "READY": True, "SHUTDOWN": False}
    assert script_states(doc) == [
        ("01-resources.sh", "READY", "SUCCESSFUL"),
        ("02-fails.sh", "READY", "ERROR"),
        ("03-after.sh", "READY", "SUCCESSFUL"),
        ("04-env.py", "READY", "SUCCESSFUL"),
        ("05-direct", "READY", "SUCCESSFUL"),
    ]
    logged = srv.log() + srv.stdout()
    for text in ("02-fails.sh", "hook-02-said-this-on-stdout", "hook-02-said-this-on-stderr"):
        assert text in logged, f"{text!r} not in the server's output\n{tail(srv)}"

    assert srv.proc.poll() is None, tail(srv)
    assert get_json(srv, HEALTH_PATHS[0])["services"]["s3"] == "running"
    srv.s3().put_object(Bucket="ci-bucket", Key="after-ready", Body=b"still serving")


def test_shutdown_hooks_run_on_sigterm_before_the_stores_close(server_factory, tmp_path):
    """shutdown.d/ runs on SIGTERM while the endpoint still answers: its
    aws-cli upload is durable (seen after a restart on the same data dir),
    its marker file exists once the process exited 0; it does not run
    before."""
    init = tmp_path / "init"
    marker = tmp_path / "shutdown-marker"
    write_script(init / "shutdown.d" / "01-save.sh", (
        "set -e\n"
        "printf 'saved at shutdown' | aws s3 cp - s3://keep/at-shutdown.txt\n"
        f'echo "$AWS_ENDPOINT_URL" > {shlex.quote(str(marker))}\n'
    ))
    srv = server_factory(roles="s3,sqs", name="data", split_stdout=True,
                         env=server_env(CRUNCHBOX_INIT_DIR=str(init))).start()
    wait_ready_line(srv)
    srv.s3().create_bucket(Bucket="keep")
    assert init_doc(srv)["completed"]["SHUTDOWN"] is False
    assert not marker.exists(), "a shutdown hook ran before shutdown"

    assert srv.stop() == 0, tail(srv)
    assert marker.exists(), f"the shutdown hook did not finish\n{tail(srv)}"
    assert marker.read_text().strip() == srv.endpoint

    again = server_factory(roles="s3,sqs", name="data", env=server_env()).start()
    body = again.s3().get_object(Bucket="keep", Key="at-shutdown.txt")["Body"].read()
    assert body == b"saved at shutdown"


# ==================================================================== wait

def test_wait_returns_only_after_the_ready_hooks(server_factory, tmp_path):
    """`crunchbox wait` started before the server keeps waiting through a
    slow ready.d hook (shown RUNNING, the next one UNKNOWN, READY false) and
    exits 0 only once the hooks are done and `Ready.` was printed."""
    init = tmp_path / "init"
    started, finished = tmp_path / "slow-started", tmp_path / "slow-finished"
    write_script(init / "ready.d" / "01-slow.sh",
                 f"touch {shlex.quote(str(started))}\nsleep 3\ntouch {shlex.quote(str(finished))}\n")
    write_script(init / "ready.d" / "02-next.sh", "true\n")
    srv = server_factory(roles="s3,sqs", split_stdout=True, env=server_env(CRUNCHBOX_INIT_DIR=str(init)))

    waiter = subprocess.Popen([str(BINARY), "wait", "--endpoint", srv.endpoint, "--timeout", "30"],
                              env=client_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        srv.start()
        wait_until(started.exists, "the slow hook to start", READY_TIMEOUT, srv)
        assert waiter.poll() is None, f"wait exited {waiter.returncode} while a ready.d hook ran"
        doc = init_doc(srv)
        assert doc["completed"] == {"BOOT": True, "START": True, "READY": False, "SHUTDOWN": False}
        assert script_states(doc) == [("01-slow.sh", "READY", "RUNNING"), ("02-next.sh", "READY", "UNKNOWN")]
        assert READY_LINE not in stdout_lines(srv)

        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, (out, err, tail(srv))
        assert finished.exists(), "wait returned before the hook finished"
        assert READY_LINE in stdout_lines(srv), f"wait returned before Ready. was printed\n{tail(srv)}"
        assert init_doc(srv)["completed"]["READY"] is True
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def test_wait_default_endpoint_is_aws_listen(server_factory):
    """Without --endpoint, wait asks the address configured as aws.listen."""
    srv = server_factory(roles="s3,sqs", env=server_env()).start()
    done = run_wait("--timeout", "30", env=client_env(CRUNCHBOX_AWS_LISTEN=f"127.0.0.1:{srv.aws_port}"))
    assert done.returncode == 0, (done.stdout, done.stderr)


def test_wait_times_out_with_one_line():
    """Nobody listens: exit 1 soon after --timeout, with one line of output."""
    port = free_port()
    began = time.monotonic()
    done = run_wait("--endpoint", f"http://127.0.0.1:{port}", "--timeout", "1", timeout=30)
    elapsed = time.monotonic() - began
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert elapsed < 10, f"took {elapsed:.1f}s for --timeout 1"
    lines = nonempty_lines(done.stdout, done.stderr)
    assert len(lines) == 1, lines


# ================================================================ awslocal

def test_awslocal_unchanged_with_test_credentials(server_factory, tmp_path):
    """With test:test among the extra credentials, LocalStack's awslocal runs
    unchanged: S3 and SQS calls succeed and land in the same store that the
    configured keys see."""
    srv = server_factory(roles="s3,sqs", env=server_env(CRUNCHBOX_AWS_EXTRA_CREDENTIALS="test:test")).start()
    src = tmp_path / "file.txt"
    src.write_bytes(b"from awslocal\n")

    ok(awslocal(srv, "s3", "mb", "s3://awslocal-bucket"))
    ok(awslocal(srv, "s3", "cp", str(src), "s3://awslocal-bucket/k"))
    assert "k" in ok(awslocal(srv, "s3", "ls", "s3://awslocal-bucket")).split()
    assert srv.s3().get_object(Bucket="awslocal-bucket", Key="k")["Body"].read() == b"from awslocal\n"

    url = json.loads(ok(awslocal(srv, "sqs", "create-queue", "--queue-name", "q")))["QueueUrl"]
    assert url.endswith("/000000000000/q"), url
    assert srv.sqs().get_queue_url(QueueName="q")["QueueUrl"] == url
    sent = json.loads(ok(awslocal(srv, "sqs", "send-message", "--queue-url", url, "--message-body", "hello")))
    got = json.loads(ok(awslocal(srv, "sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "5")))
    assert [(m["MessageId"], m["Body"]) for m in got["Messages"]] == [(sent["MessageId"], "hello")]

    identity = json.loads(ok(awslocal(srv, "sts", "get-caller-identity")))
    assert identity["Account"] == "000000000000"


def test_awslocal_refused_without_test_credentials(server_factory):
    """Without test:test configured, awslocal's default keys are refused with
    each service's own error, and nothing is created."""
    srv = server_factory(roles="s3,sqs", env=server_env()).start()
    done = awslocal(srv, "s3", "mb", "s3://awslocal-bucket")
    assert done.returncode != 0, done.stdout
    assert "InvalidAccessKeyId" in done.stderr, done.stderr
    done = awslocal(srv, "sqs", "create-queue", "--queue-name", "q")
    assert done.returncode != 0, done.stdout
    assert "InvalidClientTokenId" in done.stderr, done.stderr
    assert bucket_names(srv) == set()
    assert queue_names(srv) == set()


# =================================================================== reset

@pytest.mark.parametrize("mode", ["ephemeral", "dev-endpoints"])
def test_reset_deletes_every_bucket_object_queue_and_message(server_factory, mode):
    """POST to either reset path answers 200 and leaves an empty S3 and SQS
    (only s3,sqs run, so nothing is re-provisioned); the server works on."""
    if mode == "ephemeral":
        srv = server_factory(roles="s3,sqs", ephemeral=True, env=server_env()).start()
    else:
        srv = server_factory(roles="s3,sqs", env=dev_env()).start()
    for n, path in enumerate(RESET_PATHS):
        state = populate(srv, f"r{n}")
        status, body = reset(srv, path)
        assert status == 200, (path, body)
        assert_all_gone(srv, state)
        # assert_all_gone recreated a bucket and a queue: the next reset takes them too.
    status, body = reset(srv, RESET_PATHS[0])
    assert status == 200, body
    assert bucket_names(srv) == set() and queue_names(srv) == set()


def test_reset_reprovisions_what_web_and_worker_need(server_factory):
    """With web and worker running, reset removes user buckets and every
    object and message, brings back the buckets, the queue (with its
    redrive policy) and the DLQ, and the upload pipeline works after it."""
    srv = server_factory(roles="s3,sqs,web,worker", env=dev_env()).start()
    s3, sqs = srv.s3(), srv.sqs()
    image = jpeg_bytes()
    before = upload_ready(srv, image)
    assert srv.http("GET", f"/a/{before}")[0] == 200
    s3.create_bucket(Bucket="user-bucket")
    s3.put_object(Bucket="user-bucket", Key="k", Body=b"user data")
    sqs.create_queue(QueueName="user-queue")

    status, body = reset(srv, "/_localstack/state/reset")
    assert status == 200, body
    assert bucket_names(srv) == WEB_BUCKETS
    assert queue_names(srv) == WEB_QUEUES
    for bucket in WEB_BUCKETS:
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, bucket
    assert srv.http("GET", f"/a/{before}")[0] == 404
    crunch = sqs.get_queue_url(QueueName="crunchbox-crunch")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName="crunchbox-crunch-dlq")["QueueUrl"]
    assert queue_counts(sqs, crunch) == ("0", "0")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = sqs.get_queue_attributes(QueueUrl=crunch, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(policy["RedrivePolicy"])["deadLetterTargetArn"] == dlq_arn

    after = upload_ready(srv, image)
    status, headers, data = srv.http("GET", f"/a/{after}")
    assert status == 200 and data, headers
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "image/jpeg"


def test_dev_endpoints_are_refused_by_default(server_factory):
    """Without --ephemeral or aws.dev_endpoints, reset and peek answer 403
    and change nothing (not even message visibility)."""
    srv = server_factory(roles="s3,sqs", env=server_env()).start()
    state = populate(srv, "keep")
    for path in RESET_PATHS:
        status, body = reset(srv, path)
        assert status == 403, (path, status, body)
    for as_json in (True, False):
        status, _, body = peek(srv, state.queue, as_json=as_json)
        assert status == 403, (status, body)
    assert_populated(srv, state)


def test_reset_from_a_web_page_deletes_nothing(server_factory):
    """A web page can POST to any port without a preflight (a form or a
    no-cors fetch), so with dev endpoints on, a page the developer visits
    could wipe the store. Browsers name the page in `Origin` (and
    `Sec-Fetch-Site`): reset and peek refuse such requests; CLI tools,
    testcontainers and CI scripts send neither."""
    srv = server_factory(roles="s3,sqs", ephemeral=True, env=server_env()).start()
    state = populate(srv, "web")
    page_headers = (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    )
    for headers in page_headers:
        for path in RESET_PATHS:
            status, _, body = aws_http(srv, "POST", path, headers=headers)
            assert status == 403, (path, headers, status, body)
            assert b"web page" in body, body
        status, _, body = aws_http(srv, "GET", PEEK_PATH + "?" + urllib.parse.urlencode({"QueueUrl": state.queue}), headers=headers)
        assert status == 403, (headers, status, body)
    assert_populated(srv, state)
    status, body = reset(srv)
    assert status == 200, body


def test_reset_with_get_deletes_nothing(server_factory):
    """Reset is a POST: a GET to either path is refused and deletes nothing,
    even with dev endpoints on."""
    srv = server_factory(roles="s3,sqs", ephemeral=True, env=server_env()).start()
    state = populate(srv, "get")
    for path in RESET_PATHS:
        status, _, body = aws_http(srv, "GET", path)
        assert status >= 400, (path, status, body)
    assert_populated(srv, state)


# ==================================================================== peek

def test_peek_shows_every_message_without_touching_visibility(server_factory):
    """The peek lists visible and in-flight messages alike, as JSON (Accept:
    application/json) or ReceiveMessage XML, with the current receive
    counts; peeking changes neither visibility nor counts."""
    srv = server_factory(roles="s3,sqs", env=dev_env()).start()
    sqs = srv.sqs()
    url = sqs.create_queue(QueueName="peeked")["QueueUrl"]
    bodies = {sqs.send_message(QueueUrl=url, MessageBody=f"message {i}")["MessageId"]: f"message {i}"
              for i in range(3)}
    taken = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60, WaitTimeSeconds=5)
    assert len(taken["Messages"]) == 1, taken
    in_flight = taken["Messages"][0]["MessageId"]
    want_counts = {mid: "1" if mid == in_flight else "0" for mid in bodies}

    def check(messages: list[dict]) -> None:
        assert sorted(m["MessageId"] for m in messages) == sorted(bodies), messages
        for m in messages:
            assert m["Body"] == bodies[m["MessageId"]], m
            assert m["MD5OfBody"] == hashlib.md5(m["Body"].encode()).hexdigest(), m
            assert isinstance(m["ReceiptHandle"], str) and m["ReceiptHandle"], m
            assert m["Attributes"]["ApproximateReceiveCount"] == want_counts[m["MessageId"]], m

    for _ in range(2):  # twice: the first peek must not have counted as a receive
        status, headers, body = peek(srv, url)
        assert status == 200, body
        assert "application/json" in headers.get("content-type", ""), headers
        check(json.loads(body)["Messages"])
        status, _, body = peek(srv, url, as_json=False)
        assert status == 200, body
        check(peeked_xml(body))

    rest = receive_all(sqs, url, 2)
    assert sorted(m["MessageId"] for m in rest) == sorted(mid for mid in bodies if mid != in_flight)
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in rest), rest
    # The in-flight one is still hidden: the peek did not reset its timeout.
    assert receive_all(sqs, url, 1, timeout=2) == []
    assert queue_counts(sqs, url) == ("0", "3")


def test_peek_needs_an_existing_queue(server_factory):
    """No QueueUrl, or one naming no queue: 400, the latter with SQS's own
    non-existent-queue error."""
    srv = server_factory(roles="s3,sqs", env=dev_env()).start()
    status, _, body = peek(srv, None)
    assert status == 400, body
    for as_json in (True, False):
        status, _, body = peek(srv, f"{srv.endpoint}/000000000000/no-such-queue", as_json=as_json)
        assert status == 400, body
        text = body.decode(errors="replace")
        assert "AWS.SimpleQueueService.NonExistentQueue" in text or "QueueDoesNotExist" in text, text


# =============================================================== ephemeral

PATH_TOKEN = re.compile(r"(?<![\w:/.\-])(/[^\s'\"`,;()<>]+)")


def banner_dirs(srv) -> list[str]:
    """Existing directories named in the server's stdout."""
    found = set()
    for m in PATH_TOKEN.finditer(srv.stdout()):
        path = m.group(1).rstrip(".:/") or "/"
        if path != "/" and Path(path).is_dir():
            found.add(path)
    return sorted(found)


def ephemeral_server(server_factory, name: str):
    srv = server_factory(roles="s3,sqs", name=name, ephemeral=True, split_stdout=True, env=server_env()).start()
    dirs = wait_until(lambda: banner_dirs(srv), "a data dir in the banner", 30, srv)
    assert len(dirs) == 1, f"want one directory in the banner, got {dirs}\n{srv.stdout()}"
    assert not srv.data_dir.exists(), "--ephemeral must not need (or make) a --data-dir"
    return srv, Path(dirs[0])


def test_ephemeral_uses_a_fresh_temp_dir_and_removes_it(server_factory):
    """`serve --ephemeral` names its fresh temporary data dir in the banner,
    stores there, allows reset and peek, and removes the dir on SIGTERM
    with exit 0."""
    srv, data = ephemeral_server(server_factory, "eph")
    s3, sqs = srv.s3(), srv.sqs()
    assert s3.list_buckets()["Buckets"] == []
    s3.create_bucket(Bucket="eph")
    s3.put_object(Bucket="eph", Key="k", Body=b"x" * 4096)
    url = sqs.create_queue(QueueName="eph")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="peek me")
    assert any(p.is_file() for p in data.rglob("*")), f"nothing stored under {data}"

    status, _, body = peek(srv, url)
    assert status == 200, body
    assert [m["Body"] for m in json.loads(body)["Messages"]] == ["peek me"]
    status, body = reset(srv)
    assert status == 200, body
    assert bucket_names(srv) == set()

    assert srv.stop() == 0, tail(srv)
    assert not data.exists(), f"{data} left behind"


def test_two_ephemeral_servers_are_isolated(server_factory):
    """Two ephemeral servers at once get different dirs and never see each
    other's buckets; both dirs go at exit."""
    a, dir_a = ephemeral_server(server_factory, "eph-a")
    b, dir_b = ephemeral_server(server_factory, "eph-b")
    assert dir_a != dir_b
    a.s3().create_bucket(Bucket="only-in-a")
    b.s3().create_bucket(Bucket="only-in-b")
    assert bucket_names(a) == {"only-in-a"}
    assert bucket_names(b) == {"only-in-b"}
    assert a.stop() == 0 and b.stop() == 0
    assert not dir_a.exists() and not dir_b.exists()
