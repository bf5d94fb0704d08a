//! The embedded SQS through the official aws-sdk-sqs (JSON protocol) and
//! through signed Query-protocol form POSTs, against a real server.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use common::sqs::{create, server};
use common::{ACCESS_KEY, SECRET_KEY, TestServer};
use crunchbox::cli::Role;

async fn attr(client: &Client, url: &str, name: QueueAttributeName) -> String {
    let out = client.get_queue_attributes().queue_url(url).attribute_names(name.clone()).send().await.unwrap();
    out.attributes.unwrap().get(&name).cloned().unwrap()
}

/// The calls the avatar pipeline makes, in its order.
#[tokio::test]
async fn pipeline_calls() {
    let (server, client) = server().await;
    let dlq = create(&client, "crunch-dlq", &[]).await;
    let dlq_arn = attr(&client, &dlq, QueueAttributeName::QueueArn).await;
    assert_eq!(dlq_arn, "arn:aws:sqs:us-east-1:000000000000:crunch-dlq");
    let policy = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"5"}}"#);
    let url = create(
        &client,
        "crunch",
        &[(QueueAttributeName::RedrivePolicy, &policy), (QueueAttributeName::VisibilityTimeout, "60")],
    )
    .await;
    assert_eq!(url, format!("{}/000000000000/crunch", server.endpoint()));
    let got = client.get_queue_url().queue_name("crunch").send().await.unwrap().queue_url.unwrap();
    assert_eq!(got, url);

    let sent = client.send_message().queue_url(&url).message_body("0123abcd").send().await.unwrap();
    assert_eq!(sent.md5_of_message_body.as_deref(), Some(hex_md5("0123abcd").as_str()));
    assert_eq!(attr(&client, &url, QueueAttributeName::ApproximateNumberOfMessages).await, "1");

    let out = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(20)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .unwrap();
    let msgs = out.messages.unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.body.as_deref(), Some("0123abcd"));
    assert_eq!(m.message_id, sent.message_id);
    let count = m.attributes.as_ref().unwrap().get(&MessageSystemAttributeName::ApproximateReceiveCount).unwrap();
    assert_eq!(count, "1");
    assert_eq!(attr(&client, &url, QueueAttributeName::ApproximateNumberOfMessages).await, "0");
    assert_eq!(attr(&client, &url, QueueAttributeName::ApproximateNumberOfMessagesNotVisible).await, "1");

    let handle = m.receipt_handle.clone().unwrap();
    client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&handle)
        .visibility_timeout(120)
        .send()
        .await
        .unwrap();
    client.delete_message().queue_url(&url).receipt_handle(&handle).send().await.unwrap();
    assert_eq!(attr(&client, &url, QueueAttributeName::ApproximateNumberOfMessagesNotVisible).await, "0");
    let sources = client.list_dead_letter_source_queues().queue_url(&dlq).send().await.unwrap();
    assert_eq!(sources.queue_urls, vec![url.clone()]);
    server.shutdown().await;
}

#[tokio::test]
async fn md5_of_body_matches_known_digest() {
    let (server, client) = server().await;
    let url = create(&client, "md5", &[]).await;
    let sent = client.send_message().queue_url(&url).message_body("hello").send().await.unwrap();
    assert_eq!(sent.md5_of_message_body.as_deref(), Some("5d41402abc4b2a76b9719d911017c592"));
    server.shutdown().await;
}

#[tokio::test]
async fn create_queue_is_idempotent_and_detects_conflicts() {
    let (server, client) = server().await;
    let a = create(&client, "same", &[(QueueAttributeName::VisibilityTimeout, "45")]).await;
    let b = create(&client, "same", &[(QueueAttributeName::VisibilityTimeout, "45")]).await;
    assert_eq!(a, b);
    let err = client
        .create_queue()
        .queue_name("same")
        .attributes(QueueAttributeName::VisibilityTimeout, "46")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_queue_name_exists(), "{err:?}");

    for bad in ["has space", "", "x.fifo", &"n".repeat(81)] {
        let err = client.create_queue().queue_name(bad).send().await.unwrap_err().into_service_error();
        assert_eq!(err.code(), Some("InvalidParameterValue"), "{bad}: {err:?}");
    }
    let err = client
        .create_queue()
        .queue_name("attrs")
        .attributes(QueueAttributeName::VisibilityTimeout, "43201")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_attribute_value(), "{err:?}");
    let err = client
        .create_queue()
        .queue_name("attrs")
        .attributes(QueueAttributeName::from("NoSuchThing"), "1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_attribute_name(), "{err:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn missing_queues_are_typed_errors() {
    let (server, client) = server().await;
    let err = client.get_queue_url().queue_name("nope").send().await.unwrap_err().into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");
    let url = format!("{}/000000000000/nope", server.endpoint());
    let err = client.send_message().queue_url(&url).message_body("x").send().await.unwrap_err().into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");
    let err = client.receive_message().queue_url(&url).send().await.unwrap_err().into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");

    let real = create(&client, "gone", &[]).await;
    client.delete_queue().queue_url(&real).send().await.unwrap();
    let err = client.delete_queue().queue_url(&real).send().await.unwrap_err().into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");
    let err = client.get_queue_attributes().queue_url(&real).send().await.unwrap_err().into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn list_queues_by_prefix_with_pagination() {
    let (server, client) = server().await;
    for name in ["app-a", "app-b", "app-c", "other"] {
        create(&client, name, &[]).await;
    }
    let all = client.list_queues().send().await.unwrap().queue_urls.unwrap();
    assert_eq!(all.len(), 4);
    let app = client.list_queues().queue_name_prefix("app-").send().await.unwrap().queue_urls.unwrap();
    assert_eq!(app.len(), 3);

    let first = client.list_queues().queue_name_prefix("app-").max_results(2).send().await.unwrap();
    let mut names = first.queue_urls.unwrap();
    let token = first.next_token.expect("a second page");
    let second = client.list_queues().queue_name_prefix("app-").max_results(2).next_token(token).send().await.unwrap();
    names.extend(second.queue_urls.unwrap());
    assert!(second.next_token.is_none());
    let names: Vec<_> = names.iter().map(|u| u.rsplit('/').next().unwrap().to_owned()).collect();
    assert_eq!(names, ["app-a", "app-b", "app-c"]);
    server.shutdown().await;
}

#[tokio::test]
async fn queue_attributes_get_and_set() {
    let (server, client) = server().await;
    let url = create(&client, "attrs", &[]).await;
    let all = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(all[&QueueAttributeName::VisibilityTimeout], "30");
    assert_eq!(all[&QueueAttributeName::MaximumMessageSize], "1048576");
    assert_eq!(all[&QueueAttributeName::MessageRetentionPeriod], "345600");
    assert_eq!(all[&QueueAttributeName::DelaySeconds], "0");
    assert!(all.contains_key(&QueueAttributeName::CreatedTimestamp));

    client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "5")
        .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "2")
        .send()
        .await
        .unwrap();
    assert_eq!(attr(&client, &url, QueueAttributeName::VisibilityTimeout).await, "5");
    assert_eq!(attr(&client, &url, QueueAttributeName::ReceiveMessageWaitTimeSeconds).await, "2");

    for (name, value) in
        [("DelaySeconds", "901"), ("ReceiveMessageWaitTimeSeconds", "21"), ("MaximumMessageSize", "10")]
    {
        let err = client
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::from(name), value)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_invalid_attribute_value(), "{name}={value}: {err:?}");
    }
    let err = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::from("Bogus"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_attribute_name(), "{err:?}");
    // A redrive policy must point at an existing queue.
    let err = client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:missing","maxReceiveCount":3}"#,
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn message_attributes_round_trip() {
    let (server, client) = server().await;
    let url = create(&client, "mattrs", &[]).await;
    let sent = client
        .send_message()
        .queue_url(&url)
        .message_body("with attributes")
        .message_attributes(
            "s",
            MessageAttributeValue::builder().data_type("String").string_value("v1").build().unwrap(),
        )
        .message_attributes(
            "n",
            MessageAttributeValue::builder().data_type("Number").string_value("42").build().unwrap(),
        )
        .message_attributes(
            "b",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(aws_smithy_types::Blob::new(vec![0u8, 1, 2, 255]))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let sent_md5 = sent.md5_of_message_attributes.expect("attribute md5");
    let out = client.receive_message().queue_url(&url).message_attribute_names("All").send().await.unwrap();
    let m = &out.messages.unwrap()[0];
    assert_eq!(m.md5_of_message_attributes.as_deref(), Some(sent_md5.as_str()));
    let attrs = m.message_attributes.as_ref().unwrap();
    assert_eq!(attrs["s"].string_value.as_deref(), Some("v1"));
    assert_eq!(attrs["n"].data_type, "Number");
    assert_eq!(attrs["b"].binary_value.as_ref().unwrap().as_ref(), &[0u8, 1, 2, 255]);

    // Too many attributes, a reserved name, an empty value.
    let mut req = client.send_message().queue_url(&url).message_body("x");
    for i in 0..11 {
        req = req.message_attributes(
            format!("a{i}"),
            MessageAttributeValue::builder().data_type("String").string_value("v").build().unwrap(),
        );
    }
    let err = req.send().await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    let err = client
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_attributes(
            "AWS.x",
            MessageAttributeValue::builder().data_type("String").string_value("v").build().unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_and_oversized_messages() {
    let (server, client) = server().await;
    let url = create(&client, "limits", &[]).await;
    let err = client.send_message().queue_url(&url).message_body("bad \u{1} char").send().await.unwrap_err();
    assert!(err.into_service_error().is_invalid_message_contents());
    let big = "x".repeat(1_048_577);
    let err = client.send_message().queue_url(&url).message_body(big).send().await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    let exact = "x".repeat(1_048_576);
    client.send_message().queue_url(&url).message_body(exact).send().await.expect("1 MiB fits");
    let err = client.send_message().queue_url(&url).message_body("x").delay_seconds(901).send().await.unwrap_err();
    assert_eq!(err.into_service_error().code(), Some("InvalidParameterValue"));
    let err = client.receive_message().queue_url(&url).max_number_of_messages(11).send().await.unwrap_err();
    assert_eq!(err.into_service_error().code(), Some("InvalidParameterValue"));
    let err = client.receive_message().queue_url(&url).wait_time_seconds(21).send().await.unwrap_err();
    assert_eq!(err.into_service_error().code(), Some("InvalidParameterValue"));
    server.shutdown().await;
}

#[tokio::test]
async fn batches_and_their_errors() {
    let (server, client) = server().await;
    let url = create(&client, "batch", &[]).await;
    let entry =
        |id: &str, body: &str| SendMessageBatchRequestEntry::builder().id(id).message_body(body).build().unwrap();
    let out = client
        .send_message_batch()
        .queue_url(&url)
        .entries(entry("a", "one"))
        .entries(entry("b", "two"))
        .entries(entry("c", "bad \u{2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.successful.len(), 2);
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].id, "c");
    assert_eq!(out.failed[0].code, "InvalidMessageContents");

    let err = client.send_message_batch().queue_url(&url).send().await.unwrap_err().into_service_error();
    assert!(err.is_empty_batch_request(), "{err:?}");
    let mut req = client.send_message_batch().queue_url(&url);
    for i in 0..11 {
        req = req.entries(entry(&format!("e{i}"), "x"));
    }
    assert!(req.send().await.unwrap_err().into_service_error().is_too_many_entries_in_batch_request());
    let err = client
        .send_message_batch()
        .queue_url(&url)
        .entries(entry("dup", "x"))
        .entries(entry("dup", "y"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_batch_entry_ids_not_distinct(), "{err:?}");
    let err = client.send_message_batch().queue_url(&url).entries(entry("bad id!", "x")).send().await.unwrap_err();
    assert!(err.into_service_error().is_invalid_batch_entry_id());
    let half = "y".repeat(600_000);
    let err = client
        .send_message_batch()
        .queue_url(&url)
        .entries(entry("h1", &half))
        .entries(entry("h2", &half))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_batch_request_too_long(), "{err:?}");

    let got = client.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    let msgs = got.messages.unwrap();
    assert_eq!(msgs.len(), 2);
    let mut vis = client.change_message_visibility_batch().queue_url(&url);
    let mut del = client.delete_message_batch().queue_url(&url);
    for (i, m) in msgs.iter().enumerate() {
        let h = m.receipt_handle.clone().unwrap();
        vis = vis.entries(
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(format!("v{i}"))
                .receipt_handle(&h)
                .visibility_timeout(100)
                .build()
                .unwrap(),
        );
        del = del
            .entries(DeleteMessageBatchRequestEntry::builder().id(format!("d{i}")).receipt_handle(h).build().unwrap());
    }
    del = del.entries(DeleteMessageBatchRequestEntry::builder().id("junk").receipt_handle("junk").build().unwrap());
    let v = vis.send().await.unwrap();
    assert_eq!(v.successful.len(), 2);
    let d = del.send().await.unwrap();
    assert_eq!(d.successful.len(), 2);
    assert_eq!(d.failed.len(), 1);
    assert_eq!(d.failed[0].code, "ReceiptHandleIsInvalid");
    assert_eq!(attr(&client, &url, QueueAttributeName::ApproximateNumberOfMessagesNotVisible).await, "0");
    server.shutdown().await;
}

#[tokio::test]
async fn long_poll_wakes_when_a_message_arrives() {
    let (server, client) = server().await;
    let url = create(&client, "poll", &[]).await;
    let waiter = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.receive_message().queue_url(url).wait_time_seconds(20).send().await })
    };
    // Give the receive time to start waiting; the assertion is on the
    // result, not on timing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.send_message().queue_url(&url).message_body("wake up").send().await.unwrap();
    let out = waiter.await.unwrap().unwrap();
    assert_eq!(out.messages.unwrap()[0].body.as_deref(), Some("wake up"));

    // The queue's ReceiveMessageWaitTimeSeconds applies when none is given.
    client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20")
        .send()
        .await
        .unwrap();
    let waiter = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.receive_message().queue_url(url).send().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.send_message().queue_url(&url).message_body("again").send().await.unwrap();
    let out = waiter.await.unwrap().unwrap();
    assert_eq!(out.messages.unwrap()[0].body.as_deref(), Some("again"));
    server.shutdown().await;
}

#[tokio::test]
async fn visibility_expiry_redelivers_with_a_new_handle() {
    let (server, client) = server().await;
    let url = create(&client, "vis", &[]).await;
    client.send_message().queue_url(&url).message_body("m").send().await.unwrap();
    let first = client.receive_message().queue_url(&url).visibility_timeout(1).send().await.unwrap();
    let first = first.messages.unwrap().remove(0);
    let again = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(10)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap()
        .remove(0);
    assert_eq!(again.message_id, first.message_id);
    assert_ne!(again.receipt_handle, first.receipt_handle);
    assert_eq!(again.attributes.unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount], "2");

    // The earlier receive's handle still changes the visibility of the
    // message while it is in flight (AWS allows it; moto's suite checks it).
    client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(first.receipt_handle.unwrap())
        .visibility_timeout(10)
        .send()
        .await
        .unwrap();
    let err = client.delete_message().queue_url(&url).receipt_handle("garbage").send().await.unwrap_err();
    assert!(err.into_service_error().is_receipt_handle_is_invalid());

    // Visibility 0 makes it receivable at once.
    let h = again.receipt_handle.unwrap();
    client.change_message_visibility().queue_url(&url).receipt_handle(&h).visibility_timeout(0).send().await.unwrap();
    let third = client.receive_message().queue_url(&url).send().await.unwrap().messages.unwrap();
    assert_eq!(third.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn delayed_messages_arrive_later() {
    let (server, client) = server().await;
    let url = create(&client, "delay", &[]).await;
    client.send_message().queue_url(&url).message_body("later").delay_seconds(1).send().await.unwrap();
    let none = client.receive_message().queue_url(&url).send().await.unwrap();
    assert!(none.messages.unwrap_or_default().is_empty());
    assert_eq!(attr(&client, &url, QueueAttributeName::ApproximateNumberOfMessagesDelayed).await, "1");
    let out = client.receive_message().queue_url(&url).wait_time_seconds(10).send().await.unwrap();
    assert_eq!(out.messages.unwrap()[0].body.as_deref(), Some("later"));
    server.shutdown().await;
}

#[tokio::test]
async fn redrive_moves_messages_to_the_dead_letter_queue() {
    let (server, client) = server().await;
    let dlq = create(&client, "dead", &[]).await;
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dead","maxReceiveCount":2}"#;
    let url = create(&client, "live", &[(QueueAttributeName::RedrivePolicy, policy)]).await;
    client.send_message().queue_url(&url).message_body("poison").send().await.unwrap();
    for _ in 0..2 {
        let got = client.receive_message().queue_url(&url).visibility_timeout(0).send().await.unwrap();
        assert_eq!(got.messages.unwrap().len(), 1);
    }
    // The third receive finds it over the limit and moves it.
    let got = client.receive_message().queue_url(&url).send().await.unwrap();
    assert!(got.messages.unwrap_or_default().is_empty());
    let dead = client
        .receive_message()
        .queue_url(&dlq)
        .wait_time_seconds(5)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap();
    assert_eq!(dead[0].body.as_deref(), Some("poison"));
    let attrs = dead[0].attributes.as_ref().unwrap();
    assert_eq!(attrs[&MessageSystemAttributeName::DeadLetterQueueSourceArn], "arn:aws:sqs:us-east-1:000000000000:live");
    server.shutdown().await;
}

#[tokio::test]
async fn fifo_orders_groups_and_deduplicates() {
    let (server, client) = server().await;
    let url = create(&client, "jobs.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;
    let send = |body: &str, group: &str, dedup: &str| {
        client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
    };
    let a1 = send("a1", "A", "1").await.unwrap();
    let dup = send("a1 again", "A", "1").await.unwrap();
    assert_eq!(a1.message_id, dup.message_id);
    assert_eq!(a1.sequence_number, dup.sequence_number);
    send("a2", "A", "2").await.unwrap();
    send("b1", "B", "3").await.unwrap();

    // One at a time: A's head blocks the rest of A while in flight.
    let first = client.receive_message().queue_url(&url).send().await.unwrap().messages.unwrap().remove(0);
    assert_eq!(first.body.as_deref(), Some("a1"));
    let second = client.receive_message().queue_url(&url).send().await.unwrap().messages.unwrap().remove(0);
    assert_eq!(second.body.as_deref(), Some("b1"));
    let none = client.receive_message().queue_url(&url).send().await.unwrap();
    assert!(none.messages.unwrap_or_default().is_empty(), "group A is blocked while a1 is in flight");
    client.delete_message().queue_url(&url).receipt_handle(first.receipt_handle.unwrap()).send().await.unwrap();
    let third = client.receive_message().queue_url(&url).send().await.unwrap().messages.unwrap().remove(0);
    assert_eq!(third.body.as_deref(), Some("a2"));

    // FIFO rules.
    let err = client.send_message().queue_url(&url).message_body("x").message_deduplication_id("z").send().await;
    assert_eq!(err.unwrap_err().into_service_error().code(), Some("MissingParameter"));
    let err = client.send_message().queue_url(&url).message_body("x").message_group_id("g").send().await;
    assert_eq!(err.unwrap_err().into_service_error().code(), Some("InvalidParameterValue"));
    let url2 = create(
        &client,
        "cbd.fifo",
        &[(QueueAttributeName::FifoQueue, "true"), (QueueAttributeName::ContentBasedDeduplication, "true")],
    )
    .await;
    let x = client.send_message().queue_url(&url2).message_body("same").message_group_id("g").send().await.unwrap();
    let y = client.send_message().queue_url(&url2).message_body("same").message_group_id("g").send().await.unwrap();
    assert_eq!(x.message_id, y.message_id);
    server.shutdown().await;
}

#[tokio::test]
async fn purge_and_tags() {
    let (server, client) = server().await;
    let url = create(&client, "purge", &[]).await;
    for i in 0..3 {
        client.send_message().queue_url(&url).message_body(format!("m{i}")).send().await.unwrap();
    }
    client.purge_queue().queue_url(&url).send().await.unwrap();
    assert_eq!(attr(&client, &url, QueueAttributeName::ApproximateNumberOfMessages).await, "0");
    let err = client.purge_queue().queue_url(&url).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403), "AWS's status");
    let err = err.into_service_error();
    assert!(err.is_purge_queue_in_progress(), "{err:?}");

    client.tag_queue().queue_url(&url).tags("team", "avatars").tags("env", "dev").send().await.unwrap();
    client.untag_queue().queue_url(&url).tag_keys("env").send().await.unwrap();
    let tags = client.list_queue_tags().queue_url(&url).send().await.unwrap().tags.unwrap();
    assert_eq!(tags, HashMap::from([("team".to_owned(), "avatars".to_owned())]));
    server.shutdown().await;
}

#[tokio::test]
async fn acknowledged_work_survives_a_restart() {
    let (mut server, client) = server().await;
    let url = create(&client, "durable", &[(QueueAttributeName::VisibilityTimeout, "0")]).await;
    for i in 0..5 {
        client.send_message().queue_url(&url).message_body(format!("m{i}")).send().await.unwrap();
    }
    let got = client.receive_message().queue_url(&url).visibility_timeout(300).send().await.unwrap();
    let gone = got.messages.unwrap().remove(0);
    client.delete_message().queue_url(&url).receipt_handle(gone.receipt_handle.unwrap()).send().await.unwrap();

    server.restart().await;
    let client = server.sqs().await;
    let url = client.get_queue_url().queue_name("durable").send().await.unwrap().queue_url.unwrap();
    assert_eq!(attr(&client, &url, QueueAttributeName::VisibilityTimeout).await, "0");
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let out =
            client.receive_message().queue_url(&url).max_number_of_messages(10).visibility_timeout(300).send().await;
        bodies.extend(out.unwrap().messages.unwrap_or_default().into_iter().filter_map(|m| m.body));
    }
    bodies.sort();
    let mut expected: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    expected.retain(|b| Some(b) != gone.body.as_ref());
    assert_eq!(bodies, expected);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_credentials_are_refused() {
    let server = TestServer::start(&[Role::Sqs]).await;
    let wrong_secret = aws_sdk_sqs::Client::new(&common::sdk_config(&server.endpoint(), ACCESS_KEY, "wrong").await);
    let err = wrong_secret.list_queues().send().await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");
    let unknown = aws_sdk_sqs::Client::new(&common::sdk_config(&server.endpoint(), "nobody", SECRET_KEY).await);
    let err = unknown.list_queues().send().await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err:?}");

    // Unsigned JSON request.
    let resp = reqwest::Client::new()
        .post(server.endpoint())
        .header("x-amz-target", "AmazonSQS.ListQueues")
        .header("content-type", "application/x-amz-json-1.0")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let code = resp.headers()["x-amzn-query-error"].to_str().unwrap().to_owned();
    assert_eq!(code, "MissingAuthenticationToken;Sender");
    server.shutdown().await;
}

// ---- Raw signed requests: the Query protocol, malformed and oversized bodies, STS.

/// Signs and sends a POST with aws-sigv4, as any AWS SDK would.
async fn signed_post(
    endpoint: &str,
    service: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    time: SystemTime,
) -> (u16, http::HeaderMap, String) {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("{endpoint}{path}");
    let mut req = http::Request::post(&url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body.clone()).unwrap();
    let signable = SignableRequest::new(
        "POST",
        &url,
        req.headers().iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    let mut out = reqwest::Client::new().post(&url).body(body);
    for (k, v) in req.headers() {
        out = out.header(k.as_str(), v.to_str().unwrap());
    }
    let resp = out.send().await.unwrap();
    let status = resp.status().as_u16();
    let mut headers = http::HeaderMap::new();
    for (k, v) in resp.headers() {
        headers.insert(
            http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    (status, headers, resp.text().await.unwrap())
}

async fn query(endpoint: &str, params: &[(&str, &str)]) -> (u16, String) {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let (status, _, text) = signed_post(
        endpoint,
        "sqs",
        "/",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.into_bytes(),
        SystemTime::now(),
    )
    .await;
    (status, text)
}

/// The text of the first `<tag>…</tag>`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
}

#[tokio::test]
async fn query_protocol_round_trip() {
    let server = TestServer::start(&[Role::Sqs]).await;
    let ep = server.endpoint();
    let (status, xml) = query(
        &ep,
        &[
            ("Action", "CreateQueue"),
            ("QueueName", "q1"),
            ("Attribute.1.Name", "VisibilityTimeout"),
            ("Attribute.1.Value", "40"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    let url = xml_text(&xml, "QueueUrl").unwrap();
    assert_eq!(url, format!("{ep}/000000000000/q1"));

    let (status, xml) = query(
        &ep,
        &[
            ("Action", "SendMessage"),
            ("QueueUrl", &url),
            ("MessageBody", "a & b < c"),
            ("MessageAttribute.1.Name", "k"),
            ("MessageAttribute.1.Value.DataType", "String"),
            ("MessageAttribute.1.Value.StringValue", "v"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    let md5 = xml_text(&xml, "MD5OfMessageBody").unwrap();
    assert_eq!(md5, hex_md5("a & b < c"));
    assert!(xml_text(&xml, "MD5OfMessageAttributes").is_some());

    let (status, xml) = query(
        &ep,
        &[
            ("Action", "ReceiveMessage"),
            ("QueueUrl", &url),
            ("AttributeName.1", "All"),
            ("MessageAttributeName.1", "All"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(xml_text(&xml, "Body").as_deref(), Some("a & b < c"));
    assert!(xml.contains("<Attribute><Name>ApproximateReceiveCount</Name><Value>1</Value></Attribute>"), "{xml}");
    assert!(xml.contains("<MessageAttribute><Name>k</Name><Value><DataType>String</DataType><StringValue>v</StringValue></Value></MessageAttribute>") 
        || xml.contains("<MessageAttribute><Name>k</Name><Value><StringValue>v</StringValue><DataType>String</DataType></Value></MessageAttribute>"), "{xml}");
    let handle = xml_text(&xml, "ReceiptHandle").unwrap();

    let (status, xml) =
        query(&ep, &[("Action", "DeleteMessage"), ("QueueUrl", &url), ("ReceiptHandle", &handle)]).await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<DeleteMessageResponse"));

    let (status, xml) =
        query(&ep, &[("Action", "GetQueueAttributes"), ("QueueUrl", &url), ("AttributeName.1", "VisibilityTimeout")])
            .await;
    assert_eq!(status, 200);
    assert!(xml.contains("<Attribute><Name>VisibilityTimeout</Name><Value>40</Value></Attribute>"), "{xml}");

    // Errors are ErrorResponse documents with the legacy codes.
    let (status, xml) = query(&ep, &[("Action", "GetQueueUrl"), ("QueueName", "missing")]).await;
    assert_eq!(status, 400);
    assert_eq!(xml_text(&xml, "Code").as_deref(), Some("AWS.SimpleQueueService.NonExistentQueue"));
    assert_eq!(xml_text(&xml, "Type").as_deref(), Some("Sender"));
    let (status, xml) = query(&ep, &[("Action", "NoSuchAction")]).await;
    assert_eq!(status, 400);
    assert_eq!(xml_text(&xml, "Code").as_deref(), Some("InvalidAction"));

    // Addressed by path instead of QueueUrl.
    let (_, xml) = query(&ep, &[("Action", "ListQueues")]).await;
    assert_eq!(xml_text(&xml, "QueueUrl").as_deref(), Some(url.as_str()));
    server.shutdown().await;
}

fn hex_md5(s: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

#[tokio::test]
async fn malformed_expired_and_oversized_requests() {
    let server = TestServer::start(&[Role::Sqs]).await;
    let ep = server.endpoint();
    let json_headers = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", "AmazonSQS.ListQueues")];
    let (status, headers, body) =
        signed_post(&ep, "sqs", "/", &json_headers, b"{not json".to_vec(), SystemTime::now()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("SerializationException"), "{body}");
    assert!(headers.contains_key("x-amzn-query-error"));

    let old = SystemTime::now() - Duration::from_secs(3600);
    let (status, headers, _) = signed_post(&ep, "sqs", "/", &json_headers, b"{}".to_vec(), old).await;
    assert_eq!(status, 400);
    assert_eq!(headers["x-amzn-query-error"], "RequestExpired;Sender");

    let huge = vec![b' '; 4 * 1024 * 1024];
    let (status, _, _) = signed_post(&ep, "sqs", "/", &json_headers, huge, SystemTime::now()).await;
    assert_eq!(status, 413);

    // The same request, well-formed and current, succeeds.
    let (status, headers, _) = signed_post(&ep, "sqs", "/", &json_headers, b"{}".to_vec(), SystemTime::now()).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("x-amzn-query-error"));
    server.shutdown().await;
}

#[tokio::test]
async fn sts_get_caller_identity() {
    let server = TestServer::start(&[Role::Sqs]).await;
    let body = b"Action=GetCallerIdentity&Version=2011-06-15".to_vec();
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _, xml) = signed_post(&server.endpoint(), "sts", "/", &headers, body, SystemTime::now()).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(xml_text(&xml, "Account").as_deref(), Some("000000000000"));
    assert_eq!(xml_text(&xml, "Arn").as_deref(), Some("arn:aws:iam::000000000000:root"));

    let body = b"Action=AssumeRole".to_vec();
    let (status, _, xml) = signed_post(&server.endpoint(), "sts", "/", &headers, body, SystemTime::now()).await;
    assert_eq!(status, 400);
    assert_eq!(xml_text(&xml, "Code").as_deref(), Some("InvalidAction"));
    server.shutdown().await;
}

#[tokio::test]
async fn requests_to_the_queue_url_path() {
    let (server, client) = server().await;
    let url = create(&client, "by-path", &[]).await;
    let ep = server.endpoint();
    let path = "/000000000000/by-path";

    // Query protocol, queue named only by the path.
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("Action", "SendMessage"), ("MessageBody", "via query path")])
        .finish();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _, xml) = signed_post(&ep, "sqs", path, &form, body.into_bytes(), SystemTime::now()).await;
    assert_eq!(status, 200, "{xml}");

    // JSON protocol, likewise.
    let json = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", "AmazonSQS.SendMessage")];
    let body = br#"{"MessageBody":"via json path"}"#.to_vec();
    let (status, _, text) = signed_post(&ep, "sqs", path, &json, body, SystemTime::now()).await;
    assert_eq!(status, 200, "{text}");

    let got = client.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    let mut bodies: Vec<_> = got.messages.unwrap().into_iter().filter_map(|m| m.body).collect();
    bodies.sort();
    assert_eq!(bodies, ["via json path", "via query path"]);

    // A path naming another account's queue is not ours.
    let body = br#"{"MessageBody":"x"}"#.to_vec();
    let (status, headers, _) = signed_post(&ep, "sqs", "/111111111111/by-path", &json, body, SystemTime::now()).await;
    assert_eq!(status, 400);
    assert_eq!(headers["x-amzn-query-error"], "AWS.SimpleQueueService.NonExistentQueue;Sender");
    server.shutdown().await;
}

#[tokio::test]
async fn presigned_query_requests() {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let (server, client) = server().await;
    create(&client, "presigned", &[]).await;
    let presign = |secret: &'static str| {
        let identity = aws_credential_types::Credentials::new(ACCESS_KEY, secret, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sqs")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let url = format!("{}/?Action=ListQueues&Version=2012-11-05", server.endpoint());
        let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[])).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::get(&url).body(()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req.uri().to_string()
    };
    let resp = reqwest::get(presign(SECRET_KEY)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let xml = resp.text().await.unwrap();
    assert!(xml.contains("/000000000000/presigned</QueueUrl>"), "{xml}");
    let resp = reqwest::get(presign("wrong")).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(xml_text(&resp.text().await.unwrap(), "Code").as_deref(), Some("SignatureDoesNotMatch"));
    server.shutdown().await;
}
