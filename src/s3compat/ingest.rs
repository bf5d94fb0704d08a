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
            return Err(s3_error!(EntityTooLarge, "Your proposed upload exceeds the maximum allowed object size."));
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

/// A body that failed mid-stream: an aws-chunked signature error is passed
/// through as s3s raised it; anything else is an incomplete body.
fn body_error(e: StdError) -> S3Error {
    match e.downcast::<S3Error>() {
        Ok(s3) => *s3,
        Err(other) => s3_error!(IncompleteBody, "The request body ended early: {other}"),
    }
}
