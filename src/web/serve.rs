//! `GET`/`HEAD /a/{id}[_small|_large]`: a variant's bytes from the public
//! bucket, with immutable caching headers.

use aws_sdk_s3::operation::get_object::GetObjectError;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::WebState;
use super::error::{ApiError, unavailable};
use crate::avatar::parse_variant_path;

/// Variants never change under a key, so caches may keep them forever.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

pub async fn variant(
    State(state): State<WebState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (id, variant) = parse_variant_path(&segment).ok_or(ApiError::NotFound)?;
    let mut req = state.clients.s3.get_object().bucket(&state.settings.public_bucket).key(id.variant_key(variant));
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        req = req.if_none_match(inm);
    }
    let out = match req.send().await {
        Ok(out) => out,
        Err(e) => {
            if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) {
                let mut resp = StatusCode::NOT_MODIFIED.into_response();
                common_headers(resp.headers_mut());
                if let Some(etag) = headers.get(header::IF_NONE_MATCH) {
                    resp.headers_mut().insert(header::ETAG, etag.clone());
                }
                return Ok(resp);
            }
            if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) {
                return Err(ApiError::NotFound);
            }
            return Err(unavailable("reading the variant", e));
        }
    };
    // Only crunchbox's own two output types are ever served, whatever an
    // object's metadata says.
    let content_type = match out.content_type() {
        Some("image/png") => "image/png",
        _ => "image/jpeg",
    };
    let etag = out.e_tag().and_then(|e| HeaderValue::from_str(e).ok());
    let bytes = out.body.collect().await.map_err(|e| unavailable("reading the variant", e))?.into_bytes();
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(etag) = etag {
        h.insert(header::ETAG, etag);
    }
    common_headers(h);
    Ok(resp)
}

fn common_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}
