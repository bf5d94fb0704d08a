//! The pipeline when things go wrong: transient failures that end in the
//! dead-letter queue, a web tier whose S3/SQS endpoint is gone or stops
//! answering, and uploads deleted before a worker got to them. Real server,
//! real SDK clients.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::io::Cursor;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use common::{ALL_ROLES, TestServer, test_config};
use crunchbox::cli::Role;
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use proxy::Proxy;
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "dev-token";
/// Bounds a hang; it does not measure speed (the CPU is shared).
const DEADLINE: Duration = Duration::from_secs(120);

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = ImageBuffer::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 99]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img).write_to(&mut out, ImageFormat::Jpeg).expect("encode");
    out.into_inner()
}

async fn upload(web: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{web}/v1/avatar/upload"))
        .bearer_auth(TOKEN)
        .header("content-type", "image/jpeg")
        .body(body)
        .send()
        .await
        .expect("upload request")
}

async fn upload_id(web: &str, body: Vec<u8>) -> String {
    let resp = upload(web, body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned()
}

async fn status(web: &str, id: &str) -> (StatusCode, Value) {
    let resp = reqwest::get(format!("{web}/v1/avatar/{id}")).await.expect("status request");
    let code = resp.status();
    (code, resp.json().await.expect("json"))
}

/// Polls until the upload is no longer pending.
async fn settled(web: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (code, json) = status(web, id).await;
        assert_eq!(code, StatusCode::OK, "{json}");
        if json["status"] != "pending" {
            return json;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id} still pending after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Visible plus in-flight messages on a queue.
async fn queue_depth(server: &TestServer, name: &str) -> u64 {
    let sqs = server.sqs().await;
    let url = sqs.get_queue_url().queue_name(name).send().await.expect("queue url").queue_url.expect("url");
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes");
    let attrs = out.attributes().expect("attributes");
    [QueueAttributeName::ApproximateNumberOfMessages, QueueAttributeName::ApproximateNumberOfMessagesNotVisible]
        .iter()
        .map(|a| attrs.get(a).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
}

/// S3 refuses every variant (the public bucket is gone): each attempt is a
/// transient failure, the message comes back after its visibility timeout,
/// and after `max_receive_count` receives it is dead-lettered, which the
/// worker turns into a `failed` status with reason `dead_lettered`.
#[tokio::test]
async fn transient_failures_end_in_the_dead_letter_queue_as_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.queue.max_receive_count = 2;
    config.queue.visibility_timeout = 1;
    let server = TestServer::start_with(config, dir, &ALL_ROLES).await;
    let web = server.web_url();
    let public = server.config.buckets.public.clone();
    server.s3().await.delete_bucket().bucket(&public).send().await.expect("public bucket removed");

    let id = upload_id(&web, jpeg(300, 200)).await;
    let json = settled(&web, &id).await;
    assert_eq!(json["status"], "failed", "{json}");
    assert_eq!(json["reason"], "dead_lettered", "{json}");
    assert!(json["error"].as_str().is_some_and(|e| e.contains("2 times")), "{json}");

    // Both queues are drained: nothing retries forever.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while queue_depth(&server, &server.config.queue.name).await
        + queue_depth(&server, &server.config.queue.dlq_name).await
        > 0
    {
        assert!(tokio::time::Instant::now() < deadline, "queues never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = reqwest::get(format!("{web}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("crunchbox_crunches_total{outcome=\"retry\"}"), "{metrics}");
    assert!(metrics.contains("crunchbox_crunch_failures_total{reason=\"dead_lettered\"}"), "{metrics}");
    server.shutdown().await;
}

/// A web + worker tier pointed at another process's S3 and SQS: healthy
/// while that endpoint runs, 503s naming both once it is gone, and uploads
/// are refused with a JSON 503 instead of being half-stored.
#[tokio::test]
async fn dead_endpoint_fails_heartbeat_and_uploads_with_503() {
    let storage = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.aws.listen = storage.app().aws_addr.expect("aws listener");
    let tier = TestServer::start_with(config, dir, &[Role::Web, Role::Worker]).await;
    let web = tier.web_url();

    let resp = reqwest::get(format!("{web}/__heartbeat__")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let id = upload_id(&web, jpeg(120, 90)).await;
    assert_eq!(settled(&web, &id).await["status"], "ready");

    storage.shutdown().await;

    let resp = reqwest::get(format!("{web}/__heartbeat__")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let json: Value = resp.json().await.unwrap();
    // What failed, in a few words: anyone may ask, so no endpoint, no
    // connector error, no Debug dump (those go to the log).
    for (check, what) in [("s3", "private bucket: unreachable"), ("sqs", "crunch queue: unreachable")] {
        let reason = json["checks"][check].as_str().unwrap_or_else(|| panic!("no {check} check in {json}"));
        assert_eq!(reason, what, "{json}");
    }
    assert_eq!(reqwest::get(format!("{web}/__lbheartbeat__")).await.unwrap().status(), StatusCode::OK);

    let resp = upload(&web, jpeg(64, 64)).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["code"], 503, "{json}");
    assert_eq!(json["error"], "Service Unavailable", "{json}");
    assert!(json["errno"].is_u64() && json["message"].is_string(), "{json}");
    // A short reason only: no endpoint, no connector error, no Debug dump.
    let message = json["message"].as_str().unwrap_or_default();
    assert_eq!(message, "storage is unavailable (storing the upload)", "{json}");
    let (code, json) = status(&web, &id).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(!message.contains("127.0.0.1") && !message.contains("dispatch") && message.len() < 80, "{json}");
    tier.shutdown().await;
}

/// A web tier whose S3 stops answering (the proxy holds every GET and
/// HEAD, as a connection that died silently would): a status request gets
/// the same short 503 as a dead endpoint once the SDK's attempts have timed
/// out (`web::ATTEMPT_TIMEOUT` each), instead of hanging; once S3 answers
/// again, so does the web tier.
#[tokio::test]
async fn a_web_tier_whose_s3_stops_answering_says_503() {
    let (core, proxy, tier) = proxy::tier_behind_proxy(&[Role::Web]).await;
    let web = tier.web_url();
    let id = upload_id(&web, jpeg(64, 64)).await;

    proxy.hold(|method, _| method == http::Method::GET || method == http::Method::HEAD);
    let (code, json) = tokio::time::timeout(DEADLINE, status(&web, &id)).await.expect("an answer, not a hang");
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("storage is unavailable") && !message.contains("timeout"), "{json}");

    proxy.pass_all();
    let (code, json) = status(&web, &id).await;
    assert_eq!(code, StatusCode::OK, "{json}");
    assert_eq!(json["status"], "pending");
    tier.shutdown().await;
    core.shutdown().await;
}

/// A visibility renewal SQS never answers is given up within half the
/// renewal period, so the next one still goes out before the message would
/// reappear. Visibility timeout 4 s: renewals every 2 s. The proxy holds the
/// worker's GET of the original (the job waits there, renewing) and every
/// ChangeMessageVisibility: without the bound the first renewal would wait
/// out the worker's 60 s attempt and no second one would follow. (One
/// receive at most: a message that reappeared would go to the dead-letter
/// queue rather than start a second job with renewals of its own.)
#[tokio::test]
async fn a_renewal_sqs_never_answers_does_not_stop_the_next() {
    let (core, proxy, tier) = proxy::tier_behind_proxy_with(&[Role::Web, Role::Worker], |c| {
        c.queue.visibility_timeout = 4;
        c.queue.max_receive_count = 1;
    })
    .await;
    let originals = format!("/{}/originals/", tier.config.buckets.private);
    proxy.hold_requests(move |req| {
        let target = req.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
        (req.method == http::Method::GET && req.uri.path().starts_with(&originals))
            || target.ends_with(".ChangeMessageVisibility")
    });
    upload_id(&tier.web_url(), jpeg(64, 64)).await;
    // The GET; a renewal at 2 s, held and given up at 3 s; the next at 4 s.
    proxy.wait_first_attempts_held(3, Duration::from_secs(20)).await;

    proxy.pass_all();
    tier.shutdown().await;
    core.shutdown().await;
}

/// Each role retries from a budget of its own. The web tier retrying
/// through an S3 brownout (the proxy answers every HEAD `503 Slow Down`)
/// spends its whole token bucket, so its calls then fail at their first
/// attempt; the worker's first GET of an original then fails once the same
/// way, and its retry, from the worker's own bucket, still goes out: the
/// upload is ready long before its message could reappear. (With the SDK's
/// default, one bucket per service for the whole process, the worker would
/// not retry and the upload would wait out the 300 s visibility timeout.)
#[tokio::test]
async fn a_web_tier_retrying_through_a_brownout_leaves_the_worker_its_retries() {
    let (core, proxy, tier) = proxy::tier_behind_proxy_with(&[Role::Web, Role::Worker], |c| {
        c.queue.visibility_timeout = 300;
    })
    .await;
    let web = tier.web_url();
    proxy.fail_requests(|req| req.method == http::Method::HEAD);
    // Two HEADs a status request, each with up to two retries at 10 tokens
    // (a 503 is a transient error) from a bucket of 500.
    let lookups = (0..40).map(|n| {
        let web = web.clone();
        async move { status(&web, &format!("{n:032x}")).await.0 }
    });
    for code in futures_util::future::join_all(lookups).await {
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    }
    let spent = proxy.retries_failed();
    assert!(spent > 0, "the brownout cost no retries");
    assert_eq!(status(&web, &format!("{:032x}", 41)).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(proxy.retries_failed(), spent, "the web tier still had retries to spend");

    let originals = format!("/{}/originals/", tier.config.buckets.private);
    let failed_once = std::sync::atomic::AtomicBool::new(false);
    proxy.fail_requests(move |req| {
        req.method == http::Method::GET
            && req.uri.path().starts_with(&originals)
            && !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst)
    });
    let id = upload_id(&web, jpeg(64, 64)).await;
    let json = tokio::time::timeout(Duration::from_secs(60), settled(&web, &id))
        .await
        .expect("ready without waiting for the message to reappear");
    assert_eq!(json["status"], "ready", "{json}");
    tier.shutdown().await;
    core.shutdown().await;
}

/// Without a worker an upload stays pending and can be deleted; when a
/// worker starts later, the orphaned message is dropped, not crunched.
#[tokio::test]
async fn upload_deleted_while_pending_is_never_crunched() {
    let mut server = TestServer::start(&[Role::S3, Role::Sqs, Role::Web]).await;
    let web = server.web_url();
    let id = upload_id(&web, jpeg(200, 100)).await;
    let (code, json) = status(&web, &id).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json["status"], "pending", "{json}");
    assert!(json.get("error").is_none(), "{json}");

    let resp =
        reqwest::Client::new().delete(format!("{web}/v1/avatar/{id}")).bearer_auth(TOKEN).send().await.expect("delete");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(status(&web, &id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(queue_depth(&server, &server.config.queue.name).await, 1);

    server.roles = ALL_ROLES.to_vec();
    server.restart().await;
    let web = server.web_url();
    drained(&server).await;
    assert_eq!(status(&web, &id).await.0, StatusCode::NOT_FOUND);
    let public = server.s3().await.list_objects_v2().bucket(&server.config.buckets.public).send().await.unwrap();
    assert_eq!(public.key_count(), Some(0));
    server.shutdown().await;
}

/// At-least-once delivery: the same id delivered again is crunched again to
/// the same keys with the same bytes (same ETags), and stays ready.
#[tokio::test]
async fn redelivered_id_is_crunched_again_to_identical_variants() {
    let server = TestServer::start(&ALL_ROLES).await;
    let web = server.web_url();
    let id = upload_id(&web, jpeg(640, 480)).await;
    assert_eq!(settled(&web, &id).await["status"], "ready");
    let s3 = server.s3().await;
    let public = &server.config.buckets.public;
    let mut etags = Vec::new();
    for suffix in ["", "_small", "_large"] {
        let head = s3.head_object().bucket(public).key(format!("{id}{suffix}")).send().await.expect("variant");
        etags.push(head.e_tag().map(str::to_owned));
    }

    let sqs = server.sqs().await;
    let url = sqs.get_queue_url().queue_name(&server.config.queue.name).send().await.unwrap().queue_url.unwrap();
    sqs.send_message().queue_url(&url).message_body(&id).send().await.expect("redeliver");

    // The worker deletes a message only after crunching it, after recording
    // a permanent failure, or when the original is gone; the original is
    // there, so an empty queue and no failure record mean it was crunched.
    drained(&server).await;
    let failure = s3.head_object().bucket(&server.config.buckets.private).key(format!("failed/{id}")).send().await;
    assert!(failure.is_err(), "the redelivery was recorded as a failure");
    assert_eq!(status(&web, &id).await.1["status"], "ready");
    for (suffix, etag) in ["", "_small", "_large"].iter().zip(etags) {
        let head = s3.head_object().bucket(public).key(format!("{id}{suffix}")).send().await.expect("variant");
        assert_eq!(head.e_tag().map(str::to_owned), etag, "{suffix} changed bytes");
    }
    server.shutdown().await;
}

/// Waits until the crunch queue holds no message, visible or not.
async fn drained(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while queue_depth(server, &server.config.queue.name).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the message was never dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A message for an upload whose original is gone: with a tombstone (an
/// earlier receive's PUTs landed after the DELETE) the worker takes the
/// late variants down; without one (say, a lifecycle rule expired the
/// original) it leaves the served variants alone. Either way the message
/// is dropped.
#[tokio::test]
async fn a_message_for_a_missing_original_cleans_up_only_after_a_delete() {
    let server = TestServer::start(&ALL_ROLES).await;
    let web = server.web_url();
    let s3 = server.s3().await;
    let (public, private) = (&server.config.buckets.public, &server.config.buckets.private);
    let sqs = server.sqs().await;
    let url = sqs.get_queue_url().queue_name(&server.config.queue.name).send().await.unwrap().queue_url.unwrap();

    // Expired: the original goes, no tombstone; the avatar stays served.
    let kept = upload_id(&web, jpeg(320, 240)).await;
    assert_eq!(settled(&web, &kept).await["status"], "ready");
    s3.delete_object().bucket(private).key(format!("originals/{kept}")).send().await.expect("expire the original");
    sqs.send_message().queue_url(&url).message_body(&kept).send().await.expect("redeliver");
    drained(&server).await;
    assert_eq!(reqwest::get(format!("{web}/a/{kept}")).await.unwrap().status(), StatusCode::OK);

    // Deleted, then a late variant PUT from an earlier receive: taken down.
    let gone = upload_id(&web, jpeg(320, 240)).await;
    assert_eq!(settled(&web, &gone).await["status"], "ready");
    let resp =
        reqwest::Client::new().delete(format!("{web}/v1/avatar/{gone}")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    s3.put_object().bucket(public).key(&gone).body(b"late".to_vec().into()).send().await.expect("late PUT");
    sqs.send_message().queue_url(&url).message_body(&gone).send().await.expect("redeliver");
    drained(&server).await;
    let left = s3.list_objects_v2().bucket(public).prefix(&gone).send().await.unwrap();
    assert_eq!(left.key_count(), Some(0), "the late variant stayed behind");
    server.shutdown().await;
}

/// DELETE racing a worker, made deterministic: the worker reaches S3
/// through a proxy that holds its variant PUTs until the DELETE has
/// answered, then holds its after-the-PUTs check while the variants are
/// really in the public bucket. Once DELETE has answered, no variant of the
/// id is served at any of those moments, and the worker takes them down.
#[tokio::test]
async fn a_delete_during_a_crunch_is_never_undone_by_the_worker() {
    let core = TestServer::start(&[Role::S3, Role::Sqs, Role::Web]).await;
    let web = core.web_url();
    let proxy = Proxy::start(core.app().aws_addr.expect("aws listener")).await;
    let (public, private) = (core.config.buckets.public.clone(), core.config.buckets.private.clone());
    let held_public = public.clone();
    proxy.hold(move |method, path| method == http::Method::PUT && path.starts_with(&format!("/{held_public}/")));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.aws.listen = proxy.addr;
    let worker = TestServer::start_with(config, dir, &[Role::Worker]).await;

    let id = upload_id(&web, jpeg(900, 600)).await;
    // The worker crunched and sent its PUTs; none has reached S3.
    proxy.wait_held(1, DEADLINE).await;
    let resp =
        reqwest::Client::new().delete(format!("{web}/v1/avatar/{id}")).bearer_auth(TOKEN).send().await.expect("delete");
    assert_eq!(resp.status(), StatusCode::OK);

    // Let the PUTs land after the DELETE, and hold the worker's next look
    // at the tombstone: the variants now exist, the DELETE has answered.
    let tombstone = format!("/{private}/deleted/{id}");
    proxy.hold(move |method, path| method == http::Method::HEAD && path == tombstone);
    proxy.release();
    proxy.wait_held(1, DEADLINE).await;
    let s3 = core.s3().await;
    let stored = s3.list_objects_v2().bucket(&public).prefix(&id).send().await.unwrap();
    assert!(stored.key_count().unwrap_or(0) > 0, "the race is real: a late variant PUT landed after the DELETE");
    let http = reqwest::Client::new();
    for suffix in ["", "_small", "_large"] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let resp = http.request(method.clone(), format!("{web}/a/{id}{suffix}")).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} /a/{id}{suffix} served after DELETE");
        }
    }
    assert_eq!(status(&web, &id).await.0, StatusCode::NOT_FOUND);

    // The worker goes on, finds the tombstone, and cleans up after itself.
    proxy.pass_all();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = s3.list_objects_v2().bucket(&public).prefix(&id).send().await.unwrap().key_count().unwrap_or(0);
        if left == 0 && queue_depth(&core, &core.config.queue.name).await == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} variants left behind, or the message never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for suffix in ["", "_small", "_large"] {
        assert_eq!(reqwest::get(format!("{web}/a/{id}{suffix}")).await.unwrap().status(), StatusCode::NOT_FOUND);
    }
    let private_left = s3.list_objects_v2().bucket(&private).send().await.unwrap();
    let keys: Vec<_> = private_left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [format!("deleted/{id}")], "only the tombstone remains");
    // A second DELETE is a 404, as for any unknown id.
    let again = http.delete(format!("{web}/v1/avatar/{id}")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    worker.shutdown().await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn originals_that_were_never_queued_are_swept_and_no_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.queue.orphan_after_secs = 5;
    let server = TestServer::start_with(config, dir, &ALL_ROLES).await;
    let s3 = server.s3().await;
    let (private, public) = (server.config.buckets.private.clone(), server.config.buckets.public.clone());
    let put = |bucket: String, key: String| {
        let s3 = s3.clone();
        async move {
            s3.put_object().bucket(bucket).key(key).body(jpeg(8, 8).into()).send().await.expect("put");
        }
    };
    // Originals that something owns: a failure record, a DELETE's tombstone,
    // a variant. None of them was queued either.
    let (failed, deleted, ready) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
    put(private.clone(), format!("failed/{failed}")).await;
    put(private.clone(), format!("deleted/{deleted}")).await;
    put(public.clone(), ready.clone()).await;
    // The orphan's id sorts after the others: once it is gone, the sweep
    // has looked at all of them.
    let orphan = "f".repeat(32);
    for id in [&failed, &deleted, &ready, &orphan] {
        put(private.clone(), format!("originals/{id}")).await;
    }
    // The web role's uploads are queued and crunched as usual meanwhile.
    let uploaded = upload_id(&server.web_url(), jpeg(300, 200)).await;
    assert_eq!(settled(&server.web_url(), &uploaded).await["status"], "ready");

    let exists = |key: String| {
        let s3 = s3.clone();
        let private = private.clone();
        async move { s3.head_object().bucket(private).key(key).send().await.is_ok() }
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while exists(format!("originals/{orphan}")).await {
        assert!(tokio::time::Instant::now() < deadline, "the orphaned original was never swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in [&failed, &deleted, &ready, &uploaded] {
        assert!(exists(format!("originals/{id}")).await, "original {id} was swept but is not an orphan");
    }
    assert_eq!(status(&server.web_url(), &orphan).await.0, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

/// `pipeline.trigger = "s3-event"`: the web role only stores the original;
/// the private bucket's notification (set up by provisioning) queues the
/// crunch and the worker reads the id from the S3 record. Switching back
/// to `message` removes the notification again, so nothing is crunched twice.
#[tokio::test]
async fn s3_event_trigger_crunches_from_the_bucket_notification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.pipeline.trigger = crunchbox::config::Trigger::S3Event;
    let mut server = TestServer::start_with(config, dir, &ALL_ROLES).await;
    let private = server.config.buckets.private.clone();
    let notification =
        server.s3().await.get_bucket_notification_configuration().bucket(&private).send().await.expect("get");
    let rules = notification.queue_configurations();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].id(), Some("crunchbox-crunch"));
    assert!(rules[0].queue_arn().ends_with(&format!(":{}", server.config.queue.name)));

    let web = server.web_url();
    let ids: Vec<String> = futures_util::future::join_all((0..3).map(|_| upload_id(&web, jpeg(320, 240)))).await;
    for id in &ids {
        let json = settled(&web, id).await;
        assert_eq!(json["status"], "ready", "{json}");
    }

    server.config.pipeline.trigger = crunchbox::config::Trigger::Message;
    server.restart().await;
    let notification =
        server.s3().await.get_bucket_notification_configuration().bucket(&private).send().await.expect("get");
    assert!(notification.queue_configurations().is_empty(), "the message trigger removes our notification");
    let id = upload_id(&server.web_url(), jpeg(64, 64)).await;
    assert_eq!(settled(&server.web_url(), &id).await["status"], "ready");
    server.shutdown().await;
}

/// A call that S3 or SQS never answers (a connection that died silently)
/// fails once each of the SDK's attempts has had its timeout, where the
/// SDK alone would wait forever: what keeps the worker's receive loop and
/// jobs going (it runs with `worker::ATTEMPT_TIMEOUT`). The proxy holds
/// every request.
#[tokio::test]
async fn calls_nobody_answers_fail_after_the_attempt_timeout() {
    let core = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let proxy = Proxy::start(core.app().aws_addr.expect("aws listener")).await;
    let config = &core.config;
    let clients = crunchbox::clients::Clients::new(config, &format!("http://{}", proxy.addr)).await;
    let bounded = clients.with_attempt_timeout(Duration::from_millis(300));
    proxy.hold(|_, _| true);

    let s3 = tokio::time::timeout(DEADLINE, bounded.s3.head_bucket().bucket(&config.buckets.public).send())
        .await
        .expect("the bounded S3 call ends");
    let e = s3.expect_err("nobody answered");
    let detail = format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&e));
    assert!(detail.contains("timeout"), "{detail}");
    let sqs =
        tokio::time::timeout(DEADLINE, bounded.sqs.list_queues().send()).await.expect("the bounded SQS call ends");
    let e = sqs.expect_err("nobody answered");
    let detail = format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&e));
    assert!(detail.contains("timeout"), "{detail}");

    // The clients without the bound are still waiting on theirs.
    let unbounded =
        tokio::time::timeout(Duration::from_secs(2), clients.s3.head_bucket().bucket(&config.buckets.public).send());
    assert!(unbounded.await.is_err(), "the call without an attempt timeout ended");
    proxy.pass_all();
    core.shutdown().await;
}
