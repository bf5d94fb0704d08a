//! Turns a request body into stored bytes while hashing it: small bodies
//! stay in memory (they go inline into the sled record), larger ones are
//! written in big batches to a temp file on the blocking pool and made a
//! durable blob. The MD5 (ETag) and any requested checksums are computed
//! on the way through, so nothing is read twice.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::Digest as _;
use s3s::checksum::ChecksumHasher;
use s3s::dto;
use s3s::{S3Error, S3Result, StdError, s3_error};

use super::blob::TmpFile;
use super::error::StoreError;
use super::store::Store;

/// Objects up to this size are stored inline in their sled record.
pub const INLINE_MAX: usize = 64 * 1024;
/// Bytes buffered before a write to the temp file (one blocking call per
/// batch): few enough that a thousand slow uploads stay within memory.
const WRITE_BATCH: usize = 256 * 1024;
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
    let mut md5 = md5::Md5::new();
    let hint = size_hint.and_then(|n| usize::try_from(n).ok()).unwrap_or(0).min(WRITE_BATCH);
    let mut buf: Vec<u8> = Vec::with_capacity(hint);
    let mut file: Option<TmpFile> = None;
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(body_error)?;
        size += chunk.len() as u64;
        if size > MAX_UPLOAD {
            return Err(s3_error!(EntityTooLarge, "Your proposed upload exceeds the maximum allowed object size."));
        }
        md5.update(&chunk);
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
        if buf.len() >= WRITE_BATCH {
            let s = Arc::clone(store);
            let tmp = file.take();
            let (tmp, rest) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                let mut tmp = match tmp {
                    Some(t) => t,
                    None => s.blobs.create_tmp()?,
                };
                tmp.write(&buf)?;
                buf.clear();
                Ok((tmp, buf))
            })
            .await
            .map_err(StoreError::from)??;
            file = Some(tmp);
            buf = rest;
        }
    }
    let md5: [u8; 16] = md5.finalize().into();
    let checksum = hasher.finalize();
    let stored = if file.is_none() && buf.len() <= inline_max {
        Stored::Inline(Bytes::from(buf))
    } else {
        let s = Arc::clone(store);
        let id = tokio::task::spawn_blocking(move || -> Result<String, StoreError> {
            let mut tmp = match file {
                Some(t) => t,
                None => s.blobs.create_tmp()?,
            };
            tmp.write(&buf)?;
            Ok(s.blobs.commit(tmp)?)
        })
        .await
        .map_err(StoreError::from)??;
        Stored::Blob(id)
    };
    Ok(Ingested { stored, size, md5, checksum })
}

/// A body that failed mid-stream: an aws-chunked signature error is passed
/// through as s3s raised it; anything else is an incomplete body.
fn body_error(e: StdError) -> S3Error {
    match e.downcast::<S3Error>() {
        Ok(s3) => *s3,
        Err(other) => s3_error!(IncompleteBody, "The request body ended early: {other}"),
    }
}
