"""The embedded SQS end to end: boto3 (JSON protocol), aws-cli, signed
Query-protocol form POSTs, STS, and a kill -9 durability check."""

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from conftest import ACCESS_KEY, REGION, SECRET_KEY

NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"


@pytest.fixture
def sqs_server(server_factory):
    return server_factory(roles="sqs").start()


def client(srv, retries=2, **kw):
    return boto3.client(
        "sqs",
        endpoint_url=srv.endpoint,
        aws_access_key_id=kw.get("access", ACCESS_KEY),
        aws_secret_access_key=kw.get("secret", SECRET_KEY),
        region_name=REGION,
        config=BotoConfig(retries={"max_attempts": retries}, connect_timeout=2, read_timeout=30),
    )


def signed(srv, service, params, secret=SECRET_KEY):
    """A form POST signed with botocore's SigV4Auth; returns (status, body)."""
    body = urllib.parse.urlencode(params)
    req = AWSRequest(method="POST", url=srv.endpoint + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(ACCESS_KEY, secret), service, REGION).add_auth(req)
    prepared = req.prepare()
    http_req = urllib.request.Request(prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(http_req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_boto3_json_protocol(sqs_server):
    sqs = client(sqs_server)
    dlq = sqs.create_queue(QueueName="e2e-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 5})
    url = sqs.create_queue(QueueName="e2e", Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "60"})[
        "QueueUrl"]
    assert url == f"{sqs_server.endpoint}/000000000000/e2e"
    sent = sqs.send_message(QueueUrl=url, MessageBody="hi", MessageAttributes={
        "k": {"DataType": "String", "StringValue": "v"}})
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, MessageAttributeNames=["All"],
                              MessageSystemAttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert got["MessageId"] == sent["MessageId"]
    assert got["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert got["Attributes"]["ApproximateReceiveCount"] == "1"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=got["ReceiptHandle"], VisibilityTimeout=30)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 5

    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="nope")
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="junk")
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName="e2e", Attributes={"VisibilityTimeout": "61"})
    with pytest.raises(sqs.exceptions.InvalidMessageContents):
        sqs.send_message(QueueUrl=url, MessageBody="\x00")


def test_bad_credentials(sqs_server):
    from botocore.exceptions import ClientError
    for kw, code in [({"secret": "wrong"}, "SignatureDoesNotMatch"), ({"access": "nobody"}, "InvalidClientTokenId")]:
        with pytest.raises(ClientError) as e:
            client(sqs_server, **kw).list_queues()
        assert e.value.response["Error"]["Code"] == code


def test_aws_cli_and_sts(sqs_server):
    out = sqs_server.aws_cli("sqs", "create-queue", "--queue-name", "cli-q")
    url = json.loads(out.stdout)["QueueUrl"]
    sqs_server.aws_cli("sqs", "send-message", "--queue-url", url, "--message-body", "from the cli")
    out = sqs_server.aws_cli("sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "5")
    msg = json.loads(out.stdout)["Messages"][0]
    assert msg["Body"] == "from the cli"
    sqs_server.aws_cli("sqs", "delete-message", "--queue-url", url, "--receipt-handle", msg["ReceiptHandle"])
    out = sqs_server.aws_cli("sqs", "list-queues")
    assert json.loads(out.stdout)["QueueUrls"] == [url]
    out = sqs_server.aws_cli("sqs", "get-queue-url", "--queue-name", "missing", check=False)
    assert out.returncode != 0
    assert "NonExistentQueue" in out.stderr or "QueueDoesNotExist" in out.stderr

    out = sqs_server.aws_cli("sts", "get-caller-identity")
    identity = json.loads(out.stdout)
    assert identity["Account"] == "000000000000"
    assert identity["Arn"] == "arn:aws:iam::000000000000:root"


def test_numeric_looking_account_id_from_env(server_factory):
    """A string key set through the environment stays a string however it
    looks: wave 1 exited on this account id ("found unsigned int")."""
    srv = server_factory(roles="sqs", env={"CRUNCHBOX_AWS_ACCOUNT_ID": "123456789012"}).start()
    sqs = client(srv)
    url = sqs.create_queue(QueueName="acct")["QueueUrl"]
    assert "/123456789012/acct" in url
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert arn == f"arn:aws:sqs:{REGION}:123456789012:acct"


def test_query_protocol(sqs_server):
    status, body = signed(sqs_server, "sqs", {"Action": "CreateQueue", "QueueName": "query-q",
                                              "Attribute.1.Name": "DelaySeconds", "Attribute.1.Value": "0"})
    assert status == 200, body
    url = ET.fromstring(body).find(f"{NS}CreateQueueResult/{NS}QueueUrl").text
    status, body = signed(sqs_server, "sqs", {"Action": "SendMessage", "QueueUrl": url, "MessageBody": "<x>&\r\n"})
    assert status == 200, body
    status, body = signed(sqs_server, "sqs", {"Action": "ReceiveMessage", "QueueUrl": url, "AttributeName.1": "All"})
    assert status == 200, body
    msg = ET.fromstring(body).find(f"{NS}ReceiveMessageResult/{NS}Message")
    assert msg.find(f"{NS}Body").text == "<x>&\r\n"
    names = [a.find(f"{NS}Name").text for a in msg.findall(f"{NS}Attribute")]
    assert "ApproximateReceiveCount" in names
    handle = msg.find(f"{NS}ReceiptHandle").text
    status, body = signed(sqs_server, "sqs", {"Action": "DeleteMessage", "QueueUrl": url, "ReceiptHandle": handle})
    assert status == 200, body

    status, body = signed(sqs_server, "sqs", {"Action": "GetQueueUrl", "QueueName": "missing"})
    assert status == 400
    err = ET.fromstring(body).find(f"{NS}Error")
    assert err.find(f"{NS}Code").text == "AWS.SimpleQueueService.NonExistentQueue"
    status, body = signed(sqs_server, "sqs", {"Action": "ListQueues"}, secret="wrong")
    assert status == 403
    assert "SignatureDoesNotMatch" in body

    status, body = signed(sqs_server, "sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    assert status == 200 and "<Account>000000000000</Account>" in body


def test_kill9_keeps_every_acknowledged_change(server_factory):
    srv = server_factory(roles="sqs").start()
    url = client(srv).create_queue(QueueName="crash", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    lock = threading.Lock()
    attempted, acked_sends, delete_attempted, acked_deletes, delivered_before = set(), set(), set(), set(), set()
    stop = threading.Event()

    def producer(n):
        sqs = client(srv, retries=1)
        i = 0
        while not stop.is_set():
            body = f"p{n}-{i}"
            i += 1
            with lock:
                attempted.add(body)
            try:
                if i % 3 == 0:
                    entries = [{"Id": f"e{j}", "MessageBody": f"{body}-{j}"} for j in range(5)]
                    with lock:
                        attempted.update(e["MessageBody"] for e in entries)
                    out = sqs.send_message_batch(QueueUrl=url, Entries=entries)
                    with lock:
                        ok_ids = {s["Id"] for s in out.get("Successful", [])}
                        acked_sends.update(e["MessageBody"] for e in entries if e["Id"] in ok_ids)
                else:
                    sqs.send_message(QueueUrl=url, MessageBody=body)
                    with lock:
                        acked_sends.add(body)
            except Exception:
                time.sleep(0.05)

    def consumer():
        sqs = client(srv, retries=1)
        while not stop.is_set():
            try:
                msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            except Exception:
                time.sleep(0.05)
                continue
            for m in msgs:
                with lock:
                    delivered_before.add(m["Body"])
                    delete_attempted.add(m["Body"])
                try:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                    with lock:
                        acked_deletes.add(m["Body"])
                except Exception:
                    pass

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(4)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked_sends) > 50 and len(acked_deletes) > 10, (len(acked_sends), len(acked_deletes))

    srv.start()
    sqs = client(srv)
    after = set()
    empty_polls = 0
    deadline = time.monotonic() + 60
    while empty_polls < 3 and time.monotonic() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            busy = int(counts["ApproximateNumberOfMessagesNotVisible"]) + int(
                counts["ApproximateNumberOfMessagesDelayed"])
            empty_polls = empty_polls + 1 if busy == 0 else 0
            continue
        for m in msgs:
            after.add(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    lost = acked_sends - after - delete_attempted
    assert not lost, f"{len(lost)} acknowledged sends lost, e.g. {sorted(lost)[:5]}"
    resurrected = acked_deletes & after
    assert not resurrected, f"acknowledged deletes came back: {sorted(resurrected)[:5]}"
    invented = after - attempted
    assert not invented, f"delivered but never sent: {sorted(invented)[:5]}"


def test_kill9_right_after_queue_changes_keeps_them(server_factory):
    """CreateQueue, SetQueueAttributes, TagQueue and UntagQueue answer only
    once their change is durable: a kill -9 just after the answer keeps it
    (the power-loss run once lost an acknowledged CreateQueue)."""
    srv = server_factory(roles="sqs").start()
    sqs = client(srv)
    for round_ in range(5):
        names = [f"meta-{round_}-{i}" for i in range(4)]
        for name in names:
            url = sqs.create_queue(QueueName=name, tags={"drop": "me"})["QueueUrl"]
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(100 + round_)})
            sqs.tag_queue(QueueUrl=url, Tags={"round": str(round_)})
            sqs.untag_queue(QueueUrl=url, TagKeys=["drop"])
        srv.kill9()
        srv.start()
        sqs = client(srv)
        for name in names:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
            assert attrs["VisibilityTimeout"] == str(100 + round_), name
            assert sqs.list_queue_tags(QueueUrl=url).get("Tags") == {"round": str(round_)}, name


def drain(sqs, url):
    """Every message left in `url` (received and deleted), by body."""
    bodies, empty = [], 0
    while empty < 2:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        empty = 0 if msgs else empty + 1
        for m in msgs:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def test_kill9_during_a_message_move_task(server_factory):
    """A redrive killed mid-way resumes after the restart: every message is
    in exactly one queue, none lost, none doubled."""
    srv = server_factory(roles="sqs").start()
    sqs = client(srv)
    dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    live = sqs.create_queue(
        QueueName="live",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})},
    )["QueueUrl"]
    sent = [f"m{i}" for i in range(40)]
    for i in range(0, len(sent), 10):
        sqs.send_message_batch(QueueUrl=live, Entries=[{"Id": b, "MessageBody": b} for b in sent[i:i + 10]])
    # Received once each (visible again at once), then moved on a later receive.
    def dead_count():
        attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    deadline = time.monotonic() + 30
    while dead_count() < len(sent) and time.monotonic() < deadline:
        sqs.receive_message(QueueUrl=live, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert dead_count() == len(sent)

    sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        task = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
        if task["ApproximateNumberOfMessagesMoved"] >= 5:
            break
        time.sleep(0.1)
    assert task["Status"] == "RUNNING" and task["ApproximateNumberOfMessagesMoved"] < len(sent), task
    srv.kill9()

    srv.start()
    sqs = client(srv)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
        if task["Status"] != "RUNNING":
            break
        time.sleep(0.2)
    moved_back, left = drain(sqs, live), drain(sqs, dlq)
    assert task["Status"] == "COMPLETED", task
    assert task["ApproximateNumberOfMessagesMoved"] == len(sent)
    assert task["ApproximateNumberOfMessagesToMove"] == len(sent)
    assert sorted(moved_back) == sorted(sent), (len(moved_back), len(left))
    assert left == []
