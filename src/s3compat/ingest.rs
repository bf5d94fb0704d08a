//! Turns a request body into stored bytes while hashing it: small bodies
//! stay in memory (they go inline into the sled record), larger ones are
//! written in big batches to a temp file on the blocking pool and made a
//! durable blob. The MD5 (ETag) and any requested checksums are computed
//! on the way through, so nothing is read twice.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use md5::Digest as _;
use s3s::checksum::ChecksumHasher;
use s3s::dto;
use s3s::{S3Error, S3Result, StdError, s3_error};

use super::blob::TmpFile;
use super::checksums;
use super::meta::Checksums;
use super::store::Store;

/// Objects up to this size are stored inline in their sled record.
pub const INLINE_MAX: usize = 64 * 1024;
/// Bytes buffered before a write to the temp file (one blocking call per
/// batch): few enough that a thousand slow uploads stay within memory.
const WRITE_BATCH: usize = 128 * 1024;
/// A body that pauses with at least this much buffered (and too much to
/// stay inline) has it written out first, so a slow client holds at most
/// about this much here however long it trickles.
const IDLE_WRITE: usize = 64 * 1024;
/// AWS's single-PUT and single-part limit.
pub const MAX_UPLOAD: u64 = 5 * 1024 * 1024 * 1024;

pub enum Stored {
    Inline(Bytes),
    Blob(String),
}

pub struct Ingested {
    pub stored: Stored,
    pub size: u64,
    pub md5: [u8; 16],
    pub checksum: dto::Checksum,
}

impl Ingested {
    pub fn etag(&self) -> String {
        hex::encode(self.md5)
    }
}

/// Reads `body` to the end. `inline_max` is 0 for parts (always files).
pub async fn ingest<S>(
    store: &Arc<Store>,
    mut body: S,
    mut hasher: ChecksumHasher,
    inline_max: usize,
    size_hint: Option<u64>,
) -> S3Result<Ingested>
where
    S: Stream<Item = Result<Bytes, StdError>> + Unpin,
{
    if size_hint.is_some_and(|n| n > MAX_UPLOAD) {
        // Refused before a byte is read: the client learns now, not after
        // sending 5 GiB.
        return Err(too_large());
    }
    let mut md5 = md5::Md5::new();
    let hint = size_hint.and_then(|n| usize::try_from(n).ok()).unwrap_or(0).min(WRITE_BATCH);
    let mut buf: Vec<u8> = Vec::with_capacity(hint);
    let mut file: Option<TmpFile> = None;
    let mut size: u64 = 0;
    loop {
        let next = match body.next().now_or_never() {
            Some(next) => next,
            None => {
                if buf.len() >= IDLE_WRITE && buf.len() > inline_max {
                    let (tmp, rest) = store.append_tmp(file.take(), buf).await?;
                    file = Some(tmp);
                    buf = rest;
                }
                body.next().await
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(body_error)?;
        size += chunk.len() as u64;
        if size > MAX_UPLOAD {
            return Err(too_large());
        }
        md5.update(&chunk);
        hasher.update(&chunk);
        // Write before the buffer would outgrow a batch, so it is never
        // reallocated past WRITE_BATCH by a chunk that does not fit.
        if !buf.is_empty() && buf.len() + chunk.len() > WRITE_BATCH {
            let (tmp, rest) = store.append_tmp(file.take(), buf).await?;
            file = Some(tmp);
            buf = rest;
        }
        buf.extend_from_slice(&chunk);
    }
    let md5: [u8; 16] = md5.finalize().into();
    let checksum = hasher.finalize();
    let stored = if file.is_none() && buf.len() <= inline_max {
        Stored::Inline(Bytes::from(buf))
    } else {
        Stored::Blob(store.commit_tmp(file, buf).await?)
    };
    Ok(Ingested { stored, size, md5, checksum })
}

fn too_large() -> S3Error {
    s3_error!(EntityTooLarge, "Your proposed upload exceeds the maximum allowed object size.")
}

/// What an upload request (PutObject, UploadPart) says about its body.
pub struct Claims<'a> {
    /// `x-amz-checksum-*` header values.
    pub checksums: Checksums,
    pub algorithm: Option<&'a dto::ChecksumAlgorithm>,
    pub content_md5: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    /// Checksums that may follow an aws-chunked body.
    pub trailers: Option<&'a s3s::TrailingHeaders>,
}

/// The [`Claims`] of a PutObject / UploadPart request (same field names).
macro_rules! claims_of {
    ($input:ident, $headers:ident, $trailers:ident) => {
        $crate::s3compat::ingest::Claims {
            checksums: $crate::s3compat::meta::checksums_of!($input),
            algorithm: $input.checksum_algorithm.as_ref(),
            content_md5: $input.content_md5.as_deref(),
            headers: &$headers,
            trailers: $trailers.as_ref(),
        }
    };
}
pub(crate) use claims_of;

/// Ingests an upload body and checks it against everything its request
/// claimed; on a mismatch the stored bytes are dropped again. Returns the
/// body and its verified checksums (kept with the object or part).
pub async fn ingest_verified(
    store: &Arc<Store>,
    body: Option<dto::StreamingBlob>,
    claims: Claims<'_>,
    inline_max: usize,
    size_hint: Option<i64>,
) -> S3Result<(Ingested, Checksums)> {
    let Claims { checksums: mut claimed, algorithm, content_md5, headers, trailers } = claims;
    let hasher = checksums::hasher_for(&claimed, algorithm, headers);
    let size_hint = size_hint.and_then(|n| u64::try_from(n).ok());
    let body = body.unwrap_or_else(empty_body);
    let ingested = ingest(store, body, hasher, inline_max, size_hint).await?;
    let verified = complete(&ingested, size_hint)
        .and_then(|()| checksums::verify_content_md5(content_md5, &ingested.md5))
        .and_then(|()| checksums::merge_trailers(&mut claimed, headers, trailers))
        .and_then(|()| checksums::verify(&claimed, ingested.checksum.clone()));
    match verified {
        Ok(v) => Ok((ingested, v)),
        Err(e) => {
            discard(store, &ingested);
            Err(e)
        }
    }
}

/// A body must be as long as its request said. hyper holds a plain body to
/// its `Content-Length`, but an aws-chunked stream that simply stops before
/// its final, empty chunk reads as a clean end: its signed
/// `x-amz-decoded-content-length` (which s3s hands on as the length) is
/// what tells a cut-off upload from a whole one.
fn complete(ingested: &Ingested, declared: Option<u64>) -> S3Result<()> {
    match declared {
        Some(n) if n != ingested.size => Err(s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        )),
        _ => Ok(()),
    }
}

/// A body-less PUT is an empty object.
pub fn empty_body() -> dto::StreamingBlob {
    dto::StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>())
}

/// Removes the blob of an upload that will not be published.
pub fn discard(store: &Store, ingested: &Ingested) {
    if let Stored::Blob(id) = &ingested.stored {
        store.discard_blob(id);
    }
}

/// A body that failed mid-stream: an aws-chunked signature error is passed
/// through as s3s raised it; anything else is an incomplete body.
/// What a failed body read tells the client: AWS's code, never the
/// underlying error (logged instead).
fn body_error(e: StdError) -> S3Error {
    match e.downcast::<S3Error>() {
        Ok(s3) => *s3,
        // s3s's payload-hash stream error type is private; its text is the only tell.
        Err(other) if other.to_string().contains("Sha256Mismatch") => {
            let code = s3s::S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into());
            let mut err = S3Error::with_message(
                code,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            err
        }
        Err(other) => {
            tracing::debug!(error = %other, "request body ended early");
            s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header."
            )
        }
    }
}
