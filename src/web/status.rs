//! `GET /v1/avatar/{id}` and `DELETE /v1/avatar/{id}`: status derived from
//! S3 alone (see [`crate::avatar`]).

use aws_sdk_s3::operation::head_object::HeadObjectError;
use axum::Json;
use axum::extract::{Path, State};
use http::HeaderMap;
use serde_json::{Value, json};

use super::error::{ApiError, unavailable};
use super::{WebState, auth};
use crate::avatar::{AvatarId, FailureRecord};
use crate::crunch::VariantName;

/// What S3 says about an upload.
enum Status {
    Pending,
    Ready,
    Failed(FailureRecord),
}

async fn exists(state: &WebState, bucket: &str, key: &str) -> Result<bool, ApiError> {
    match state.clients.s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) => Ok(false),
        Err(e) => Err(unavailable("looking up the upload", e)),
    }
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

async fn lookup(state: &WebState, id: &AvatarId) -> Result<Option<Status>, ApiError> {
    let s = &state.settings;
    if exists(state, &s.public_bucket, &id.variant_key(VariantName::Default)).await? {
        return Ok(Some(Status::Ready));
    }
    if let Some(record) = failure(state, id).await? {
        return Ok(Some(Status::Failed(record)));
    }
    if exists(state, &s.private_bucket, &id.original_key()).await? {
        return Ok(Some(Status::Pending));
    }
    Ok(None)
}

fn parse_id(raw: &str) -> Result<AvatarId, ApiError> {
    AvatarId::parse(raw).ok_or(ApiError::NotFound)
}

pub async fn status(State(state): State<WebState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&raw)?;
    let status = lookup(&state, &id).await?.ok_or(ApiError::NotFound)?;
    let s = &state.settings;
    let variants = json!({
        "default": s.avatar_url(&id.variant_key(VariantName::Default)),
        "small": s.avatar_url(&id.variant_key(VariantName::Small)),
        "large": s.avatar_url(&id.variant_key(VariantName::Large)),
    });
    let mut body = json!({
        "id": id.as_str(),
        "url": s.avatar_url(id.as_str()),
        "variants": variants,
    });
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
    Ok(Json(body))
}

pub async fn delete(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::check_bearer(&headers, &state.settings.upload_tokens)?;
    let id = parse_id(&raw)?;
    lookup(&state, &id).await?.ok_or(ApiError::NotFound)?;
    let s = &state.settings;
    let mut keys: Vec<(&str, String)> =
        VariantName::ALL.iter().map(|&v| (s.public_bucket.as_str(), id.variant_key(v))).collect();
    keys.push((&s.private_bucket, id.failure_key()));
    // The original goes last: while it exists the upload still reads as
    // known, so a failed delete can simply be retried.
    keys.push((&s.private_bucket, id.original_key()));
    for (bucket, key) in keys {
        state
            .clients
            .s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable("deleting", e))?;
    }
    tracing::info!(id = %id, "avatar deleted");
    Ok(Json(json!({})))
}
