//! S3 event notifications to the embedded SQS, through the official SDK:
//! configuration rules and refusals, AWS's record for every event kind,
//! filters, and events that wait out a restart. The record's fields are
//! checked against AWS's example in `s3compat::events::record`'s unit test;
//! here they are checked as a client receives them.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, Event, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, ObjectIdentifier, QueueConfiguration, S3KeyFilter, TopicConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use common::TestServer;
use crunchbox::cli::Role;
use serde_json::Value;

const BUCKET: &str = "events-bucket";

/// A server with a bucket and a queue; returns the queue's URL and ARN.
async fn setup(server: &TestServer, queue: &str) -> (String, String) {
    server.s3().await.create_bucket().bucket(BUCKET).send().await.expect("create bucket");
    let url = common::sqs::create(&server.sqs().await, queue, &[]).await;
    let arn = arn_of(server, &url).await;
    (url, arn)
}

async fn arn_of(server: &TestServer, url: &str) -> String {
    let attrs = server
        .sqs()
        .await
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue arn");
    attrs.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).cloned().expect("arn")
}

fn rule(arn: &str, events: &[Event], prefix: Option<&str>, suffix: Option<&str>) -> QueueConfiguration {
    let mut rules = Vec::new();
    if let Some(p) = prefix {
        rules.push(FilterRule::builder().name(FilterRuleName::Prefix).value(p).build());
    }
    if let Some(s) = suffix {
        rules.push(FilterRule::builder().name(FilterRuleName::Suffix).value(s).build());
    }
    let mut b = QueueConfiguration::builder().id("rule-1").queue_arn(arn).set_events(Some(events.to_vec()));
    if !rules.is_empty() {
        let key = S3KeyFilter::builder().set_filter_rules(Some(rules)).build();
        b = b.filter(NotificationConfigurationFilter::builder().key(key).build());
    }
    b.build().expect("queue configuration")
}

async fn configure(server: &TestServer, rules: Vec<QueueConfiguration>) -> Result<(), String> {
    let config = NotificationConfiguration::builder().set_queue_configurations(Some(rules)).build();
    server
        .s3()
        .await
        .put_bucket_notification_configuration()
        .bucket(BUCKET)
        .notification_configuration(config)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            use aws_sdk_s3::error::ProvideErrorMetadata as _;
            format!("{}: {}", e.code().unwrap_or("?"), e.message().unwrap_or(""))
        })
}

/// Receives (and deletes) every message until `want` have arrived.
async fn drain(server: &TestServer, url: &str, want: usize) -> Vec<Value> {
    let sqs = server.sqs().await;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while out.len() < want && tokio::time::Instant::now() < deadline {
        let got = sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send().await;
        for m in got.expect("receive").messages() {
            out.push(serde_json::from_str(m.body().unwrap_or("")).expect("json body"));
            sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle().unwrap_or("")).send().await.ok();
        }
    }
    out
}

/// Nothing more arrives within a couple of long polls.
async fn assert_quiet(server: &TestServer, url: &str) {
    let got = server.sqs().await.receive_message().queue_url(url).wait_time_seconds(2).send().await.expect("receive");
    assert!(got.messages().is_empty(), "unexpected message: {:?}", got.messages());
}

fn record(v: &Value) -> &Value {
    let records = v["Records"].as_array().expect("Records");
    assert_eq!(records.len(), 1, "one record per message");
    &records[0]
}

async fn put(server: &TestServer, key: &str, body: &'static [u8]) {
    server
        .s3()
        .await
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_kind_sends_its_record() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let (url, arn) = setup(&server, "events").await;
    configure(&server, vec![rule(&arn, &[Event::S3ObjectCreated, Event::S3ObjectRemoved], None, None)])
        .await
        .expect("configure");
    let test = &drain(&server, &url, 1).await[0];
    assert_eq!(test["Event"], "s3:TestEvent");
    assert_eq!(test["Service"], "Amazon S3");
    assert_eq!(test["Bucket"], BUCKET);

    let s3 = server.s3().await;
    put(&server, "photos/a b+c.jpg", b"hello").await;
    s3.copy_object()
        .bucket(BUCKET)
        .key("copy")
        .copy_source(format!("{BUCKET}/photos/a%20b%2Bc.jpg"))
        .send()
        .await
        .expect("copy");
    let upload = s3.create_multipart_upload().bucket(BUCKET).key("multi").send().await.expect("create mpu");
    let upload_id = upload.upload_id().expect("upload id");
    let part = s3
        .upload_part()
        .bucket(BUCKET)
        .key("multi")
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .expect("part");
    let done = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(part.e_tag().unwrap_or("")).build())
        .build();
    s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key("multi")
        .upload_id(upload_id)
        .multipart_upload(done)
        .send()
        .await
        .expect("complete");
    s3.delete_object().bucket(BUCKET).key("copy").send().await.expect("delete");
    let delete = Delete::builder()
        .objects(ObjectIdentifier::builder().key("multi").build().expect("id"))
        .objects(ObjectIdentifier::builder().key("never-existed").build().expect("id"))
        .build()
        .expect("delete list");
    s3.delete_objects().bucket(BUCKET).delete(delete).send().await.expect("delete objects");

    let got = drain(&server, &url, 5).await;
    let names: Vec<&str> = got.iter().map(|v| record(v)["eventName"].as_str().unwrap_or("")).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "ObjectCreated:CompleteMultipartUpload",
            "ObjectCreated:Copy",
            "ObjectCreated:Put",
            "ObjectRemoved:Delete",
            "ObjectRemoved:Delete"
        ],
        "a missing key in DeleteObjects sends nothing"
    );
    for v in &got {
        let r = record(v);
        assert_eq!(r["eventVersion"], "2.1");
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["awsRegion"], "us-east-1");
        assert_eq!(r["userIdentity"]["principalId"], "AWS:crunchbox");
        assert_eq!(r["requestParameters"]["sourceIPAddress"], "127.0.0.1");
        assert!(r["responseElements"]["x-amz-request-id"].as_str().is_some_and(|s| !s.is_empty()));
        let time = r["eventTime"].as_str().expect("eventTime");
        assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        assert_eq!(r["s3"]["s3SchemaVersion"], "1.0");
        assert_eq!(r["s3"]["configurationId"], "rule-1");
        assert_eq!(r["s3"]["bucket"]["name"], BUCKET);
        assert_eq!(r["s3"]["bucket"]["arn"], format!("arn:aws:s3:::{BUCKET}"));
        let object = &r["s3"]["object"];
        assert_eq!(object["sequencer"].as_str().map(str::len), Some(18));
        if r["eventName"].as_str().is_some_and(|n| n.starts_with("ObjectRemoved")) {
            assert!(object.get("size").is_none() && object.get("eTag").is_none(), "{object}");
        } else {
            assert!(object["size"].is_u64() && object["eTag"].is_string(), "{object}");
        }
    }
    let put_record = got.iter().map(record).find(|r| r["eventName"] == "ObjectCreated:Put").expect("put record");
    assert_eq!(put_record["s3"]["object"]["key"], "photos/a+b%2Bc.jpg", "URL-encoded, space as +");
    assert_eq!(put_record["s3"]["object"]["size"], 5);
    assert_eq!(put_record["s3"]["object"]["eTag"], "5d41402abc4b2a76b9719d911017c592");
    let multi = got.iter().map(record).find(|r| r["eventName"] == "ObjectCreated:CompleteMultipartUpload");
    assert!(multi.and_then(|r| r["s3"]["object"]["eTag"].as_str()).is_some_and(|e| e.ends_with("-1")));
    // The same key's later event has the greater sequencer.
    let seq_of = |name: &str, key: &str| {
        got.iter()
            .map(record)
            .find(|r| r["eventName"] == name && r["s3"]["object"]["key"] == key)
            .and_then(|r| r["s3"]["object"]["sequencer"].as_str().map(str::to_owned))
            .expect("record")
    };
    assert!(seq_of("ObjectCreated:Copy", "copy") < seq_of("ObjectRemoved:Delete", "copy"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_event_types_choose_what_is_sent() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let (url, arn) = setup(&server, "filtered").await;
    configure(&server, vec![rule(&arn, &[Event::S3ObjectCreatedPut], Some("in/"), Some(".jpg"))])
        .await
        .expect("configure");
    drain(&server, &url, 1).await;
    put(&server, "in/yes.jpg", b"1").await;
    put(&server, "in/no.png", b"1").await;
    put(&server, "out/no.jpg", b"1").await;
    server.s3().await.delete_object().bucket(BUCKET).key("in/yes.jpg").send().await.expect("delete");
    let got = drain(&server, &url, 1).await;
    assert_eq!(record(&got[0])["s3"]["object"]["key"], "in/yes.jpg");
    assert_quiet(&server, &url).await;

    // An empty configuration turns events off.
    configure(&server, vec![]).await.expect("clear");
    let read = server.s3().await.get_bucket_notification_configuration().bucket(BUCKET).send().await.expect("get");
    assert!(read.queue_configurations().is_empty());
    put(&server, "in/later.jpg", b"1").await;
    assert_quiet(&server, &url).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_are_validated_as_aws_does() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let (_, arn) = setup(&server, "valid").await;
    let fifo = common::sqs::create(&server.sqs().await, "valid.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;
    let fifo_arn = arn_of(&server, &fifo).await;

    let missing = configure(&server, vec![rule(&format!("{arn}-gone"), &[Event::S3ObjectCreated], None, None)]).await;
    assert!(missing.as_ref().is_err_and(|e| e.starts_with("InvalidArgument: Unable to validate")), "{missing:?}");
    let to_fifo = configure(&server, vec![rule(&fifo_arn, &[Event::S3ObjectCreated], None, None)]).await;
    assert!(to_fifo.as_ref().is_err_and(|e| e.starts_with("InvalidArgument")), "{to_fifo:?}");
    let unknown = configure(&server, vec![rule(&arn, &[Event::from("s3:ObjectCreated:Teleport")], None, None)]).await;
    assert!(unknown.as_ref().is_err_and(|e| e.starts_with("InvalidArgument")), "{unknown:?}");
    let mut second = rule(&arn, &[Event::S3ObjectCreatedPut], Some("a/"), None);
    second.id = Some("rule-2".into());
    let overlap = configure(&server, vec![rule(&arn, &[Event::S3ObjectCreated], None, None), second]).await;
    assert!(overlap.as_ref().is_err_and(|e| e.contains("overlap")), "{overlap:?}");

    let topic = TopicConfiguration::builder()
        .topic_arn("arn:aws:sns:us-east-1:000000000000:t")
        .events(Event::S3ObjectCreated)
        .build()
        .expect("topic");
    let config = NotificationConfiguration::builder().topic_configurations(topic).build();
    let s3 = server.s3().await;
    let refused =
        s3.put_bucket_notification_configuration().bucket(BUCKET).notification_configuration(config).send().await;
    assert_eq!(refused.map_err(|e| e.raw_response().map(|r| r.status().as_u16())).err(), Some(Some(501)));

    let absent = s3.get_bucket_notification_configuration().bucket("no-such-bucket").send().await;
    let code = absent.map_err(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(&e).map(str::to_owned)).err();
    assert_eq!(code, Some(Some("NoSuchBucket".to_owned())));
    // Nothing refused was kept.
    let read = s3.get_bucket_notification_configuration().bucket(BUCKET).send().await.expect("get");
    assert!(read.queue_configurations().is_empty());
    server.shutdown().await;
}

/// Events of writes made while no queue could take them (the SQS role not
/// running) wait in the S3 store's outbox and arrive once it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_out_a_restart_without_the_queue() {
    let mut server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let (url, arn) = setup(&server, "later").await;
    configure(&server, vec![rule(&arn, &[Event::S3ObjectCreated], None, None)]).await.expect("configure");
    drain(&server, &url, 1).await;
    server.roles = vec![Role::S3];
    server.restart().await;
    for i in 0..20 {
        server
            .s3()
            .await
            .put_object()
            .bucket(BUCKET)
            .key(format!("k{i:02}"))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .expect("put");
    }
    server.roles = vec![Role::S3, Role::Sqs];
    server.restart().await;
    let got = drain(&server, &url, 20).await;
    let mut keys: Vec<String> =
        got.iter().map(|v| record(v)["s3"]["object"]["key"].as_str().unwrap_or("").to_owned()).collect();
    keys.sort();
    assert_eq!(keys, (0..20).map(|i| format!("k{i:02}")).collect::<Vec<_>>());
    assert_quiet(&server, &url).await;
    server.shutdown().await;
}
