//! The store's internal failures and how they reach the client.
//!
//! Anything here is our fault (disk, sled, a corrupt record), so it answers
//! `InternalError` and is logged with the place it happened; client mistakes
//! are answered directly with AWS's own codes via `s3s::s3_error!`.

use s3s::{S3Error, S3ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata encoding: {0}")]
    Json(#[from] serde_json::Error),
    #[error("corrupt {0}")]
    Corrupt(String),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Durable(#[from] crate::durable::DurableError),
    #[error(transparent)]
    Commit(#[from] crate::durable::CommitError),
}

impl From<StoreError> for S3Error {
    #[track_caller]
    fn from(e: StoreError) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(error = %e, file = at.file(), line = at.line(), "s3 store failure");
        S3Error::with_source(S3ErrorCode::InternalError, Box::new(e))
    }
}

/// Shorthand for `?` on store calls inside S3 handlers.
pub type StoreResult<T> = Result<T, StoreError>;
