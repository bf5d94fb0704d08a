"""One SQS script, run against crunchbox and against moto's server; the
answers are compared field by field (ids, receipt handles, timestamps and
hosts aside).

Differences from moto kept on purpose (each is where crunchbox follows AWS's
documentation and moto does not, or where the two are both allowed):

- ReceiptHandleIsInvalid answers 404, the status AWS's service model gives
  it; moto answers 400.
- Attribute ranges are checked: CreateQueue/SetQueueAttributes with e.g.
  DelaySeconds=901 fail with InvalidAttributeValue (AWS); moto accepts them.
- Message bodies with characters outside SQS's allowed set (#x9 | #xA | #xD |
  #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF) fail with
  InvalidMessageContents (AWS); moto stores them.
- Unknown attribute names in SetQueueAttributes fail with InvalidAttributeName
  (AWS); moto ignores them.
- RedrivePolicy is returned as compact JSON, as AWS does
  ({"deadLetterTargetArn":"…","maxReceiveCount":1}); moto adds spaces. Same
  document either way.
- A FIFO send deduplicated within the 5-minute window answers with the
  original message's MessageId and SequenceNumber (as ElasticMQ does); moto
  mints a new MessageId for the discarded duplicate.
- DeleteMessage with a receipt handle from an earlier receive of the same
  message deletes it. AWS says such a delete "might not" take effect; always
  deleting means an acknowledged delete is never undone by a redelivery that
  raced it. (Not in the script: moto behaves the same.)
- SendMessageBatch to a FIFO queue answers an entry without MessageGroupId
  (or without a deduplication id where content-based deduplication is off)
  as a Failed entry, the rest of the batch going through: AWS's batch
  actions report per entry. moto fails the whole request.
- MessageDeduplicationId on a standard queue is InvalidParameterValue ("The
  request include parameter that is not valid for this queue type", AWS's
  rule); moto ignores the field.
- MessageRetentionPeriod below 60 is InvalidAttributeValue (AWS's documented
  range is 60 to 1,209,600); moto accepts 1.
- ReceiptHandleIsInvalid says `The input receipt handle "X" is not a valid
  receipt handle.` (AWS's text); moto says "The input receipt handle is
  invalid."
- Out of the script, moto's suite also differs on: queues are one namespace
  for every region here (AWS and moto keep one per region).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, REGION, SECRET_KEY, free_port, wait_for_port

VOLATILE = {"MessageId", "ReceiptHandle", "RequestId", "ResponseMetadata", "SentTimestamp",
            "ApproximateFirstReceiveTimestamp", "CreatedTimestamp", "LastModifiedTimestamp", "SequenceNumber",
            "SenderId"}

def _ours_rejects(code):
    """crunchbox rejects with `code` where moto accepts (AWS validates)."""
    return lambda ours, moto: ours.get("Error", {}).get("Code") == code and "Error" not in moto


def _same_json_policy(ours, moto):
    a, b = ours["Attributes"]["RedrivePolicy"], moto["Attributes"]["RedrivePolicy"]
    return json.loads(a) == json.loads(b) and ", " not in a


# Step name -> predicate that holds for the difference documented above.
KNOWN = {
    "create-bad-attr": _ours_rejects("InvalidAttributeValue"),
    "send-bad-char": _ours_rejects("InvalidMessageContents"),
    "set-bad-attribute": _ours_rejects("InvalidAttributeName"),
    "redrive-policy": _same_json_policy,
    "fifo-dedup-same-id": lambda ours, moto: ours == {"same": True} and moto == {"same": False},
    "fifo-batch-no-group": lambda ours, moto: (
        [f["Code"] for f in ours.get("Failed", [])] == ["MissingParameter"]
        and [e["Id"] for e in ours.get("Successful", [])] == ["ok"]
        and moto.get("Error", {}).get("Code") == "MissingParameter"),
    "standard-dedup-id": _ours_rejects("InvalidParameterValue"),
    "create-short-retention": _ours_rejects("InvalidAttributeValue"),
    # Same code; AWS's service model gives this error 404, moto answers 400.
    "delete-junk": lambda ours, moto: (
        ours == {"Error": {"Code": "ReceiptHandleIsInvalid"}, "HTTPStatus": 404}
        and moto == {"Error": {"Code": "ReceiptHandleIsInvalid"}, "HTTPStatus": 400}),
}


def normalize(value, endpoint):
    """Drops volatile fields and the host part of queue URLs."""
    if isinstance(value, dict):
        return {k: ("<present>" if k in VOLATILE else normalize(v, endpoint)) for k, v in value.items()
                if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [normalize(v, endpoint) for v in value]
    if isinstance(value, str):
        return value.replace(endpoint, "<endpoint>").replace("123456789012", "<account>").replace(
            "000000000000", "<account>")
    return value


def call(fn, **kw):
    try:
        return fn(**kw)
    except ClientError as e:
        return {"Error": {"Code": e.response["Error"]["Code"]},
                "HTTPStatus": e.response["ResponseMetadata"]["HTTPStatusCode"]}


def script(sqs):
    """The calls to compare, in order; yields (step, answer)."""
    url = call(sqs.create_queue, QueueName="diff-q", Attributes={"VisibilityTimeout": "60"})
    yield "create", url
    url = url["QueueUrl"]
    yield "create-same", call(sqs.create_queue, QueueName="diff-q", Attributes={"VisibilityTimeout": "60"})
    yield "create-conflict", call(sqs.create_queue, QueueName="diff-q", Attributes={"VisibilityTimeout": "61"})
    yield "create-bad-name", call(sqs.create_queue, QueueName="bad name")
    yield "create-bad-attr", call(sqs.create_queue, QueueName="x", Attributes={"DelaySeconds": "901"})
    yield "get-url", call(sqs.get_queue_url, QueueName="diff-q")
    yield "get-url-missing", call(sqs.get_queue_url, QueueName="missing-q")
    attrs = {
        "s": {"DataType": "String", "StringValue": "v1"},
        "n": {"DataType": "Number", "StringValue": "42"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        "c": {"DataType": "String.custom", "StringValue": "ünïcode"},
    }
    yield "send", call(sqs.send_message, QueueUrl=url, MessageBody="hello ✓ world", MessageAttributes=attrs)
    bad = call(sqs.create_queue, QueueName="bad-chars")["QueueUrl"]
    yield "send-bad-char", call(sqs.send_message, QueueUrl=bad, MessageBody="bad \x01")
    yield "send-too-big", call(sqs.send_message, QueueUrl=url, MessageBody="x" * (1024 * 1024 + 1))
    recv = call(sqs.receive_message, QueueUrl=url, AttributeNames=["All"], MessageAttributeNames=["All"],
                MaxNumberOfMessages=10)
    yield "receive", recv
    handle = recv["Messages"][0]["ReceiptHandle"]
    yield "attributes-inflight", call(sqs.get_queue_attributes, QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "VisibilityTimeout"])
    yield "change-visibility", call(sqs.change_message_visibility, QueueUrl=url, ReceiptHandle=handle,
                                    VisibilityTimeout=0)
    yield "delete", call(sqs.delete_message, QueueUrl=url, ReceiptHandle=handle)
    yield "delete-junk", call(sqs.delete_message, QueueUrl=url, ReceiptHandle="junk")
    yield "batch-send", call(sqs.send_message_batch, QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one"},
        {"Id": "b", "MessageBody": "two", "DelaySeconds": 0},
    ])
    yield "batch-empty", call(sqs.send_message_batch, QueueUrl=url, Entries=[])
    yield "batch-dup", call(sqs.send_message_batch, QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one"}, {"Id": "a", "MessageBody": "two"}])
    yield "batch-too-many", call(sqs.send_message_batch, QueueUrl=url, Entries=[
        {"Id": f"e{i}", "MessageBody": "x"} for i in range(11)])
    got = call(sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=10)
    yield "receive-batch", {"count": len(got.get("Messages", [])),
                            "bodies": sorted(m["Body"] for m in got.get("Messages", []))}
    entries = [{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got["Messages"])]
    yield "batch-delete", call(sqs.delete_message_batch, QueueUrl=url, Entries=entries)
    yield "attributes-all", call(sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["All"])
    yield "set-attributes", call(sqs.set_queue_attributes, QueueUrl=url, Attributes={"DelaySeconds": "5"})
    yield "set-bad-attribute", call(sqs.set_queue_attributes, QueueUrl=url, Attributes={"Nope": "1"})
    yield "tag", call(sqs.tag_queue, QueueUrl=url, Tags={"team": "avatars", "env": "dev"})
    yield "untag", call(sqs.untag_queue, QueueUrl=url, TagKeys=["env"])
    yield "list-tags", call(sqs.list_queue_tags, QueueUrl=url)
    yield "list-queues", call(sqs.list_queues, QueueNamePrefix="diff-")

    dlq = call(sqs.create_queue, QueueName="diff-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    src = call(sqs.create_queue, QueueName="diff-src", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    yield "redrive-policy", call(sqs.get_queue_attributes, QueueUrl=src, AttributeNames=["RedrivePolicy"])
    yield "dlq-sources", call(sqs.list_dead_letter_source_queues, QueueUrl=dlq)
    call(sqs.send_message, QueueUrl=src, MessageBody="poison")
    first = call(sqs.receive_message, QueueUrl=src, VisibilityTimeout=0)
    yield "redrive-first", {"count": len(first.get("Messages", []))}
    second = call(sqs.receive_message, QueueUrl=src)
    yield "redrive-second", {"count": len(second.get("Messages", []))}
    dead = call(sqs.receive_message, QueueUrl=dlq, WaitTimeSeconds=2)
    yield "redrive-dead", {"bodies": [m["Body"] for m in dead.get("Messages", [])]}

    fifo = call(sqs.create_queue, QueueName="diff.fifo", Attributes={"FifoQueue": "true"})
    yield "fifo-create", fifo
    fifo = fifo["QueueUrl"]
    one = call(sqs.send_message, QueueUrl=fifo, MessageBody="f1", MessageGroupId="g", MessageDeduplicationId="d1")
    two = call(sqs.send_message, QueueUrl=fifo, MessageBody="f1", MessageGroupId="g", MessageDeduplicationId="d1")
    yield "fifo-send", one
    yield "fifo-dedup-same-id", {"same": one["MessageId"] == two["MessageId"]}
    yield "fifo-no-group", call(sqs.send_message, QueueUrl=fifo, MessageBody="x", MessageDeduplicationId="z")
    yield "fifo-no-dedup", call(sqs.send_message, QueueUrl=fifo, MessageBody="x", MessageGroupId="g")
    call(sqs.send_message, QueueUrl=fifo, MessageBody="f2", MessageGroupId="g", MessageDeduplicationId="d2")
    got = call(sqs.receive_message, QueueUrl=fifo, MaxNumberOfMessages=10, AttributeNames=["All"])
    yield "fifo-receive", [m["Body"] for m in got.get("Messages", [])]
    yield "fifo-delay-zero", call(sqs.send_message, QueueUrl=fifo, MessageBody="z", MessageGroupId="g",
                                  MessageDeduplicationId="d0", DelaySeconds=0)
    yield "fifo-delay-five", call(sqs.send_message, QueueUrl=fifo, MessageBody="z", MessageGroupId="g",
                                  MessageDeduplicationId="d5", DelaySeconds=5)
    yield "fifo-batch-no-group", call(sqs.send_message_batch, QueueUrl=fifo, Entries=[
        {"Id": "ok", "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "b1"},
        {"Id": "nogroup", "MessageBody": "b", "MessageDeduplicationId": "b2"}])
    yield "standard-dedup-id", call(sqs.send_message, QueueUrl=url, MessageBody="x", MessageDeduplicationId="d")
    yield "create-short-retention", call(sqs.create_queue, QueueName="short",
                                         Attributes={"MessageRetentionPeriod": "1"})
    yield "create-standard-fifo-false", call(sqs.create_queue, QueueName="plain",
                                             Attributes={"FifoQueue": "false"})
    yield "create-name-with-space", call(sqs.create_queue, QueueName="spaced",
                                         Attributes={"VisibilityTimeout ": "45"})
    yield "spaced-attribute", call(sqs.get_queue_attributes, QueueUrl=url.replace("diff-q", "spaced"),
                                   AttributeNames=["VisibilityTimeout"])
    yield "bare-name-url", call(sqs.send_message, QueueUrl="diff-q", MessageBody="by name")
    yield "bad-address", call(sqs.get_queue_attributes, QueueUrl="http://not-a-queue-address")
    yield "batch-entry-too-big", call(sqs.send_message_batch, QueueUrl=url, Entries=[
        {"Id": "big", "MessageBody": "x" * (1024 * 1024 + 1)}])
    yield "batch-bad-delay", call(sqs.send_message_batch, QueueUrl=url, Entries=[
        {"Id": "late", "MessageBody": "x", "DelaySeconds": 1800}])

    # An older receive's handle still changes visibility (AWS-verified in moto).
    old = call(sqs.create_queue, QueueName="old-handle", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    call(sqs.send_message, QueueUrl=old, MessageBody="o")
    first = call(sqs.receive_message, QueueUrl=old)["Messages"][0]
    time.sleep(1.5)
    call(sqs.receive_message, QueueUrl=old, WaitTimeSeconds=2)
    yield "old-handle-visibility", call(sqs.change_message_visibility, QueueUrl=old,
                                        ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=30)

    yield "permission-add", call(sqs.add_permission, QueueUrl=url, Label="l1", AWSAccountIds=["111111111111"],
                                 Actions=["SendMessage"])
    yield "permission-add-again", call(sqs.add_permission, QueueUrl=url, Label="l1",
                                       AWSAccountIds=["111111111111"], Actions=["SendMessage"])
    yield "permission-too-many", call(sqs.add_permission, QueueUrl=url, Label="l2",
                                      AWSAccountIds=["111111111111"], Actions=["SendMessage"] * 8)
    yield "permission-policy", json.loads(call(sqs.get_queue_attributes, QueueUrl=url,
                                               AttributeNames=["Policy"])["Attributes"]["Policy"])
    yield "permission-remove-missing", call(sqs.remove_permission, QueueUrl=url, Label="nope")
    yield "permission-remove", call(sqs.remove_permission, QueueUrl=url, Label="l1")
    yield "purge", call(sqs.purge_queue, QueueUrl=url)
    yield "delete-queue", call(sqs.delete_queue, QueueUrl=url)
    yield "deleted-queue-send", call(sqs.send_message, QueueUrl=url, MessageBody="x")


def client(endpoint):
    return boto3.client("sqs", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION,
                        config=BotoConfig(retries={"max_attempts": 1}))


@pytest.fixture
def moto_endpoint():
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(exe), "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def run(endpoint):
    return [(step, normalize(answer, endpoint)) for step, answer in script(client(endpoint))]


def test_matches_moto(server_factory, moto_endpoint):
    srv = server_factory(roles="sqs").start()
    ours = run(srv.endpoint)
    theirs = run(moto_endpoint)
    assert [s for s, _ in ours] == [s for s, _ in theirs]
    differences = []
    for (step, a), (_, b) in zip(ours, theirs):
        if a == b:
            continue
        known = KNOWN.get(step)
        if known is not None and known(a, b):
            continue
        differences.append(f"{step}:\n  crunchbox: {a}\n  moto:      {b}")
    assert not differences, "\n".join(differences)
