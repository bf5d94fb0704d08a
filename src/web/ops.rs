//! Dockerflow endpoints and Prometheus metrics.

use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::error::display::DisplayErrorContext;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::{Value, json};

use super::WebState;
use crate::metrics as m;

/// How long a dependency may take to answer a heartbeat.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn lbheartbeat() -> StatusCode {
    StatusCode::OK
}

/// 200 when both buckets and the queue answer; 503 naming what failed.
pub async fn heartbeat(State(state): State<WebState>) -> Response {
    let s = &state.settings;
    let s3 = &state.clients.s3;
    let (private, public, queue) = tokio::join!(
        check("private bucket", s3.head_bucket().bucket(&s.private_bucket).send()),
        check("public bucket", s3.head_bucket().bucket(&s.public_bucket).send()),
        check(
            "crunch queue",
            state
                .clients
                .sqs
                .get_queue_attributes()
                .queue_url(&s.queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
        ),
    );
    let mut failed = serde_json::Map::new();
    for (name, result) in [("s3", private.and(public)), ("sqs", queue)] {
        if let Err(reason) = result {
            failed.insert(name.to_owned(), Value::String(reason));
        }
    }
    if failed.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok", "checks": {"s3": "ok", "sqs": "ok"}}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "error", "checks": failed}))).into_response()
    }
}

/// One dependency's check: `Err` with a reason fit for anyone who asks
/// (the endpoint is anonymous) — what failed and AWS's error code or the
/// kind of failure. The SDK's whole error (endpoint URLs, connector
/// errors, response dumps) goes to the log only.
async fn check<T, E, R>(what: &'static str, fut: impl Future<Output = Result<T, SdkError<E, R>>>) -> Result<(), String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let e = match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => e,
        Err(_) => return Err(format!("{what}: timed out")),
    };
    tracing::warn!(check = what, error = %DisplayErrorContext(&e), "heartbeat check failed");
    let reason = match &e {
        SdkError::ServiceError(s) => s.err().code().unwrap_or("error"),
        SdkError::DispatchFailure(_) => "unreachable",
        SdkError::TimeoutError(_) => "timed out",
        SdkError::ResponseError(_) => "unreadable answer",
        _ => "request failed",
    };
    Err(format!("{what}: {reason}"))
}

pub async fn version() -> Json<Value> {
    Json(json!({
        "source": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("BUILD_GIT_COMMIT"),
        "build": "cargo",
    }))
}

/// Prometheus text. The queue depth gauge is refreshed by a scrape at most
/// every [`DEPTH_REFRESH`] and waits at most [`DEPTH_TIMEOUT`] for SQS, so
/// an anonymous scraper can neither turn scrapes into a stream of SQS calls
/// nor hold requests open on a slow queue.
pub async fn metrics(State(state): State<WebState>) -> Response {
    if state.settings.depth_refresh.due(DEPTH_REFRESH) {
        refresh_queue_depth(&state).await;
    }
    let text = m::handle().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn refresh_queue_depth(state: &WebState) {
    let depth = state
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&state.settings.queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send();
    if let Ok(Ok(out)) = tokio::time::timeout(DEPTH_TIMEOUT, depth).await {
        let attrs = out.attributes();
        for (attr, state_label) in [
            (QueueAttributeName::ApproximateNumberOfMessages, "visible"),
            (QueueAttributeName::ApproximateNumberOfMessagesNotVisible, "in_flight"),
        ] {
            if let Some(n) = attrs.and_then(|a| a.get(&attr)).and_then(|v| v.parse::<f64>().ok()) {
                metrics::gauge!(m::QUEUE_DEPTH, "state" => state_label).set(n);
            }
        }
    }
}

/// A scrape refreshes the queue depth at most this often.
const DEPTH_REFRESH: Duration = Duration::from_secs(5);
/// How long a scrape waits for the queue depth.
const DEPTH_TIMEOUT: Duration = Duration::from_secs(2);

/// When something was last done, to do it at most once per interval
/// across concurrent requests.
#[derive(Debug, Default)]
pub struct Throttle(std::sync::Mutex<Option<std::time::Instant>>);

impl Throttle {
    /// True (and the clock restarts) if `every` has passed since the last time.
    pub fn due(&self, every: Duration) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }
}
