//! `POST /v1/avatar/upload`: body → private bucket → crunch queue → 201.
//!
//! The order is the guarantee: the message is sent only after the PUT
//! succeeded, and the 201 only after the message was accepted, so no
//! message ever points at a missing object and no 201 is ever lost.

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::body::{self, BodyError};
use super::error::{ApiError, unavailable};
use super::{WebState, auth, format_for_mime};
use crate::avatar::AvatarId;
use crate::budget::{self, HELD_PACE, ReadError};
use crate::config::Trigger;
use crate::metrics as m;

/// Enough bytes to recognise every accepted format's signature.
const MAGIC_LEN: usize = 16;
/// The largest upload taken without a `Content-Length` (it is held in
/// memory to be measured; everything larger streams, and must say its size).
pub const CHUNKED_MAX: u64 = 1024 * 1024;
/// Bytes of such uploads held at once, across all connections.
pub const HELD_BODIES_BUDGET: u32 = 32 * 1024 * 1024;

pub async fn upload(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let result = accept(&state, &headers, body).await;
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(e) if e.status().is_server_error() => "error",
        Err(_) => "rejected",
    };
    metrics::counter!(m::UPLOADS, "outcome" => outcome).increment(1);
    result
}

async fn accept(
    state: &WebState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let settings = &state.settings;
    auth::check_bearer(headers, &settings.upload_tokens)?;
    let declared = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(format_for_mime)
        .ok_or(ApiError::UnsupportedType)?;
    let length = match headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::BodyRead("Content-Length is not a number".into()))?,
        ),
        None => None,
    };
    let limit = settings.max_upload_bytes;
    if length.is_some_and(|len| len > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    if length == Some(0) {
        return Err(ApiError::EmptyBody);
    }

    let (prefix, rest) = body::read_prefix(body, MAGIC_LEN).await.map_err(body_error(limit))?;
    if prefix.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    if crate::crunch::detect(&prefix) != Some(declared) {
        return Err(ApiError::MagicMismatch(declared.mime()));
    }

    // Held until the PUT is done, for a body that has to be held whole.
    let mut _reserved = None;
    let (stream, len, pumping) = match length {
        Some(len) => {
            let (channel, pumping) = body::pump(prefix, rest, len);
            (ByteStream::new(SdkBody::from_body_1_x(channel)), len, Some(pumping))
        }
        None => {
            // No length to give S3 up front: hold the body, at most
            // CHUNKED_MAX of it, from the shared budget, then store it in
            // one PUT. Larger bodies must say their length.
            let cap = limit.min(CHUNKED_MAX);
            _reserved = Some(settings.held_bodies.reserve(cap).await.map_err(|_| ApiError::Busy)?);
            let room = usize::try_from(cap).unwrap_or(usize::MAX).saturating_sub(prefix.len());
            let rest = budget::read_held(rest, room, HELD_PACE).await.map_err(|e| match e {
                ReadError::TooLarge if cap < limit => ApiError::LengthRequired(cap),
                ReadError::TooLarge => ApiError::TooLarge(limit),
                ReadError::TooSlow => ApiError::TooSlow,
                ReadError::Body(e) => ApiError::BodyRead(e),
            })?;
            let whole = Bytes::from([prefix, rest].concat());
            let len = whole.len() as u64;
            (ByteStream::from(whole), len, None)
        }
    };

    let id = AvatarId::generate().map_err(|e| ApiError::Internal(Box::new(e)))?;
    // Only a streamed body's PUT lasts as long as its client takes.
    let s3 = if pumping.is_some() { &state.uploads } else { &state.clients.s3 };
    let put = s3
        .put_object()
        .bucket(&settings.private_bucket)
        .key(id.original_key())
        .content_type(declared.mime())
        .content_length(len as i64)
        .body(stream)
        .send()
        .await;
    if let Err(e) = put {
        // A PUT that failed because the client's body did (too short, a
        // read error) is the client's fault, not a storage outage.
        if let Some(pumping) = pumping
            && let Ok(Err(body_err)) = pumping.await
        {
            return Err(body_error(limit)(body_err));
        }
        return Err(unavailable("storing the upload", e));
    }

    // With `pipeline.trigger = s3-event` the private bucket's notification
    // queues the crunch; otherwise the id is sent here, after the PUT.
    if settings.trigger == Trigger::Message
        && let Err(e) =
            state.clients.sqs.send_message().queue_url(&settings.queue_url).message_body(id.as_str()).send().await
    {
        // Nothing points at the original: remove it so it does not linger.
        let _ = state.clients.s3.delete_object().bucket(&settings.private_bucket).key(id.original_key()).send().await;
        return Err(unavailable("queueing the upload", e));
    }

    tracing::info!(id = %id, bytes = len, "upload accepted");
    let body = serde_json::json!({
        "id": id.as_str(),
        "url": settings.avatar_url(id.as_str()),
        "status": "pending",
    });
    Ok((StatusCode::CREATED, Json(body)))
}

fn body_error(limit: u64) -> impl Fn(BodyError) -> ApiError {
    move |e| match e {
        BodyError::TooLong(_) => ApiError::TooLarge(limit),
        other => ApiError::BodyRead(other.to_string()),
    }
}
