//! The web role: takes uploads, reports their status and serves variants.
//!
//! It holds no state of its own: everything lives in S3 (originals, failure
//! records, variants) and SQS (the crunch queue), reached through the SDK
//! clients, so any number of web processes can run side by side.

mod accept;
mod body;
mod error;
mod events;
mod ops;
mod page;
mod serve;
mod status;
mod upload;
mod watch;

pub mod auth;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::budget::BodyBudget;
use crate::clients::Clients;
use crate::config::Config;
use crate::crunch::Format;
use crate::shutdown::Shutdown;

pub use error::ApiError;
pub use watch::{PROBE_TIMEOUT, PROBES_IN_FLIGHT};

/// What the handlers need besides the clients.
#[derive(Debug)]
pub struct Settings {
    pub upload_tokens: Vec<String>,
    /// Base of the URLs handed out, without a trailing slash.
    pub public_url: String,
    pub max_upload_bytes: u64,
    pub private_bucket: String,
    pub public_bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub trigger: crate::config::Trigger,
    /// Memory for upload bodies that must be held whole (no length).
    pub held_bodies: BodyBudget,
    /// Paces the queue-depth refresh of `/metrics`.
    pub depth_refresh: ops::Throttle,
    /// The shared watchers behind the event streams.
    pub watchers: watch::Watchers,
}

impl Settings {
    pub fn new(config: &Config, queue_url: String, dlq_url: String) -> Self {
        Self {
            upload_tokens: config.web.upload_tokens.clone(),
            // Unset, `web.listen` (the caller may have put the bound address there).
            public_url: config.public_url(None).trim_end_matches('/').to_owned(),
            max_upload_bytes: config.web.max_upload_bytes,
            private_bucket: config.buckets.private.clone(),
            public_bucket: config.buckets.public.clone(),
            queue_url,
            dlq_url,
            trigger: config.pipeline.trigger,
            held_bodies: BodyBudget::new(upload::HELD_BODIES_BUDGET),
            depth_refresh: ops::Throttle::default(),
            watchers: watch::Watchers::default(),
        }
    }

    /// `{public_url}/a/{key}`.
    pub fn avatar_url(&self, key: &str) -> String {
        format!("{}/a/{key}", self.public_url)
    }
}

/// How long each attempt of a web request's S3 or SQS call may wait for an
/// answer (see [`Clients::with_attempt_timeout`]): they are HEADs, small
/// GETs and PUTs, deletes and sends, answered in milliseconds. Past it the
/// SDK retries, and a request whose every attempt timed out gets a 503
/// instead of hanging on a connection that died silently.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct WebState {
    /// For every call but the upload's PUT; attempts bounded by [`ATTEMPT_TIMEOUT`].
    pub clients: Clients,
    /// For the PUT that streams an upload's body to S3 while its client
    /// sends it: that attempt takes as long as the client does, so it has
    /// no bound of its own. The listener's rules end it instead: its
    /// minimum rate a client that trickles, its stall rule (60 s without a
    /// byte either way) a client that stops or an S3 that never answers.
    pub uploads: aws_sdk_s3::Client,
    pub settings: Arc<Settings>,
    /// The web stage's; ends event streams so a drain need not wait.
    pub shutdown: Shutdown,
}

impl WebState {
    pub fn new(clients: &Clients, settings: Settings, shutdown: Shutdown) -> Self {
        let clients = clients.with_own_retries("web");
        Self {
            clients: clients.with_attempt_timeout(ATTEMPT_TIMEOUT),
            uploads: clients.s3,
            settings: Arc::new(settings),
            shutdown,
        }
    }
}

/// Every route in SPEC's table.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/v1/avatar/upload", post(upload::upload))
        .route("/v1/avatar/{id}", get(status::status).delete(status::delete))
        .route("/v1/avatar/{id}/events", get(events::events))
        .route("/a/{key}", get(serve::variant))
        .route("/__lbheartbeat__", get(ops::lbheartbeat))
        .route("/__heartbeat__", get(ops::heartbeat))
        .route("/__version__", get(ops::version))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::NotFound })
        // Last: it covers the routes above (405 with `Allow`, in JSON).
        .method_not_allowed_fallback(|method: http::Method| async move { ApiError::MethodNotAllowed(method) })
        .with_state(state)
}

/// The image types uploads may declare, by their `Content-Type`.
pub fn format_for_mime(mime: &str) -> Option<Format> {
    let essence = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "image/jpeg" => Some(Format::Jpeg),
        "image/png" => Some(Format::Png),
        "image/gif" => Some(Format::Gif),
        "image/webp" => Some(Format::Webp),
        _ => None,
    }
}
