//! `GET /v1/avatar/{id}/events` (SPEC "Content negotiation and readiness
//! push"): the status as server-sent events, through a real crunchbox.
//! Where a test needs the upload to stay pending, no worker runs and the
//! test writes what a worker would (the default variant) through S3 itself.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use aws_sdk_s3::primitives::ByteStream;
use common::web::{DEADLINE, Events, TOKEN, expect_error, jpeg, upload_id};
use common::{ALL_ROLES, TestServer};
use crunchbox::cli::Role;
use crunchbox::clients::EMBEDDED_IDLE_CONNECTIONS;
use crunchbox::web::{PROBE_TIMEOUT, PROBES_IN_FLIGHT};
use proxy::{Proxy, tier_behind_proxy};
use reqwest::StatusCode;
use serde_json::Value;

/// Embedded S3 and SQS and the web role, without a worker.
async fn no_worker() -> TestServer {
    TestServer::start(&[Role::S3, Role::Sqs, Role::Web]).await
}

async fn status(web: &str, id: &str) -> Value {
    let resp = reqwest::get(format!("{web}/v1/avatar/{id}")).await.expect("status");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

/// What a worker's last PUT does: the default variant makes the upload ready.
async fn publish_default_variant(server: &TestServer, id: &str) {
    let s3 = server.s3().await;
    let put = s3.put_object().bucket(&server.config.buckets.public).key(id).content_type("image/jpeg");
    put.body(ByteStream::from(jpeg(20, 20))).send().await.expect("put variant");
}

/// A pending upload and its stream, past the first (pending) event.
async fn pending_stream(web: &str) -> (String, Events) {
    let id = upload_id(web, "image/jpeg", jpeg(64, 48)).await;
    let mut events = Events::open(web, &id).await;
    assert_eq!(events.status().await["status"], "pending");
    (id, events)
}

#[tokio::test]
async fn pending_then_ready_in_order_and_the_stream_ends() {
    let server = no_worker().await;
    let web = server.web_url();
    let id = upload_id(&web, "image/jpeg", jpeg(64, 48)).await;

    let mut events = Events::open(&web, &id).await;
    let first = events.status().await;
    assert_eq!(first["status"], "pending", "{first}");
    // The same document as `GET /v1/avatar/{id}`.
    assert_eq!(first, status(&web, &id).await);

    publish_default_variant(&server, &id).await;
    let second = events.status().await;
    assert_eq!(second["status"], "ready", "{second}");
    assert_eq!(second, status(&web, &id).await);
    assert!(events.next().await.is_none(), "the stream goes on after ready");

    // A stream opened once it is ready says so and ends at once.
    let mut again = Events::open(&web, &id).await;
    assert_eq!(again.status().await["status"], "ready");
    assert!(again.next().await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn the_real_worker_ends_the_stream_ready_or_failed() {
    let server = TestServer::start(&ALL_ROLES).await;
    let web = server.web_url();
    for (body, settled) in [(jpeg(300, 200), "ready"), (b"\xff\xd8\xff\xe0 not a jpeg at all".to_vec(), "failed")] {
        let id = upload_id(&web, "image/jpeg", body).await;
        let mut events = Events::open(&web, &id).await;
        let mut seen = Vec::new();
        while let Some((name, data)) = events.next().await {
            assert_eq!(name, "status");
            seen.push(data);
        }
        let labels: Vec<_> = seen.iter().map(|s| s["status"].as_str().unwrap_or("?").to_owned()).collect();
        // At most one pending (sent only on change), then the settled status, last.
        assert!(labels == [settled] || labels == ["pending", settled], "{labels:?}");
        let last = seen.last().expect("an event");
        assert_eq!(*last, status(&web, &id).await);
        if settled == "failed" {
            assert!(last["error"].as_str().is_some_and(|e| !e.is_empty()), "{last}");
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_malformed_and_deleted_ids_are_404() {
    let server = no_worker().await;
    let web = server.web_url();
    for id in [
        "0123456789abcdef0123456789abcdef",
        "nope",
        "0123456789ABCDEF0123456789ABCDEF",
        "..%2f..%2fetc",
        &"a".repeat(5000),
    ] {
        let resp = reqwest::get(format!("{web}/v1/avatar/{id}/events")).await.expect("request");
        expect_error(resp, StatusCode::NOT_FOUND).await;
    }
    // Deleted while a stream is open: the stream ends, and is 404 after.
    let (id, mut events) = pending_stream(&web).await;
    let deleted = reqwest::Client::new().delete(format!("{web}/v1/avatar/{id}")).bearer_auth(TOKEN).send().await;
    assert_eq!(deleted.expect("delete").status(), StatusCode::OK);
    assert!(events.next().await.is_none(), "the stream of a deleted upload goes on");
    let resp = reqwest::get(format!("{web}/v1/avatar/{id}/events")).await.expect("request");
    expect_error(resp, StatusCode::NOT_FOUND).await;
    server.shutdown().await;
}

#[tokio::test]
async fn other_methods_are_refused() {
    let server = no_worker().await;
    let web = server.web_url();
    let id = upload_id(&web, "image/jpeg", jpeg(64, 48)).await;
    let url = format!("{web}/v1/avatar/{id}/events");
    let http = reqwest::Client::new();
    for resp in [http.post(&url).body("x").send(), http.delete(&url).bearer_auth(TOKEN).send()] {
        assert_eq!(resp.await.expect("request").status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    // Still pending: nothing above touched the upload.
    assert_eq!(status(&web, &id).await["status"], "pending");
    server.shutdown().await;
}

/// Waits until the proxy holds `n` requests, gives more every chance to
/// arrive (a watcher's first probes come 25 ms apart), and asserts that
/// none did.
async fn held_stays_at(proxy: &Proxy, n: usize, what: &str) {
    proxy.wait_held(n, DEADLINE).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(proxy.held(), n, "{what}");
}

/// A web tier of its own (`--roles web`) against S3/SQS behind a proxy
/// that holds every HEAD of the watched id's keys: however many streams
/// follow the id, one probe at a time reaches S3.
#[tokio::test]
async fn streams_of_one_id_share_one_probe_and_work_with_roles_web() {
    let (core, proxy, web_tier) = tier_behind_proxy(&[Role::Web]).await;
    let web = web_tier.web_url();
    let id = upload_id(&web, "image/jpeg", jpeg(64, 48)).await;

    let mut streams = Vec::new();
    for _ in 0..6 {
        let mut events = Events::open(&web, &id).await;
        assert_eq!(events.status().await["status"], "pending");
        streams.push(events);
    }
    // Every stream has had its first status; from here on only the
    // watcher asks S3 about this id.
    let watched = id.clone();
    proxy.hold(move |method, path| method == http::Method::HEAD && path.contains(&watched));
    // Unshared watchers (one per stream) would show up as more.
    held_stays_at(&proxy, 1, "probes of the same id at once").await;

    proxy.pass_all();
    publish_default_variant(&core, &id).await;
    for mut events in streams {
        assert_eq!(events.status().await["status"], "ready");
        assert!(events.next().await.is_none());
    }
    web_tier.shutdown().await;
    core.shutdown().await;
}

/// Streams on more pending uploads than [`PROBES_IN_FLIGHT`], behind a
/// proxy that holds every HEAD: each probe that gets through stays in
/// flight, so what the proxy holds is how many watchers ask S3 at once.
/// Once S3 answers again, every stream still hears `ready`.
#[tokio::test]
async fn many_watchers_ask_s3_a_bounded_number_at_a_time() {
    let (core, proxy, web_tier) = tier_behind_proxy(&[Role::Web]).await;
    let web = web_tier.web_url();

    let mut pending = Vec::new();
    for _ in 0..PROBES_IN_FLIGHT + 16 {
        pending.push(pending_stream(&web).await);
    }
    proxy.hold(|method, _| method == http::Method::HEAD);
    held_stays_at(&proxy, PROBES_IN_FLIGHT, "probes in flight, beyond the bound").await;

    proxy.pass_all();
    for (id, _) in &pending {
        publish_default_variant(&core, id).await;
    }
    for (_, mut events) in pending {
        assert_eq!(events.status().await["status"], "ready");
        assert!(events.next().await.is_none());
    }
    web_tier.shutdown().await;
    core.shutdown().await;
}

/// A probe S3 never answers is abandoned after [`PROBE_TIMEOUT`] and the
/// watcher asks again: a stall cannot keep a watcher (nor its turn to
/// probe) for the SDK's retries of every call of a look. The proxy holds
/// every HEAD; a second first attempt (not an SDK retry) is the watcher's
/// next probe.
#[tokio::test]
async fn a_probe_s3_never_answers_is_given_up_and_asked_again() {
    let (core, proxy, web_tier) = tier_behind_proxy(&[Role::Web]).await;
    let web = web_tier.web_url();
    let (id, mut events) = pending_stream(&web).await;
    proxy.hold(|method, _| method == http::Method::HEAD);
    proxy.wait_first_attempts_held(1, DEADLINE).await;
    proxy.wait_first_attempts_held(2, 2 * PROBE_TIMEOUT).await;

    proxy.pass_all();
    publish_default_variant(&core, &id).await;
    assert_eq!(events.status().await["status"], "ready");
    web_tier.shutdown().await;
    core.shutdown().await;
}

/// Streams opening all at once (each reads the status first: four SDK
/// calls, two at a time) open many connections to S3 at once. Once that
/// burst has passed, the web tier keeps at most [`EMBEDDED_IDLE_CONNECTIONS`]
/// of them idle, beside the ones its watchers' probes are using (at most
/// [`PROBES_IN_FLIGHT`]); the proxy counts them.
#[tokio::test]
async fn a_burst_of_streams_leaves_a_bounded_pool() {
    let (core, proxy, web_tier) = tier_behind_proxy(&[Role::Web]).await;
    let web = web_tier.web_url();
    let streams = 3 * (EMBEDDED_IDLE_CONNECTIONS + PROBES_IN_FLIGHT);
    let mut ids = Vec::new();
    for _ in 0..streams {
        ids.push(upload_id(&web, "image/jpeg", jpeg(16, 16)).await);
    }
    let mut opening = tokio::task::JoinSet::new();
    for id in ids.clone() {
        let web = web.clone();
        opening.spawn(async move {
            let mut events = Events::open(&web, &id).await;
            assert_eq!(events.status().await["status"], "pending");
            events
        });
    }
    let mut open = Vec::new();
    while let Some(events) = opening.join_next().await {
        open.push(events.expect("stream task"));
    }
    let bound = EMBEDDED_IDLE_CONNECTIONS + PROBES_IN_FLIGHT;
    // Without a burst above the bound this test would prove nothing.
    let peak = proxy.peak_connections();
    assert!(peak > bound, "the burst opened only {peak} connections");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = proxy.connections();
    assert!(after <= bound, "{after} connections to S3 after the burst (at most {bound} expected)");

    for id in &ids {
        publish_default_variant(&core, id).await;
    }
    for mut events in open {
        assert_eq!(events.status().await["status"], "ready");
    }
    web_tier.shutdown().await;
    core.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let server = no_worker().await;
    let web = server.web_url();
    let (_, mut events) = pending_stream(&web).await;
    let stopping = tokio::spawn(server.shutdown());
    assert!(events.next().await.is_none(), "the stream outlived the shutdown");
    tokio::time::timeout(DEADLINE, stopping).await.expect("shutdown finishes").expect("shutdown task");
}

/// `crunchbox upload` (the real binary) behind a proxy that notes every
/// request: it follows the event stream and never polls the status.
#[tokio::test]
async fn crunchbox_upload_follows_the_stream_without_polling() {
    let server = TestServer::start(&ALL_ROLES).await;
    let proxy = Proxy::start(server.app().web_addr.expect("web listener")).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let noted = std::sync::Arc::clone(&seen);
    proxy.hold(move |method, path| {
        noted.lock().expect("log").push(format!("{method} {path}"));
        false
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("photo.jpg");
    std::fs::write(&photo, jpeg(320, 240)).expect("write photo");

    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_crunchbox"))
        .args(["upload", "--endpoint", &format!("http://{}", proxy.addr), "--token", TOKEN, "--wait-secs", "100"])
        .arg(&photo)
        .env_remove("CRUNCHBOX_UPLOAD_ENDPOINT")
        .env_remove("CRUNCHBOX_UPLOAD_TOKEN")
        .output();
    let out = tokio::time::timeout(DEADLINE, run).await.expect("upload finishes").expect("run crunchbox upload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(": ready ("), "{stdout}");

    let requests = seen.lock().expect("log").clone();
    let id = requests.iter().find_map(|r| r.strip_prefix("GET /v1/avatar/")?.strip_suffix("/events"));
    let id = id.unwrap_or_else(|| panic!("no event stream opened: {requests:?}"));
    assert!(stdout.contains(id), "{stdout}");
    let polls = requests.iter().filter(|r| **r == format!("GET /v1/avatar/{id}")).count();
    assert_eq!(polls, 0, "{requests:?}");
    assert_eq!(requests.len(), 2, "one upload, one stream: {requests:?}");
    server.shutdown().await;
}
