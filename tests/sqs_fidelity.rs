//! The embedded SQS where AWS's documentation sets rules that moto's suite
//! checks: permissions, message move tasks (DLQ redrive) and FIFO's
//! deduplication and group rules, through the official aws-sdk-sqs.

mod common;

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{ListMessageMoveTasksResultEntry, QueueAttributeName};
use common::sqs::{create, server};

async fn attributes(client: &Client, url: &str) -> std::collections::HashMap<QueueAttributeName, String> {
    let out = client.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::All).send().await;
    out.expect("attributes").attributes.unwrap_or_default()
}

fn arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:000000000000:{name}")
}

/// The error code of a failed call.
fn code<T, E: ProvideErrorMetadata>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => panic!("the call should have failed"),
        Err(e) => e.code().unwrap_or("<none>").to_owned(),
    }
}

#[tokio::test]
async fn permissions_are_statements_of_the_policy() {
    let (server, client) = server().await;
    let url = create(&client, "shared", &[]).await;
    client
        .add_permission()
        .queue_url(&url)
        .label("senders")
        .aws_account_ids("111111111111")
        .aws_account_ids("222222222222")
        .actions("SendMessage")
        .send()
        .await
        .unwrap();
    client
        .add_permission()
        .queue_url(&url)
        .label("readers")
        .aws_account_ids("333333333333")
        .actions("ReceiveMessage")
        .actions("DeleteMessage")
        .send()
        .await
        .unwrap();
    let not_an_object = client.set_queue_attributes().queue_url(&url).attributes(QueueAttributeName::Policy, "[1]");
    assert_eq!(code(not_an_object.send().await), "InvalidAttributeValue");
    let policy: serde_json::Value =
        serde_json::from_str(&attributes(&client, &url).await[&QueueAttributeName::Policy]).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0]["Sid"], "senders");
    assert_eq!(
        statements[0]["Principal"]["AWS"],
        serde_json::json!(["arn:aws:iam::111111111111:root", "arn:aws:iam::222222222222:root"])
    );
    assert_eq!(statements[0]["Action"], "SQS:SendMessage");
    assert_eq!(statements[0]["Resource"], arn("shared"));
    assert_eq!(statements[1]["Action"], serde_json::json!(["SQS:ReceiveMessage", "SQS:DeleteMessage"]));

    // AWS's answers to bad grants; none of them changes the policy.
    let again = client.add_permission().queue_url(&url).label("senders").aws_account_ids("1").actions("*");
    assert_eq!(code(again.send().await), "InvalidParameterValue");
    let bad_action = client.add_permission().queue_url(&url).label("x").aws_account_ids("1").actions("CreateQueue");
    assert_eq!(code(bad_action.send().await), "InvalidParameterValue");
    let mut many = client.add_permission().queue_url(&url).label("many").aws_account_ids("1");
    for _ in 0..8 {
        many = many.actions("SendMessage");
    }
    assert_eq!(code(many.send().await), "OverLimit");
    let no_actions = client.add_permission().queue_url(&url).label("none").aws_account_ids("1");
    assert_eq!(code(no_actions.send().await), "MissingParameter");
    let bad_label = client.add_permission().queue_url(&url).label("has space").aws_account_ids("1").actions("*");
    assert_eq!(code(bad_label.send().await), "InvalidParameterValue");

    assert_eq!(code(client.remove_permission().queue_url(&url).label("nobody").send().await), "InvalidParameterValue");
    client.remove_permission().queue_url(&url).label("senders").send().await.unwrap();
    client.remove_permission().queue_url(&url).label("readers").send().await.unwrap();
    assert!(!attributes(&client, &url).await.contains_key(&QueueAttributeName::Policy), "no statements, no policy");

    let missing = url.replace("shared", "missing");
    let grant = client.add_permission().queue_url(&missing).label("l").aws_account_ids("1").actions("*");
    assert_eq!(code(grant.send().await), "AWS.SimpleQueueService.NonExistentQueue");
    let revoke = client.remove_permission().queue_url(&missing).label("l");
    assert_eq!(code(revoke.send().await), "AWS.SimpleQueueService.NonExistentQueue");
    server.shutdown().await;
}

/// `live` dead-letters into `dead` after one receive; `n` messages end up
/// in `dead`. Returns (live url, dead url).
async fn dead_lettered(client: &Client, n: usize) -> (String, String) {
    let dead = create(client, "dead", &[]).await;
    let policy = format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":1}}"#, arn("dead"));
    let live = create(client, "live", &[(QueueAttributeName::RedrivePolicy, &policy)]).await;
    for i in 0..n {
        client.send_message().queue_url(&live).message_body(format!("m{i}")).send().await.unwrap();
    }
    // Received once each (and visible again at once); the next receive
    // finds them over maxReceiveCount and moves them.
    let mut received = 0;
    while received < n {
        let out = client.receive_message().queue_url(&live).max_number_of_messages(10).visibility_timeout(0);
        received += out.send().await.unwrap().messages.unwrap_or_default().len();
    }
    let left = client.receive_message().queue_url(&live).max_number_of_messages(10).send().await.unwrap();
    assert!(left.messages.unwrap_or_default().is_empty());
    assert_eq!(attributes(client, &dead).await[&QueueAttributeName::ApproximateNumberOfMessages], n.to_string());
    (live, dead)
}

/// The newest task of `source`, once it is no longer RUNNING.
async fn finished_task(client: &Client, source: &str) -> ListMessageMoveTasksResultEntry {
    for _ in 0..300 {
        let out = client.list_message_move_tasks().source_arn(source).send().await.unwrap();
        let task = out.results.unwrap_or_default().remove(0);
        if task.status.as_deref() != Some("RUNNING") {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the move task did not finish");
}

async fn bodies(client: &Client, url: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = client.receive_message().queue_url(url).max_number_of_messages(10).visibility_timeout(300);
        let got = got.send().await.unwrap().messages.unwrap_or_default();
        if got.is_empty() {
            break;
        }
        out.extend(got.into_iter().filter_map(|m| m.body));
    }
    out.sort();
    out
}

#[tokio::test]
async fn move_task_sends_dead_letters_back_where_they_came_from() {
    let (server, client) = server().await;
    let (live, dead) = dead_lettered(&client, 3).await;
    let handle = client.start_message_move_task().source_arn(arn("dead")).send().await.unwrap().task_handle;
    assert!(handle.is_some());
    let task = finished_task(&client, &arn("dead")).await;
    assert_eq!(task.status.as_deref(), Some("COMPLETED"));
    assert_eq!(task.approximate_number_of_messages_moved, 3);
    assert_eq!(task.approximate_number_of_messages_to_move, Some(3));
    assert_eq!(task.source_arn.as_deref(), Some(arn("dead").as_str()));
    assert_eq!(task.destination_arn, None, "none was given");
    assert_eq!(task.task_handle, None, "only a running task shows its handle");
    assert!(task.started_timestamp > 0);
    assert_eq!(bodies(&client, &live).await, ["m0", "m1", "m2"]);
    assert!(bodies(&client, &dead).await.is_empty());
    server.shutdown().await;
}

/// Creates `elsewhere` and starts moving `dead` there at one message a
/// second; returns its URL and the task handle.
async fn slow_move_to_elsewhere(client: &Client) -> (String, String) {
    let elsewhere = create(client, "elsewhere", &[]).await;
    let start = client
        .start_message_move_task()
        .source_arn(arn("dead"))
        .destination_arn(arn("elsewhere"))
        .max_number_of_messages_per_second(1);
    (elsewhere, start.send().await.unwrap().task_handle.unwrap())
}

#[tokio::test]
async fn move_task_to_a_destination_at_a_rate_and_cancelled() {
    let (server, client) = server().await;
    let (_live, dead) = dead_lettered(&client, 6).await;
    let (elsewhere, handle) = slow_move_to_elsewhere(&client).await;
    let listed = client.list_message_move_tasks().source_arn(arn("dead")).send().await.unwrap();
    let task = listed.results.unwrap().remove(0);
    assert_eq!(task.status.as_deref(), Some("RUNNING"));
    assert_eq!(task.task_handle.as_deref(), Some(handle.as_str()));
    assert_eq!(task.destination_arn.as_deref(), Some(arn("elsewhere").as_str()));
    assert_eq!(task.max_number_of_messages_per_second, Some(1));
    // One running task per source.
    let second = client.start_message_move_task().source_arn(arn("dead")).send().await;
    assert_eq!(code(second), "AWS.SimpleQueueService.UnsupportedOperation");

    let cancelled = client.cancel_message_move_task().task_handle(&handle).send().await.unwrap();
    let moved = cancelled.approximate_number_of_messages_moved;
    // At one message a second, a task cancelled right away cannot have moved
    // all six (the move runs on a one-second tick).
    assert!(moved < 6, "moved {moved}");
    let task = finished_task(&client, &arn("dead")).await;
    assert_eq!(task.status.as_deref(), Some("CANCELLED"));
    assert_eq!(task.approximate_number_of_messages_moved, moved);
    let again = client.cancel_message_move_task().task_handle(&handle).send().await;
    assert_eq!(code(again), "AWS.SimpleQueueService.UnsupportedOperation");
    assert_eq!(
        code(client.cancel_message_move_task().task_handle("no-such-task").send().await),
        "ResourceNotFoundException"
    );

    // Nothing was lost or doubled: every message is in one of the two queues.
    let mut all = bodies(&client, &elsewhere).await;
    assert_eq!(all.len() as i64, moved);
    all.extend(bodies(&client, &dead).await);
    all.sort();
    assert_eq!(all, ["m0", "m1", "m2", "m3", "m4", "m5"]);

    // Up to ten tasks, newest first.
    for _ in 0..3 {
        client.start_message_move_task().source_arn(arn("dead")).send().await.unwrap();
        finished_task(&client, &arn("dead")).await;
    }
    let listed = client.list_message_move_tasks().source_arn(arn("dead")).max_results(10).send().await.unwrap();
    let statuses: Vec<_> = listed.results.unwrap().into_iter().filter_map(|t| t.status).collect();
    assert_eq!(statuses, ["COMPLETED", "COMPLETED", "COMPLETED", "CANCELLED"]);
    server.shutdown().await;
}

#[tokio::test]
async fn move_task_fails_when_its_destination_is_deleted() {
    let (server, client) = server().await;
    let (_live, dead) = dead_lettered(&client, 4).await;
    let (elsewhere, _) = slow_move_to_elsewhere(&client).await;
    client.delete_queue().queue_url(&elsewhere).send().await.unwrap();
    let task = finished_task(&client, &arn("dead")).await;
    assert_eq!(task.status.as_deref(), Some("FAILED"));
    assert!(task.failure_reason.is_some());
    // What had not moved yet is still in the dead-letter queue.
    let left = bodies(&client, &dead).await.len() as i64;
    assert_eq!(left + task.approximate_number_of_messages_moved, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn move_task_sources_and_destinations_are_checked() {
    let (server, client) = server().await;
    dead_lettered(&client, 1).await;
    let not_a_dlq = client.start_message_move_task().source_arn(arn("live")).send().await;
    assert_eq!(code(not_a_dlq), "InvalidParameterValue");
    let missing = client.start_message_move_task().source_arn(arn("nope")).send().await;
    assert_eq!(code(missing), "ResourceNotFoundException");
    let missing_dest = client.start_message_move_task().source_arn(arn("dead")).destination_arn(arn("nope"));
    assert_eq!(code(missing_dest.send().await), "ResourceNotFoundException");
    let itself = client.start_message_move_task().source_arn(arn("dead")).destination_arn(arn("dead"));
    assert_eq!(code(itself.send().await), "InvalidParameterValue");
    let rate = client.start_message_move_task().source_arn(arn("dead")).max_number_of_messages_per_second(501);
    assert_eq!(code(rate.send().await), "InvalidParameterValue");
    let bad_arn = client.start_message_move_task().source_arn("not-an-arn").send().await;
    assert_eq!(code(bad_arn), "InvalidParameterValue");
    let list = client.list_message_move_tasks().source_arn(arn("nope")).send().await;
    assert_eq!(code(list), "ResourceNotFoundException");
    server.shutdown().await;
}

#[tokio::test]
async fn move_task_resumes_after_a_restart() {
    let (mut server, client) = server().await;
    dead_lettered(&client, 4).await;
    let start = client.start_message_move_task().source_arn(arn("dead")).max_number_of_messages_per_second(1);
    start.send().await.unwrap();
    server.restart().await;
    let client = server.sqs().await;
    let task = finished_task(&client, &arn("dead")).await;
    assert_eq!(task.status.as_deref(), Some("COMPLETED"));
    assert_eq!(task.approximate_number_of_messages_moved, 4);
    let live = client.get_queue_url().queue_name("live").send().await.unwrap().queue_url.unwrap();
    assert_eq!(bodies(&client, &live).await, ["m0", "m1", "m2", "m3"]);
    server.shutdown().await;
}

fn fifo_send<'a>(
    client: &'a Client,
    url: &'a str,
    body: &'a str,
    group: &'a str,
    dedup: &'a str,
) -> aws_sdk_sqs::operation::send_message::builders::SendMessageFluentBuilder {
    client.send_message().queue_url(url).message_body(body).message_group_id(group).message_deduplication_id(dedup)
}

#[tokio::test]
async fn fifo_deduplication_window_and_scope() {
    let (server, client) = server().await;
    // Per queue (the default): an id repeats nowhere for five minutes, even
    // once its message was deleted.
    let url = create(&client, "q.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;
    let first = fifo_send(&client, &url, "one", "A", "d1").send().await.unwrap();
    let got = client.receive_message().queue_url(&url).send().await.unwrap().messages.unwrap().remove(0);
    client.delete_message().queue_url(&url).receipt_handle(got.receipt_handle.unwrap()).send().await.unwrap();
    let again = fifo_send(&client, &url, "one again", "B", "d1").send().await.unwrap();
    assert_eq!(again.message_id, first.message_id);
    assert!(client.receive_message().queue_url(&url).send().await.unwrap().messages.unwrap_or_default().is_empty());

    // Per message group: the same id in another group is another message.
    let url = create(
        &client,
        "hi.fifo",
        &[
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::DeduplicationScope, "messageGroup"),
            (QueueAttributeName::FifoThroughputLimit, "perMessageGroupId"),
        ],
    )
    .await;
    let a = fifo_send(&client, &url, "a", "A", "same").send().await.unwrap();
    let b = fifo_send(&client, &url, "b", "B", "same").send().await.unwrap();
    let a_again = fifo_send(&client, &url, "a again", "A", "same").send().await.unwrap();
    assert_ne!(a.message_id, b.message_id);
    assert_eq!(a.message_id, a_again.message_id);
    let got = client.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    let mut got: Vec<_> = got.messages.unwrap().into_iter().filter_map(|m| m.body).collect();
    got.sort();
    assert_eq!(got, ["a", "b"]);

    // Per-group throughput needs per-group deduplication.
    let bad = client
        .create_queue()
        .queue_name("bad.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::FifoThroughputLimit, "perMessageGroupId")
        .send()
        .await;
    assert_eq!(code(bad), "InvalidAttributeValue");
    let set = client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::DeduplicationScope, "queue")
        .send()
        .await;
    assert_eq!(code(set), "InvalidAttributeValue");
    server.shutdown().await;
}

#[tokio::test]
async fn fifo_groups_block_while_in_flight_but_not_while_delayed() {
    let (server, client) = server().await;
    let url = create(
        &client,
        "slow.fifo",
        &[(QueueAttributeName::FifoQueue, "true"), (QueueAttributeName::DelaySeconds, "600")],
    )
    .await;
    fifo_send(&client, &url, "delayed", "A", "1").send().await.unwrap();
    // FIFO has no per-message delay: an explicit 0 still takes the queue's.
    fifo_send(&client, &url, "delayed too", "A", "0").delay_seconds(0).send().await.unwrap();
    let delayed = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    assert_eq!(delayed.attributes.unwrap()[&QueueAttributeName::ApproximateNumberOfMessagesDelayed], "2");
    let set = client.set_queue_attributes().queue_url(&url).attributes(QueueAttributeName::DelaySeconds, "0");
    set.send().await.unwrap();
    fifo_send(&client, &url, "ready", "A", "2").send().await.unwrap();
    fifo_send(&client, &url, "next", "A", "3").send().await.unwrap();
    // The delayed head holds nothing back; the in-flight one does.
    let got = client.receive_message().queue_url(&url).send().await.unwrap().messages.unwrap();
    assert_eq!(got[0].body.as_deref(), Some("ready"));
    let none = client.receive_message().queue_url(&url).send().await.unwrap();
    assert!(none.messages.unwrap_or_default().is_empty(), "group A waits for the in-flight message");
    client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(got[0].receipt_handle.clone().unwrap())
        .send()
        .await
        .unwrap();
    let got = client.receive_message().queue_url(&url).send().await.unwrap().messages.unwrap();
    assert_eq!(got[0].body.as_deref(), Some("next"));

    // A batch answers per entry: one good, one without a group id.
    let batch = client
        .send_message_batch()
        .queue_url(&url)
        .entries(
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id("good")
                .message_body("g")
                .message_group_id("B")
                .message_deduplication_id("b1")
                .build()
                .unwrap(),
        )
        .entries(
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id("nogroup")
                .message_body("n")
                .message_deduplication_id("b2")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(batch.successful.len(), 1);
    assert_eq!(batch.failed[0].id, "nogroup");
    assert_eq!(batch.failed[0].code, "MissingParameter");
    server.shutdown().await;
}

/// A FIFO receive retried with its `ReceiveRequestAttemptId` (its answer
/// was lost) gets the same messages and receipt handles again, where any
/// other receive finds the group locked; once one of them is deleted the
/// id replays nothing. An id outside AWS's 128 printable characters is
/// refused.
#[tokio::test]
async fn fifo_receives_replay_by_attempt_id() {
    let (server, client) = server().await;
    let url = create(&client, "att.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;
    for (i, body) in ["m0", "m1", "m2"].into_iter().enumerate() {
        fifo_send(&client, &url, body, "g", &format!("d{i}")).send().await.unwrap();
    }
    let receive = |attempt: &str| {
        client.receive_message().queue_url(&url).max_number_of_messages(10).receive_request_attempt_id(attempt).send()
    };
    let handles = |out: aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput| -> Vec<(String, String)> {
        out.messages.unwrap_or_default().into_iter().map(|m| (m.body.unwrap(), m.receipt_handle.unwrap())).collect()
    };
    let first = handles(receive("lost-answer").await.unwrap());
    assert_eq!(first.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(), ["m0", "m1", "m2"]);
    assert_eq!(handles(receive("lost-answer").await.unwrap()), first, "the retry gets the same answer");
    assert!(handles(receive("another").await.unwrap()).is_empty(), "the group is locked");

    client.delete_message().queue_url(&url).receipt_handle(&first[0].1).send().await.unwrap();
    assert!(handles(receive("lost-answer").await.unwrap()).is_empty(), "nothing to replay once one is deleted");
    assert_eq!(code(receive(&"x".repeat(129)).await), "InvalidParameterValue");
    server.shutdown().await;
}
