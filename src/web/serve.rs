//! `GET`/`HEAD /a/{id}[_small|_large]`: a variant's bytes from the public
//! bucket, with immutable caching headers.
//!
//! Each variant has two representations: its JPEG/PNG and, when the worker
//! made one, its WebP twin ([`AvatarId::twin_key`]), served to clients whose
//! `Accept` names WebP (see [`super::accept`]). Each keeps the ETag S3 gives
//! it, so `If-None-Match` is answered per representation, and every answer
//! says `Vary: Accept`. An avatar crunched before twins existed has none
//! and serves its JPEG/PNG to everyone.
//!
//! The body is streamed from S3 to the client as it arrives, and `HEAD`
//! asks S3 for the headers only, so serving never holds a variant in memory.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::WebState;
use super::accept::accepts_webp;
use super::error::{ApiError, unavailable};
use crate::avatar::{self, AvatarId, CACHE_CONTROL, WEBP_TYPE, parse_variant_path};
use crate::crunch::VariantName;

/// What S3 said about a variant, before any body is read.
struct Meta {
    content_type: Option<String>,
    content_length: Option<i64>,
    etag: Option<String>,
}

pub async fn variant(
    State(state): State<WebState>,
    method: Method,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut resp = match serve(&state, &method, &segment, &headers).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    // Even a 404 may differ by `Accept` (a twin is written before its variant).
    resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

async fn serve(state: &WebState, method: &Method, segment: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let (id, variant) = parse_variant_path(segment).ok_or(ApiError::NotFound)?;
    let s = &state.settings;
    let webp = accepts_webp(headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()));
    // A deleted upload's tombstone outranks a variant a racing worker may
    // still have written (see `crate::avatar`); asked at the same time, so
    // serving waits for one round trip, not two.
    let (deleted, response) = tokio::join!(
        avatar::is_deleted(&state.clients.s3, &s.private_bucket, &id),
        representation(state, method, &id, variant, webp, headers),
    );
    if deleted.map_err(ApiError::Unavailable)? {
        return Err(ApiError::NotFound);
    }
    response
}

/// The WebP twin when the client takes it and it exists, else the JPEG/PNG.
async fn representation(
    state: &WebState,
    method: &Method,
    id: &AvatarId,
    variant: VariantName,
    webp: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if webp {
        match fetch(state, method, &id.twin_key(variant), Kind::Twin, headers).await {
            // No twin: crunched before twins existed, or not ready yet.
            Err(ApiError::NotFound) => {}
            other => return other,
        }
    }
    fetch(state, method, &id.variant_key(variant), Kind::Variant, headers).await
}

/// Which of a variant's two representations an object is.
#[derive(Clone, Copy)]
enum Kind {
    /// The JPEG or PNG.
    Variant,
    /// The WebP twin.
    Twin,
}

/// The object at `key` (or 304), straight from the public bucket.
async fn fetch(
    state: &WebState,
    method: &Method,
    key: &str,
    kind: Kind,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let bucket = &state.settings.public_bucket;
    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let s3 = &state.clients.s3;

    let (meta, body) = if *method == Method::HEAD {
        let out = s3.head_object().bucket(bucket).key(key).set_if_none_match(if_none_match).send().await;
        match out {
            Ok(o) => (
                Meta {
                    content_type: o.content_type().map(str::to_owned),
                    content_length: o.content_length(),
                    etag: o.e_tag().map(str::to_owned),
                },
                axum::body::Body::empty(),
            ),
            Err(e) => {
                if let Some(etag) = not_modified_etag(&e) {
                    return Ok(not_modified(etag));
                }
                if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) {
                    return Err(ApiError::NotFound);
                }
                return Err(unavailable("reading the variant", e));
            }
        }
    } else {
        let out = s3.get_object().bucket(bucket).key(key).set_if_none_match(if_none_match).send().await;
        match out {
            Ok(o) => (
                Meta {
                    content_type: o.content_type().map(str::to_owned),
                    content_length: o.content_length(),
                    etag: o.e_tag().map(str::to_owned),
                },
                axum::body::Body::new(o.body.into_inner()),
            ),
            Err(e) => {
                if let Some(etag) = not_modified_etag(&e) {
                    return Ok(not_modified(etag));
                }
                if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) {
                    return Err(ApiError::NotFound);
                }
                return Err(unavailable("reading the variant", e));
            }
        }
    };

    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    // Only crunchbox's own output types are ever served, whatever an
    // object's metadata says.
    let content_type = match kind {
        Kind::Twin => WEBP_TYPE,
        Kind::Variant if meta.content_type.as_deref() == Some("image/png") => "image/png",
        Kind::Variant => "image/jpeg",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(len) = meta.content_length.and_then(|n| u64::try_from(n).ok()) {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(etag) = meta.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        h.insert(header::ETAG, etag);
    }
    common_headers(h);
    Ok(resp)
}

/// S3 answers a matching `If-None-Match` with a bodiless 304, which the
/// SDK reports as an error; returns the ETag S3 sent with it, if any.
fn not_modified_etag<E>(e: &SdkError<E, HttpResponse>) -> Option<Option<String>> {
    let raw = e.raw_response().filter(|r| r.status().as_u16() == 304)?;
    Some(raw.headers().get("etag").map(str::to_owned))
}

/// A 304 with the same caching headers a 200 would carry (RFC 9110 15.4.5).
fn not_modified(etag: Option<String>) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    let h = resp.headers_mut();
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        h.insert(header::ETAG, etag);
    }
    common_headers(h);
    resp
}

fn common_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}
