//! `GET /v1/avatar/{id}/events`: the upload's status as server-sent events.
//!
//! A `status` event carries the same JSON as `GET /v1/avatar/{id}`: one at
//! once, then one per change seen by the id's shared watcher
//! ([`super::watch`]). The stream ends after `ready` or `failed`, when the
//! upload is deleted, on shutdown, or after [`MAX_STREAM`]; an
//! `EventSource` then reconnects by itself, so a stream's cost is bounded in
//! time as well as in number (`web.max_connections`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use http::{HeaderValue, header};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::WebState;
use super::error::ApiError;
use super::status::{self, is_settled, parse_id};
use super::watch::Seen;
use crate::shutdown::Shutdown;

/// The longest a stream stays open; a client still waiting reconnects.
const MAX_STREAM: Duration = Duration::from_secs(300);
/// A comment this often keeps proxies from timing the stream out and lets
/// the server notice a client that went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn events(State(state): State<WebState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    // Read here, not taken from a running watcher: a 404 or a 503 is
    // answered as a plain JSON error before the stream starts, and the
    // first event is never stale.
    let first = status::current(&state, &id).await?.ok_or(ApiError::NotFound)?;
    let updates = (!is_settled(&first)).then(|| state.settings.watchers.subscribe(&state, &id, &first));
    let sse = Sse::new(feed(first, updates, state.shutdown.clone())).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    let mut resp = sse.into_response();
    // nginx and its kin buffer responses unless told not to.
    resp.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Where a stream is: the status to send first, the last one sent, and the
/// watcher's channel.
struct Feed {
    first: Option<Value>,
    last: Option<Value>,
    updates: Option<watch::Receiver<Seen>>,
    until: Instant,
    /// Ends the stream, so a graceful shutdown need not wait for it.
    shutdown: Shutdown,
}

/// `first`, then every different status from `updates`, until one settles.
fn feed(
    first: Value,
    updates: Option<watch::Receiver<Seen>>,
    shutdown: Shutdown,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let until = Instant::now() + MAX_STREAM;
    let start = Feed { first: Some(first), last: None, updates, until, shutdown };
    futures_util::stream::unfold(start, |mut feed| async move {
        let next = match feed.first.take() {
            Some(first) => first,
            None => next_change(&mut feed).await?,
        };
        let event = Event::default().event("status").data(next.to_string());
        feed.last = Some(next);
        Some((Ok(event), feed))
    })
}

/// The next status that differs from the last one sent; `None` to end.
async fn next_change(feed: &mut Feed) -> Option<Value> {
    if feed.last.as_ref().is_some_and(is_settled) {
        return None;
    }
    let updates = feed.updates.as_mut()?;
    loop {
        let changed = tokio::select! {
            changed = tokio::time::timeout_at(feed.until, updates.changed()) => changed,
            () = feed.shutdown.wait() => return None,
        };
        // An error: the watcher ended and every value has been read.
        changed.ok()?.ok()?;
        let Seen::Status(body) = updates.borrow_and_update().clone() else { return None };
        if feed.last.as_ref() != Some(&body) {
            return Some(body);
        }
    }
}
