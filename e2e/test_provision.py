"""`crunchbox provision` and the aws-mode start-up check, against moto's
server and against a crunchbox core (`serve --roles s3,sqs`).

provision creates what is missing and reports one line per resource; run
again it finds everything; a changed setting is brought in line. Web and
worker in aws mode never create anything: before provisioning they exit
non-zero naming exactly what is missing, and start once it exists."""

import json
import re
import subprocess

from conftest import ACCESS_KEY, BINARY, SECRET_KEY, free_port
from test_scaleout import Backend, Proc, backend, crunchbox_env, http, procs, provision  # noqa: F401 (fixtures)

BUCKETS = ("crunchbox-uploads", "crunchbox-public")
QUEUE, DLQ = "crunchbox-crunch", "crunchbox-crunch-dlq"
EVERYTHING = {f"bucket {b}" for b in BUCKETS} | {f"queue {QUEUE}", f"queue {DLQ}"}


def refuse(backend: Backend, tmp_path, role: str, extra: dict | None = None) -> str:
    """Starts a role that must refuse to run; returns its error text."""
    p = Proc(f"refused-{role}-{free_port()}", role, backend, tmp_path, extra)
    # A process that wrongly starts would run until the timeout: that fails.
    done = subprocess.run(p.args(), env=p.env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stderr
    assert done.stdout == "", done.stdout
    return done.stderr


def missing(error: str) -> set[str]:
    """The resources a not-provisioned error names."""
    m = re.search(r"missing (.*?);", error)
    assert m, error
    return set(m.group(1).split(", "))


def report(done: subprocess.CompletedProcess) -> dict[str, str]:
    """provision's lines as {"bucket NAME" | "queue NAME": rest}."""
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4, done.stdout
    out = {}
    for line in lines:
        what, rest = line.split(": ", 1)
        out[what] = rest
    assert set(out) == EVERYTHING, done.stdout
    return out


def outcome(rest: str) -> str:
    return rest.split(" ", 1)[0]


def redrive(backend: Backend) -> tuple[str, int, str]:
    sqs = backend.client("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    policy = json.loads(attrs["RedrivePolicy"])
    return policy["deadLetterTargetArn"], int(policy["maxReceiveCount"]), attrs["VisibilityTimeout"]


def test_roles_refuse_to_start_until_provisioned(backend, tmp_path, procs):
    for role in ("web", "worker"):
        error = refuse(backend, tmp_path, role)
        assert "not provisioned" in error, error
        assert missing(error) == EVERYTHING, error
        assert f"crunchbox provision --driver aws --aws-endpoint-url {backend.endpoint}" in error
        assert error.count("\n") == 1, error  # one message, one line

    first = report(provision(backend, tmp_path))
    assert {outcome(r) for r in first.values()} == {"created"}

    web = Proc("web", "web", backend, tmp_path).start()
    worker = Proc("worker", "worker", backend, tmp_path).start()
    procs.extend([web, worker])
    status, _, body = http("GET", f"{web.web}/__heartbeat__")
    assert status == 200, body
    assert json.loads(body)["checks"] == {"s3": "ok", "sqs": "ok"}
    assert worker.proc.poll() is None, worker.log()
    # The stateless tiers keep nothing on disk.
    assert not (tmp_path / "web-data").exists() and not (tmp_path / "worker-data").exists()


def test_provision_is_idempotent_and_reports_each_resource(backend, tmp_path):
    first = report(provision(backend, tmp_path))
    assert {outcome(r) for r in first.values()} == {"created"}
    s3, sqs = backend.client("s3"), backend.client("sqs")
    for bucket in BUCKETS:
        s3.head_bucket(Bucket=bucket)
    queue_url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=DLQ)["QueueUrl"]
    assert first[f"queue {DLQ}"] == f"created {dlq_url}"
    assert first[f"queue {QUEUE}"].startswith(f"created {queue_url} ")
    assert f"redrive to {DLQ} {dlq_url} after maxReceiveCount 5" in first[f"queue {QUEUE}"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert redrive(backend) == (dlq_arn, 5, "60")

    again = report(provision(backend, tmp_path))
    assert {outcome(r) for r in again.values()} == {"found"}
    assert again[f"queue {QUEUE}"].split(" ", 1)[1] == first[f"queue {QUEUE}"].split(" ", 1)[1]

    # A changed setting is applied to the existing queue, then found.
    changed = {"CRUNCHBOX_QUEUE_MAX_RECEIVE_COUNT": "3", "CRUNCHBOX_QUEUE_VISIBILITY_TIMEOUT": "30"}
    updated = report(provision(backend, tmp_path, changed))
    assert outcome(updated[f"queue {QUEUE}"]) == "updated"
    assert {outcome(updated[k]) for k in EVERYTHING - {f"queue {QUEUE}"}} == {"found"}
    assert redrive(backend) == (dlq_arn, 3, "30")
    assert outcome(report(provision(backend, tmp_path, changed))[f"queue {QUEUE}"]) == "found"


def test_start_names_exactly_what_is_missing(backend, tmp_path, procs):
    report(provision(backend, tmp_path))
    s3, sqs = backend.client("s3"), backend.client("sqs")
    s3.delete_bucket(Bucket="crunchbox-public")
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=DLQ)["QueueUrl"])

    error = refuse(backend, tmp_path, "web")
    assert missing(error) == {"bucket crunchbox-public", f"queue {DLQ}"}, error

    again = report(provision(backend, tmp_path))
    assert outcome(again["bucket crunchbox-public"]) == "created"
    assert outcome(again[f"queue {DLQ}"]) == "created"
    assert outcome(again["bucket crunchbox-uploads"]) == "found"

    web = Proc("web", "web", backend, tmp_path).start()
    procs.append(web)
    status, _, body = http("GET", f"{web.web}/__heartbeat__")
    assert status == 200, body


def test_a_queue_without_redrive_is_not_provisioned(backend, tmp_path):
    """Made by hand without the redrive policy, the pipeline would retry a
    poisoned upload forever: the worker says so instead of starting."""
    s3, sqs = backend.client("s3"), backend.client("sqs")
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
    sqs.create_queue(QueueName=DLQ)
    sqs.create_queue(QueueName=QUEUE)

    error = refuse(backend, tmp_path, "worker")
    assert missing(error) == {f"redrive policy on queue {QUEUE} (to {DLQ})"}, error

    fixed = report(provision(backend, tmp_path))
    assert outcome(fixed[f"queue {QUEUE}"]) == "updated"
    assert {outcome(fixed[k]) for k in EVERYTHING - {f"queue {QUEUE}"}} == {"found"}
    assert redrive(backend)[1] == 5


def test_bad_credentials_and_unreachable_endpoints_are_named(server_factory, tmp_path):
    core = server_factory(roles="s3,sqs", name="core").start()
    wrong = Backend(core.endpoint, ACCESS_KEY, "not-the-secret")
    error = refuse(wrong, tmp_path, "web")
    # A wrong secret is named as such, not as "another account's bucket".
    refused = "the signature was refused (SignatureDoesNotMatch): aws.secret_access_key is not the secret"
    assert error.startswith(f"crunchbox: cannot check bucket crunchbox-uploads ({refused}"), error
    assert f"queue {QUEUE} (SignatureDoesNotMatch" in error, error
    assert f"queue {DLQ} (SignatureDoesNotMatch" in error, error
    assert "check the credentials" in error, error

    done = provision(wrong, tmp_path)
    assert done.returncode != 0
    assert "checking bucket crunchbox-uploads at" in done.stderr, done.stderr
    assert refused in done.stderr and "another account" not in done.stderr, done.stderr

    nowhere = Backend(f"http://127.0.0.1:{free_port()}", ACCESS_KEY, SECRET_KEY)
    error = refuse(nowhere, tmp_path, "worker")
    assert f"cannot reach {nowhere.endpoint}" in error and "Connection refused" in error, error


def test_embedded_provision_talks_to_a_running_crunchbox(server_factory, tmp_path):
    """Without --driver aws, provision uses aws.listen and the configured
    key pair: the way to prepare a core started with --roles s3,sqs."""
    core = server_factory(roles="s3,sqs", name="core").start()
    aws = Backend(core.endpoint, ACCESS_KEY, SECRET_KEY)
    env = crunchbox_env(aws, tmp_path / "p", {"CRUNCHBOX_AWS_LISTEN": f"127.0.0.1:{core.aws_port}"})

    def run():
        return subprocess.run([str(BINARY), "provision"], env=env, capture_output=True, text=True, timeout=120)

    first = report(run())
    assert {outcome(r) for r in first.values()} == {"created"}
    # The same resources, seen through the aws driver.
    assert {outcome(r) for r in report(provision(aws, tmp_path)).values()} == {"found"}
    assert {outcome(r) for r in report(run()).values()} == {"found"}

    core.stop()
    done = run()
    assert done.returncode != 0
    assert f"cannot reach the crunchbox endpoint at http://127.0.0.1:{core.aws_port} (aws.listen)" in done.stderr
    assert "--roles s3,sqs" in done.stderr
