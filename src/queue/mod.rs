//! The embedded, sled-backed SQS.
//!
//! A request passes through three layers that never reach past each other:
//! the wire protocol ([`json`] or [`query`]) turns it into an action name and
//! an input in the JSON protocol's shape; an action in [`cmd`] validates it
//! and calls the [`store`]; the protocol renders the result. SigV4 is
//! checked first, over the buffered body.

mod background;
pub mod cmd;
pub mod error;
mod json;
pub mod md5;
mod params;
mod query;
mod s3_events;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::budget::BodyBudget;
use crate::config::Config;
use crate::endpoint::sigv4::{MAX_BODY, SQS_BODY_BUDGET, Verifier};
pub use error::{Code, SqsError};
pub use store::durability_stats;
use store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue store: {0}")]
    Store(#[from] StoreError),
}

/// The queue store's sled database under the data dir.
pub fn store_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("queue")
}

/// The SQS service behind the endpoint. Cheap to clone.
#[derive(Clone)]
pub struct QueueService {
    inner: Arc<Inner>,
}

/// What every action may need besides its input.
pub struct Inner {
    pub store: Arc<Store>,
    verifier: Verifier,
    pub account: String,
    pub region: String,
    /// Host for queue URLs when a request has no `Host` header.
    fallback_host: String,
    background: background::Background,
    /// Set when the process begins shutting down: long polls return at once
    /// so the listener's drain does not wait out their WaitTimeSeconds.
    closing: AtomicBool,
    /// FIFO receives by `ReceiveRequestAttemptId`, for their retries.
    attempts: cmd::Attempts,
}

impl Inner {
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

impl QueueService {
    /// Opens the store under `data_dir/queue` and starts its background task.
    pub fn open(config: &Config) -> Result<Self, QueueError> {
        let arn_prefix = format!("arn:aws:sqs:{}:{}:", config.aws.region, config.aws.account_id);
        let store = Arc::new(Store::open(&store_dir(&config.data_dir), arn_prefix)?);
        let background = background::Background::start(Arc::downgrade(&store));
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                verifier: Verifier::new(config.credentials(), BodyBudget::new(SQS_BODY_BUDGET)),
                account: config.aws.account_id.clone(),
                region: config.aws.region.clone(),
                fallback_host: config.embedded_endpoint_url().trim_start_matches("http://").to_owned(),
                background,
                closing: AtomicBool::new(false),
                attempts: cmd::Attempts::default(),
            }),
        })
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let is_json = req.headers().contains_key("x-amz-target")
            || req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-amz-json"));
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(&self.inner.fallback_host)
            .to_owned();
        let verified = match self.inner.verifier.read_verified(req, MAX_BODY).await {
            Ok(verified) => verified,
            Err(e) => {
                let err = SqsError::from(&e);
                return if is_json {
                    json::respond(Err(err), &request_id)
                } else {
                    query::respond("", Err(err), &request_id)
                };
            }
        };
        let (parts, body) = (&verified.parts, &verified.body);
        let ctx = cmd::Ctx { svc: &self.inner, endpoint: format!("http://{host}"), path: parts.uri.path().to_owned() };
        if is_json {
            let result = match json::parse(parts, body) {
                Ok((action, input)) => cmd::dispatch(&ctx, &action, input).await,
                Err(e) => Err(e),
            };
            json::respond(result, &request_id)
        } else {
            match query::parse(parts, body) {
                Ok((action, input)) => {
                    let result = cmd::dispatch(&ctx, &action, input).await;
                    query::respond(&action, result, &request_id)
                }
                Err(e) => query::respond("", Err(e), &request_id),
            }
        }
    }

    /// `GET /_aws/sqs/messages?QueueUrl=URL` (a CI dev endpoint): every
    /// message of the queue, in ReceiveMessage's shape (JSON when the client
    /// accepts it, else the Query protocol's XML), without receiving any.
    pub fn peek<B>(&self, req: &Request<B>) -> Response<s3s::Body> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let wants_json = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json") || v.contains("application/x-amz-json"));
        let host =
            req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(&self.inner.fallback_host);
        let ctx = cmd::Ctx { svc: &self.inner, endpoint: format!("http://{host}"), path: "/".into() };
        let mut input = serde_json::Map::new();
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            if k == "QueueUrl" {
                input.insert(k.into_owned(), v.into_owned().into());
            }
        }
        let result = cmd::peek(&ctx, &params::Input(input));
        if !wants_json {
            return query::respond("ReceiveMessage", result, &request_id);
        }
        let mut resp = json::respond(result, &request_id);
        // Asked for plain JSON (LocalStack's clients do): say so.
        resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        resp
    }

    /// Deletes every queue and message, durably (the CI reset).
    pub async fn reset(&self) -> Result<(), QueueError> {
        self.inner.store.wipe()?;
        self.inner.store.durable(0).await?;
        Ok(())
    }

    /// Fuzzing entry point (`fuzz/`, regression tests): one request's head
    /// and body through both wire protocols' parsers, the typed reads the
    /// actions make, and both renderers; no SigV4, no store.
    #[doc(hidden)]
    pub fn fuzz_protocols(parts: &http::request::Parts, body: &[u8]) {
        fn reads(input: &params::Input) {
            let _ = input.str_map("Attributes");
            let _ = input.str_list("AttributeNames");
            let _ = input.int_in("WaitTimeSeconds", 0..=20);
            let _ = input.object("MessageAttributes");
            if let Ok(entries) = input.entries("Entries") {
                for e in &entries {
                    let _ = e.required_str("Id");
                    let _ = e.int("DelaySeconds");
                }
            }
        }
        match json::parse(parts, body) {
            Ok((_, input)) => {
                reads(&input);
                let _ = json::respond(Ok(serde_json::Value::Object(input.0)), "fuzz");
            }
            Err(e) => drop(json::respond(Err(e), "fuzz")),
        }
        match query::parse(parts, body) {
            Ok((action, input)) => {
                reads(&input);
                let _ = query::respond(&action, Ok(serde_json::Value::Object(input.0)), "fuzz");
            }
            Err(e) => drop(query::respond("", Err(e), "fuzz")),
        }
    }

    /// Ends every long poll now (with no messages) and every later one at
    /// once; call when shutdown begins, before draining connections.
    pub fn begin_shutdown(&self) {
        self.inner.closing.store(true, Ordering::Relaxed);
        for q in self.inner.store.queues() {
            q.notify.notify_waiters();
        }
    }

    /// Calls [`Self::begin_shutdown`] when `shutdown` fires.
    pub fn watch_shutdown(&self, mut shutdown: crate::shutdown::Shutdown) {
        let this = self.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            this.begin_shutdown();
        });
    }

    /// Stops the background task and flushes outstanding writes; called on
    /// shutdown.
    pub async fn close(&self) -> Result<(), QueueError> {
        self.inner.background.stop().await;
        self.inner.store.durable(0).await?;
        Ok(())
    }
}
