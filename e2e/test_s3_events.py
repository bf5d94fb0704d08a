"""S3 event notifications end to end on the release binary, with real
clients: aws-cli configures, boto3 reads back and consumes the queue,
`requests` posts a presigned form. AWS's record JSON as a client sees it,
events that survive a kill -9, and `pipeline.trigger = "s3-event"` driving
the avatar pipeline — on the embedded driver and against moto's server
(`--driver aws`), where moto itself delivers the event.

The Rust side (tests/s3_events.rs) covers every event kind, filters,
refusals and an outbox that waits for the SQS role; this file does not
repeat those. Deadlines only bound a hang; nothing asserts speed."""

import io
import json
import random
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus, unquote_plus

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from PIL import Image

from conftest import ACCESS_KEY, REGION, SECRET_KEY, wait_for_port
from test_scaleout import Backend, Moto, Proc, http, procs, provision, wait_ready  # noqa: F401 (procs: fixture)

TOKEN = "dev-token"
BUCKET = "events"
ACCOUNT = "000000000000"
PIPELINE_BUCKET = "crunchbox-uploads"
CRUNCH_QUEUE = "crunchbox-crunch"
S3_EVENT = {"CRUNCHBOX_PIPELINE_TRIGGER": "s3-event"}
DEADLINE = 60.0
READY_DEADLINE = 180.0

# AWS's documented record (Event message structure, "notification-content-
# structure"): the keys at each level. versionId only on versioned buckets;
# glacierEventData, lifecycleEventData, intelligentTieringEventData only for
# their own event kinds.
RECORD_KEYS = {
    "eventVersion", "eventSource", "awsRegion", "eventTime", "eventName",
    "userIdentity", "requestParameters", "responseElements", "s3",
}
S3_KEYS = {"s3SchemaVersion", "configurationId", "bucket", "object"}
BUCKET_KEYS = {"name", "ownerIdentity", "arn"}
CREATED_OBJECT_KEYS = {"key", "size", "eTag", "sequencer"}
REMOVED_OBJECT_KEYS = {"key", "sequencer"}
TEST_EVENT_KEYS = {"Service", "Event", "Time", "Bucket", "RequestId", "HostId"}


# --- helpers -----------------------------------------------------------------


def queue_arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def new_queue(srv, name: str) -> tuple[str, str]:
    sqs = srv.sqs()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, queue_arn(sqs, url)


def receive(sqs, url: str, wait: int = 1, max_n: int = 10) -> list[dict]:
    """One long poll; deletes what it got; returns the parsed bodies."""
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=max_n, WaitTimeSeconds=wait).get("Messages", [])
    if msgs:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        done = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        assert not done.get("Failed"), done
    return [json.loads(m["Body"]) for m in msgs]


def collect(sqs, url: str, done=lambda got: bool(got), quiet: int = 2, deadline: float = DEADLINE) -> list[dict]:
    """Receives (and deletes) until `done(bodies)` holds and then `quiet`
    consecutive long polls came back empty, or until the deadline."""
    got: list[dict] = []
    empty = 0
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        batch = receive(sqs, url)
        got.extend(batch)
        empty = 0 if batch else empty + 1
        if empty >= quiet and done(got):
            break
    return got


def the_record(body: dict) -> dict:
    assert set(body) == {"Records"}, body
    assert len(body["Records"]) == 1, f"one record per message: {body}"
    return body["Records"][0]


def records(bodies: list[dict]) -> list[dict]:
    """The records among the bodies (test events left out)."""
    return [the_record(b) for b in bodies if "Records" in b]


def request_id(resp: dict) -> str:
    """The id of the request that got `resp`: AWS's x-amz-request-id (boto3's
    RequestId) or, where crunchbox sends only that, its x-request-id."""
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    found = headers.get("x-amz-request-id") or headers.get("x-request-id")
    assert found, headers
    return found


def configure(s3, bucket: str, *rules: dict) -> None:
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": list(rules)})


def jpeg(width: int = 320, height: int = 240) -> bytes:
    img = Image.new("RGB", (width, height))
    img.putdata([((x * 255) // width, (y * 255) // height, 128) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def upload_jpeg(web: str, data: bytes) -> str:
    status, _, body = http(
        "POST", f"{web}/v1/avatar/upload", data, {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    )
    assert status == 201, (status, body)
    answer = json.loads(body)
    assert answer["status"] == "pending", answer
    return answer["id"]


def wait_healthy(web: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            status, _, body = http("GET", f"{web}/__heartbeat__")
        except OSError as e:
            status, body = 0, str(e).encode()
        if status == 200:
            return
        assert time.monotonic() < end, f"web never healthy: {status} {body!r}"
        time.sleep(0.2)


def normalised(config: dict) -> dict:
    """A notification configuration without ResponseMetadata, filter rule
    names in lower case (AWS answers `Prefix`/`Suffix` for `prefix`/`suffix`)."""
    out = {k: v for k, v in config.items() if k != "ResponseMetadata"}
    for rule in out.get("QueueConfigurations", []):
        for fr in rule.get("Filter", {}).get("Key", {}).get("FilterRules", []):
            fr["Name"] = fr["Name"].lower()
    return out


def ours(config: dict) -> dict:
    """The `crunchbox-crunch` queue configuration of a bucket."""
    found = [q for q in config.get("QueueConfigurations", []) if q.get("Id") == "crunchbox-crunch"]
    assert len(found) == 1, config
    return found[0]


def check_pipeline_rule(rule: dict, arn: str) -> None:
    assert rule["QueueArn"] == arn, rule
    assert rule["Events"] == ["s3:ObjectCreated:*"], rule
    filters = rule["Filter"]["Key"]["FilterRules"]
    assert [(f["Name"].lower(), f["Value"]) for f in filters] == [("prefix", "originals/")], rule


def check_send_policy(policy_text: str, arn: str) -> None:
    policy = json.loads(policy_text)
    statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
    allowed = [
        s for s in statements
        if s.get("Effect") == "Allow"
        and s.get("Principal", {}).get("Service") in ("s3.amazonaws.com", ["s3.amazonaws.com"])
        and "sqs:SendMessage" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert allowed, f"no statement lets s3.amazonaws.com send: {policy}"
    assert allowed[0].get("Resource") == arn, allowed


# --- 1. configuration through aws-cli ------------------------------------------


def test_aws_cli_configures_boto3_reads_back_and_test_event_comes_first(server_factory, tmp_path):
    """aws-cli's put-bucket-notification-configuration (file://) is accepted;
    boto3's get answers the same configuration; each destination queue's
    first message is the s3:TestEvent (with AWS's fields), before the record
    of a write made right after; a rule's filter and event types hold (a
    .png is not sent to the .jpg rule, a delete goes to the removal rule)."""
    srv = server_factory(roles="s3,sqs").start()
    s3, sqs = srv.s3(), srv.sqs()
    s3.create_bucket(Bucket=BUCKET)
    images_url, images_arn = new_queue(srv, "cli-images")
    removed_url, removed_arn = new_queue(srv, "cli-removed")
    config = {
        "QueueConfigurations": [
            {
                "Id": "cli-images",
                "QueueArn": images_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [
                    {"Name": "prefix", "Value": "img/"},
                    {"Name": "suffix", "Value": ".jpg"},
                ]}},
            },
            {"Id": "cli-removed", "QueueArn": removed_arn, "Events": ["s3:ObjectRemoved:Delete"]},
        ]
    }
    path = tmp_path / "notification.json"
    path.write_text(json.dumps(config))
    done = srv.aws_cli(
        "s3api", "put-bucket-notification-configuration", "--bucket", BUCKET,
        "--notification-configuration", f"file://{path}", check=False,
    )
    assert done.returncode == 0, done.stderr
    # Written right away: the test event still comes first.
    s3.put_object(Bucket=BUCKET, Key="img/a.jpg", Body=b"jpeg bytes")
    s3.put_object(Bucket=BUCKET, Key="img/b.png", Body=b"png bytes")
    s3.delete_object(Bucket=BUCKET, Key="img/a.jpg")

    got = normalised(s3.get_bucket_notification_configuration(Bucket=BUCKET))
    assert got == config, got
    cli = srv.aws_cli("s3api", "get-bucket-notification-configuration", "--bucket", BUCKET)
    assert normalised(json.loads(cli.stdout)) == config, cli.stdout

    for url, name, key, event in [
        (images_url, "cli-images", "img/a.jpg", "ObjectCreated:Put"),
        (removed_url, "cli-removed", "img/a.jpg", "ObjectRemoved:Delete"),
    ]:
        # One message at a time, so "first" is the order of delivery.
        bodies: list[dict] = []
        end = time.monotonic() + DEADLINE
        empty = 0
        while time.monotonic() < end and (len(bodies) < 2 or empty < 2):
            batch = receive(sqs, url, max_n=1)
            bodies.extend(batch)
            empty = 0 if batch else empty + 1
        assert len(bodies) == 2, f"{name}: {bodies}"
        test, rec = bodies[0], bodies[1]
        assert set(test) == TEST_EVENT_KEYS, test
        assert test["Service"] == "Amazon S3" and test["Event"] == "s3:TestEvent" and test["Bucket"] == BUCKET, test
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", test["Time"]), test
        assert test["RequestId"] and test["HostId"], test
        r = the_record(rec)
        assert (r["eventName"], r["s3"]["configurationId"], r["s3"]["object"]["key"]) == (event, name, key), r


# --- 2. presigned POST -------------------------------------------------------


def test_presigned_post_sends_one_object_created_post(server_factory):
    """A browser-style form upload (boto3 generate_presigned_post, posted by
    `requests`) sends exactly one record, `ObjectCreated:Post`, naming the
    key the form's ${filename} made (URL-encoded, space as '+'), its size,
    and the ETag head_object reports, unquoted."""
    srv = server_factory(roles="s3,sqs").start()
    s3, sqs = srv.s3(), srv.sqs()
    s3.create_bucket(Bucket=BUCKET)
    url, arn = new_queue(srv, "forms")
    configure(s3, BUCKET, {"Id": "forms", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]})
    assert [b.get("Event") for b in collect(sqs, url, quiet=1)] == ["s3:TestEvent"]

    data = random.Random(2).randbytes(3000)
    presigned = s3.generate_presigned_post(
        BUCKET, "forms/${filename}", Fields={"success_action_status": "201"},
        Conditions=[["starts-with", "$key", "forms/"], {"success_action_status": "201"}], ExpiresIn=300,
    )
    resp = requests.post(
        presigned["url"], data=presigned["fields"], files={"file": ("my photo.png", data, "image/png")}, timeout=30
    )
    assert resp.status_code == 201, resp.text
    key = "forms/my photo.png"
    head = s3.head_object(Bucket=BUCKET, Key=key)

    got = collect(sqs, url)
    assert len(got) == 1, f"exactly one message for one form upload: {got}"
    r = the_record(got[0])
    assert r["eventName"] == "ObjectCreated:Post", r
    assert r["s3"]["configurationId"] == "forms"
    obj = r["s3"]["object"]
    assert obj["key"] == "forms/my+photo.png", obj
    assert unquote_plus(obj["key"]) == key
    assert obj["size"] == len(data) == head["ContentLength"], obj
    assert obj["eTag"] == head["ETag"].strip('"'), (obj, head["ETag"])


# --- 3. the record, field by field ----------------------------------------------


def test_put_record_matches_aws_structure_field_by_field(server_factory):
    """A PutObject's record has exactly the keys of AWS's documented event at
    every level (no versionId on an unversioned bucket), each with the value
    AWS would give: region, ms-precision UTC time of the write, the signing
    key as principal, the client address, the id of the request that made
    the write (and its x-amz-id-2 where the response carries one), the account as bucket owner, the bucket ARN, the key
    URL-encoded (space '+', '+' '%2B', UTF-8 percent-encoded) so that
    unquote_plus gives it back, size, unquoted ETag, and an 18-hex-digit
    sequencer that grows with each event of the same key. A removal has
    only key and sequencer."""
    srv = server_factory(roles="s3,sqs").start()
    s3, sqs = srv.s3(), srv.sqs()
    s3.create_bucket(Bucket=BUCKET)
    url, arn = new_queue(srv, "fields")
    configure(s3, BUCKET, {"Id": "every-write", "QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]})
    collect(sqs, url, quiet=1)  # the test event

    key = "photos/a b+c \u00fcber.txt"
    before = datetime.now(timezone.utc)
    first = s3.put_object(Bucket=BUCKET, Key=key, Body=b"first body")
    after = datetime.now(timezone.utc)
    second = s3.put_object(Bucket=BUCKET, Key=key, Body=b"the second, longer body")
    head = s3.head_object(Bucket=BUCKET, Key=key)
    s3.delete_object(Bucket=BUCKET, Key=key)

    got = records(collect(sqs, url, done=lambda g: len(g) >= 3))
    assert len(got) == 3, got
    by_request = {r["responseElements"]["x-amz-request-id"]: r for r in got}
    put1 = by_request[request_id(first)]
    put2 = by_request[request_id(second)]
    (removal,) = [r for r in got if r["eventName"] == "ObjectRemoved:Delete"]

    for r in got:
        assert set(r) == RECORD_KEYS, set(r) ^ RECORD_KEYS
        assert r["eventVersion"] == "2.1"
        assert r["eventSource"] == "aws:s3"
        assert r["awsRegion"] == REGION
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["eventTime"]), r["eventTime"]
        assert r["userIdentity"] == {"principalId": f"AWS:{ACCESS_KEY}"}
        assert r["requestParameters"] == {"sourceIPAddress": "127.0.0.1"}
        assert set(r["responseElements"]) == {"x-amz-request-id", "x-amz-id-2"}
        assert all(r["responseElements"].values()), r["responseElements"]
        s3part = r["s3"]
        assert set(s3part) == S3_KEYS, set(s3part) ^ S3_KEYS
        assert s3part["s3SchemaVersion"] == "1.0"
        assert s3part["configurationId"] == "every-write"
        bucket = s3part["bucket"]
        assert set(bucket) == BUCKET_KEYS, set(bucket) ^ BUCKET_KEYS
        assert bucket == {"name": BUCKET, "ownerIdentity": {"principalId": ACCOUNT}, "arn": f"arn:aws:s3:::{BUCKET}"}
        obj = s3part["object"]
        assert obj["key"] == quote_plus(key, safe="/") == "photos/a+b%2Bc+%C3%BCber.txt", obj["key"]
        assert unquote_plus(obj["key"]) == key
        assert re.fullmatch(r"[0-9A-Fa-f]{18}", obj["sequencer"]), obj["sequencer"]

    assert put1["eventName"] == put2["eventName"] == "ObjectCreated:Put"
    when = datetime.strptime(put1["eventTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    slack = timedelta(seconds=1)
    assert before - slack <= when <= after + slack, (before, when, after)
    for r, resp, body in [(put1, first, b"first body"), (put2, second, b"the second, longer body")]:
        host_id = resp["ResponseMetadata"]["HTTPHeaders"].get("x-amz-id-2")
        if host_id is not None:
            assert r["responseElements"]["x-amz-id-2"] == host_id, (r["responseElements"], host_id)
        obj = r["s3"]["object"]
        assert set(obj) == CREATED_OBJECT_KEYS, set(obj) ^ CREATED_OBJECT_KEYS
        assert obj["size"] == len(body)
        assert obj["eTag"] == resp["ETag"].strip('"')
    assert put2["s3"]["object"]["eTag"] == head["ETag"].strip('"')
    assert set(removal["s3"]["object"]) == REMOVED_OBJECT_KEYS, removal["s3"]["object"]
    seqs = [int(r["s3"]["object"]["sequencer"], 16) for r in (put1, put2, removal)]
    assert seqs[0] < seqs[1] < seqs[2], [r["s3"]["object"]["sequencer"] for r in (put1, put2, removal)]


# --- 4. kill -9 ----------------------------------------------------------------


def test_kill9_loses_no_event_of_an_acknowledged_put(server_factory):
    """Four threads PUT small objects while the server is killed with SIGKILL
    after a random 0.3-1.0 s. After a restart on the same data dir, every PUT
    that was answered 200 has at least one ObjectCreated:Put record with its
    size (duplicates allowed: at least once); an unanswered PUT may or may
    not have one; no record names a key nobody wrote."""
    seed = int(time.time())
    rnd = random.Random(seed)
    print(f"\nseed {seed}")
    srv = server_factory(roles="s3,sqs").start()
    s3, sqs = srv.s3(), srv.sqs()
    s3.create_bucket(Bucket=BUCKET)
    url, arn = new_queue(srv, "crash")
    configure(s3, BUCKET, {"Id": "crash", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]})
    collect(sqs, url, quiet=1)

    fast = BotoConfig(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}, s3={"addressing_style": "path"})
    acked: dict[str, int] = {}
    attempted: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    limit = 2000  # per thread; the kill comes long before

    def writer(n: int) -> None:
        client = boto3.client(
            "s3", endpoint_url=srv.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name=REGION, config=fast,
        )
        for i in range(limit):
            if stop.is_set():
                return
            key = f"crash/{n}-{i:04d} x"
            body = b"x" * rnd.randint(0, 300)
            with lock:
                attempted[key] = len(body)
            try:
                client.put_object(Bucket=BUCKET, Key=key, Body=body)
            except Exception:
                if stop.is_set():
                    return
                continue
            with lock:
                acked[key] = len(body)

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(rnd.uniform(0.3, 1.0))
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    with lock:
        acked_now, attempted_now = dict(acked), dict(attempted)
    assert acked_now, "no PUT was acknowledged before the kill"
    print(f"{len(acked_now)} PUTs acknowledged, {len(attempted_now) - len(acked_now)} in flight or refused at the kill")

    srv.start()
    sqs = srv.sqs()
    seen: dict[str, list[dict]] = {}

    def all_seen(bodies: list[dict]) -> bool:
        for r in records(bodies[len(all_seen.done):]):
            seen.setdefault(unquote_plus(r["s3"]["object"]["key"]), []).append(r)
        all_seen.done = bodies
        return set(acked_now) <= set(seen)

    all_seen.done = []
    bodies = collect(sqs, url, done=all_seen, quiet=3, deadline=120)
    all_seen(bodies)
    lost = sorted(set(acked_now) - set(seen))
    assert not lost, f"{len(lost)} acknowledged PUTs have no event, e.g. {lost[:5]}"
    alien = sorted(set(seen) - set(attempted_now))
    assert not alien, f"records of keys nobody wrote: {alien[:5]}"
    for key, size in acked_now.items():
        for r in seen[key]:
            assert r["eventName"] == "ObjectCreated:Put", r
        # The last acknowledged write of a key is its only write here.
        assert any(r["s3"]["object"]["size"] == size for r in seen[key]), (key, size, seen[key])
    dups = sum(len(v) - 1 for v in seen.values())
    print(f"{len(seen)} keys with events ({dups} duplicates), {len(seen) - len(acked_now)} of unacknowledged PUTs")
    assert "panicked" not in srv.log()


# --- 5. the pipeline on the embedded driver ------------------------------------


def test_s3_event_trigger_embedded_pipeline(server_factory):
    """With pipeline.trigger = s3-event on the embedded driver, start-up sets
    the notification `crunchbox-crunch` (ObjectCreated:* under originals/ to
    the crunch queue) and a queue policy letting s3.amazonaws.com send. The
    web role only stores the original: what reaches the crunch queue is the
    S3 record of originals/{id}, never a bare id. Once a worker runs, that
    record alone gets the upload crunched: ready, and /a/{id} serves a JPEG."""
    # First without a worker, so the queue can be looked at.
    srv = server_factory(roles="s3,sqs,web", env=S3_EVENT).start()
    wait_healthy(srv.web)
    s3, sqs = srv.s3(), srv.sqs()
    url = sqs.get_queue_url(QueueName=CRUNCH_QUEUE)["QueueUrl"]
    arn = queue_arn(sqs, url)
    check_pipeline_rule(ours(s3.get_bucket_notification_configuration(Bucket=PIPELINE_BUCKET)), arn)
    check_send_policy(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"], arn)

    ident = upload_jpeg(srv.web, jpeg())
    found: list[dict] = []
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in msgs:
            body = m["Body"]
            assert body != ident, "the web role sent the bare id although the trigger is s3-event"
            doc = json.loads(body)
            found.append(doc)
            # Back to the queue at once, for the worker.
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        if any("Records" in d for d in found):
            break
    recs = records(found)
    assert len(recs) == 1, found
    assert recs[0]["eventName"] == "ObjectCreated:Put", recs[0]
    assert recs[0]["s3"]["configurationId"] == "crunchbox-crunch"
    assert recs[0]["s3"]["bucket"]["name"] == PIPELINE_BUCKET
    assert unquote_plus(recs[0]["s3"]["object"]["key"]) == f"originals/{ident}", recs[0]
    status, _, body = http("GET", f"{srv.web}/v1/avatar/{ident}")
    assert status == 200 and json.loads(body)["status"] == "pending", (status, body)

    # Now every role: the worker crunches from that record.
    assert srv.stop() == 0
    srv.roles = "s3,sqs,web,worker"
    srv.start()
    wait_ready(srv.web, [ident], deadline=READY_DEADLINE)
    status, headers, body = http("GET", f"{srv.web}/a/{ident}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg", (status, dict(headers))
    assert body[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(body)) as img:
        assert img.size == (200, 150)

    # A second upload with the worker running from the start.
    other = upload_jpeg(srv.web, jpeg(120, 90))
    wait_ready(srv.web, [other], deadline=READY_DEADLINE)
    assert http("GET", f"{srv.web}/a/{other}_small")[0] == 200
    # The rule is still the one provision keeps (a restart does not duplicate it).
    config = s3.get_bucket_notification_configuration(Bucket=PIPELINE_BUCKET)
    check_pipeline_rule(ours(config), arn)
    assert "panicked" not in srv.log()


# --- 6. the pipeline against moto --------------------------------------------


class DroppedRecord(AssertionError):
    """The worker found no avatar id in an S3 record of an original."""


def test_s3_event_trigger_against_moto(tmp_path, procs):  # noqa: F811 (fixture)
    """`crunchbox provision --driver aws` with pipeline.trigger = s3-event
    sets moto's bucket notification (`crunchbox-crunch`, ObjectCreated:*
    under originals/) and the crunch queue's Policy; then one
    `serve --roles web,worker --driver aws` process against moto crunches an
    upload that only moto's own event delivery tells the worker about."""
    moto = Moto(tmp_path).start()
    procs.append(moto)
    backend = Backend(moto.endpoint, "moto-key", "moto-secret")
    s3, sqs = backend.client("s3"), backend.client("sqs")
    # moto answers GetBucketNotificationConfiguration of a bucket with no
    # configuration with the root element <GetBucketNotificationResponse/>
    # (moto/s3/responses.py get_bucket_notification: EmptyResult() before
    # self.data["Action"] is set), not AWS's <NotificationConfiguration/>;
    # aws-sdk-s3 checks the root and fails ("HTTP 200"), so provision stops
    # there. A bucket that already has one (unrelated) rule gets a proper
    # answer: seed one, which provision must keep.
    s3.create_bucket(Bucket=PIPELINE_BUCKET)
    side_url = sqs.create_queue(QueueName="side")["QueueUrl"]
    side = {
        "Id": "side", "QueueArn": queue_arn(sqs, side_url), "Events": ["s3:ObjectRemoved:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "side/"}]}},
    }
    configure(s3, PIPELINE_BUCKET, side)
    done = provision(backend, tmp_path, S3_EVENT)
    assert done.returncode == 0, done.stderr
    assert "notification crunchbox-crunch" in done.stdout, done.stdout

    url = sqs.get_queue_url(QueueName=CRUNCH_QUEUE)["QueueUrl"]
    arn = queue_arn(sqs, url)
    config = s3.get_bucket_notification_configuration(Bucket=PIPELINE_BUCKET)
    check_pipeline_rule(ours(config), arn)
    assert side in config["QueueConfigurations"], config
    check_send_policy(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"], arn)
    again = provision(backend, tmp_path, S3_EVENT)
    assert again.returncode == 0, again.stderr
    assert "notification crunchbox-crunch on bucket crunchbox-uploads: found" in again.stdout, again.stdout
    assert len(s3.get_bucket_notification_configuration(Bucket=PIPELINE_BUCKET)["QueueConfigurations"]) == 2

    tier = Proc("tier", "web,worker", backend, tmp_path, S3_EVENT).start()
    procs.append(tier)
    wait_for_port(tier.web_port)
    wait_healthy(tier.web)
    ident = upload_jpeg(tier.web, jpeg())
    end = time.monotonic() + READY_DEADLINE
    while True:
        status, _, body = http("GET", f"{tier.web}/v1/avatar/{ident}")
        assert status == 200, (status, body)
        state = json.loads(body)["status"]
        assert state != "failed", body
        if state == "ready":
            break
        # moto's record, as the worker logs it when it finds no id in it.
        dropped = [e["body"] for e in tier.events("dropping a message that holds no avatar id") if ident in e["body"]]
        if dropped:
            raise DroppedRecord(f"the worker dropped moto's record of the upload: {dropped[0]}")
        assert time.monotonic() < end, f"{ident} not ready; tier log:\n{tier.log()[-4000:]}"
        time.sleep(0.5)
    status, headers, body = http("GET", f"{tier.web}/a/{ident}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg", status
    assert tier.proc.poll() is None, tier.log()
