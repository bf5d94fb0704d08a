//! Streams a request body into the SDK without buffering it.
//!
//! The SDK wants a `Send + Sync` body; hyper's is only `Send`. A small pump
//! task forwards chunks through a channel and enforces the byte budget as
//! they flow, so an oversized or lying upload fails mid-stream and the
//! S3 PUT is aborted instead of stored.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Why a streamed body stopped early.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    #[error("the body is longer than {0} bytes")]
    TooLong(u64),
    #[error("the body ended after {got} of {expected} bytes")]
    TooShort { got: u64, expected: u64 },
    #[error("reading the body failed: {0}")]
    Read(String),
}

/// The receiving end, handed to the SDK as the PutObject body.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BodyError>>,
    len: u64,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Starts pumping `prefix` then `rest` into a [`ChannelBody`] of exactly
/// `len` bytes. More or fewer bytes than `len` end the body with an error.
/// The handle tells, once the SDK is done with the body, whether the client's
/// side failed, so a failed PUT can be blamed on the right party.
pub fn pump(prefix: Bytes, rest: axum::body::Body, len: u64) -> (ChannelBody, JoinHandle<Result<(), BodyError>>) {
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        let mut sent = prefix.len() as u64;
        if sent > len {
            return fail(&tx, BodyError::TooLong(len)).await;
        }
        if !prefix.is_empty() && tx.send(Ok(prefix)).await.is_err() {
            return Ok(());
        }
        let mut stream = rest.into_data_stream();
        loop {
            // Stop waiting for the client once the SDK has given up on the
            // body, so the caller can learn the outcome at once.
            let chunk = tokio::select! {
                chunk = stream.next() => chunk,
                () = tx.closed() => return Ok(()),
            };
            let Some(chunk) = chunk else { break };
            let bytes = match chunk {
                Ok(bytes) => bytes,
                Err(e) => return fail(&tx, BodyError::Read(e.to_string())).await,
            };
            sent += bytes.len() as u64;
            if sent > len {
                return fail(&tx, BodyError::TooLong(len)).await;
            }
            if tx.send(Ok(bytes)).await.is_err() {
                // The SDK dropped the body: the PUT failed on its side.
                return Ok(());
            }
        }
        if sent < len {
            return fail(&tx, BodyError::TooShort { got: sent, expected: len }).await;
        }
        Ok(())
    });
    (ChannelBody { rx, len }, task)
}

/// Ends the SDK's body with `e` (so the PUT is aborted) and reports it.
async fn fail(tx: &mpsc::Sender<Result<Bytes, BodyError>>, e: BodyError) -> Result<(), BodyError> {
    let _ = tx.send(Err(e.clone())).await;
    Err(e)
}

/// Reads at least `want` bytes (or the whole body if shorter), returning
/// what was read and the unread rest.
pub async fn read_prefix(body: axum::body::Body, want: usize) -> Result<(Bytes, axum::body::Body), BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while buf.len() < want {
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(BodyError::Read(e.to_string())),
            None => break,
        }
    }
    Ok((buf.freeze(), axum::body::Body::from_stream(stream)))
}
