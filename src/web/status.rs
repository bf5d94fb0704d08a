//! `GET /v1/avatar/{id}` and `DELETE /v1/avatar/{id}`: status derived from
//! S3 alone (see [`crate::avatar`]).

use aws_sdk_s3::primitives::ByteStream;
use axum::Json;
use axum::extract::{Path, State};
use http::HeaderMap;
use serde_json::{Value, json};

use super::error::{ApiError, unavailable};
use super::{WebState, auth};
use crate::avatar::{self, AvatarId, FailureRecord};
use crate::crunch::VariantName;

/// What S3 says about an upload.
enum Status {
    Pending,
    Ready,
    Failed(FailureRecord),
}

async fn failure(state: &WebState, id: &AvatarId) -> Result<Option<FailureRecord>, ApiError> {
    let got = state.clients.s3.get_object().bucket(&state.settings.private_bucket).key(id.failure_key()).send().await;
    match got {
        Ok(out) => {
            let bytes = out.body.collect().await.map_err(|e| unavailable("reading the failure record", e))?;
            let record = serde_json::from_slice(&bytes.into_bytes()).unwrap_or_else(|_| FailureRecord {
                reason: "unknown".into(),
                message: "the failure record is unreadable".into(),
            });
            Ok(Some(record))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(unavailable("looking up the upload", e)),
    }
}

/// The upload's status; `None` if it is unknown or was deleted.
async fn lookup(state: &WebState, id: &AvatarId) -> Result<Option<Status>, ApiError> {
    let s = &state.settings;
    let s3 = &state.clients.s3;
    let default_key = id.variant_key(VariantName::Default);
    let (deleted, ready) = tokio::try_join!(
        avatar::is_deleted(s3, &s.private_bucket, id),
        avatar::exists(s3, &s.public_bucket, &default_key),
    )
    .map_err(ApiError::Unavailable)?;
    if deleted {
        return Ok(None);
    }
    if ready {
        return Ok(Some(Status::Ready));
    }
    if let Some(record) = failure(state, id).await? {
        return Ok(Some(Status::Failed(record)));
    }
    if avatar::exists(s3, &s.private_bucket, &id.original_key()).await.map_err(ApiError::Unavailable)? {
        return Ok(Some(Status::Pending));
    }
    Ok(None)
}

pub(super) fn parse_id(raw: &str) -> Result<AvatarId, ApiError> {
    AvatarId::parse(raw).ok_or(ApiError::NotFound)
}

pub async fn status(State(state): State<WebState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&raw)?;
    let body = current(&state, &id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(body))
}

/// The body of `GET /v1/avatar/{id}`; `None` if the id is unknown or was
/// deleted. The event stream sends the same document.
pub(super) async fn current(state: &WebState, id: &AvatarId) -> Result<Option<Value>, ApiError> {
    let Some(status) = lookup(state, id).await? else { return Ok(None) };
    let s = &state.settings;
    let mut body = json!({ "id": id.as_str(), "url": s.avatar_url(id.as_str()) });
    let label = match status {
        Status::Pending => "pending",
        Status::Ready => "ready",
        Status::Failed(record) => {
            body["error"] = json!(record.message);
            body["reason"] = json!(record.reason);
            "failed"
        }
    };
    body["status"] = json!(label);
    // No variant of a failed upload will ever exist: only the others list them.
    if label != "failed" {
        body["variants"] = json!({
            "default": s.avatar_url(&id.variant_key(VariantName::Default)),
            "small": s.avatar_url(&id.variant_key(VariantName::Small)),
            "large": s.avatar_url(&id.variant_key(VariantName::Large)),
        });
    }
    Ok(Some(body))
}

/// Whether a status document is final (`ready` or `failed`): it changes no more.
pub(super) fn is_settled(body: &Value) -> bool {
    matches!(body["status"].as_str(), Some("ready" | "failed"))
}

pub async fn delete(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::check_bearer(&headers, &state.settings.upload_tokens)?;
    let id = parse_id(&raw)?;
    let s = &state.settings;
    let s3 = &state.clients.s3;
    if avatar::is_deleted(s3, &s.private_bucket, &id).await.map_err(ApiError::Unavailable)? {
        // Deleted before; finish what a failed earlier DELETE left, then
        // answer as for any unknown id.
        remove_pieces(&state, &id).await?;
        return Err(ApiError::NotFound);
    }
    lookup(&state, &id).await?.ok_or(ApiError::NotFound)?;
    // The tombstone first: from the moment it is durable, nothing of this
    // id is served, whatever a worker still writes (see `crate::avatar`).
    s3.put_object()
        .bucket(&s.private_bucket)
        .key(id.tombstone_key())
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .map_err(|e| unavailable("deleting", e))?;
    remove_pieces(&state, &id).await?;
    tracing::info!(id = %id, "avatar deleted");
    Ok(Json(json!({})))
}

/// Removes the variants, the failure record and the original.
async fn remove_pieces(state: &WebState, id: &AvatarId) -> Result<(), ApiError> {
    let s = &state.settings;
    let s3 = &state.clients.s3;
    avatar::delete_variants(s3, &s.public_bucket, id).await.map_err(ApiError::Unavailable)?;
    for key in [id.failure_key(), id.original_key()] {
        s3.delete_object().bucket(&s.private_bucket).key(key).send().await.map_err(|e| unavailable("deleting", e))?;
    }
    Ok(())
}
