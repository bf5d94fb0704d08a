//! Group commit: many writers, one flush, one set of syncs.
//!
//! A change (a PUT, a send, a delete) is acknowledged only once it is on
//! disk. Writers apply their change to sled (in memory), then ask for
//! durability; one thread flushes for everyone who asked before the flush
//! began and then makes it power-safe ([`SyncPoint::after_flush`]). Requests
//! that arrive meanwhile share the next round, so under load the syncs per
//! acknowledgement fall well below one, and no caller ever waits on sled's
//! own I/O pool (its `flush_async` deadlocked with a few dozen callers).

use std::sync::{Arc, mpsc};

use tokio::sync::oneshot;

use super::{DurableError, SyncPoint};

type Waiter = oneshot::Sender<Result<(), Arc<CommitFailure>>>;

/// The writers' handle on the commit thread. Dropping it stops the thread,
/// which then releases its handle on the database.
#[derive(Debug)]
pub struct Committer {
    tx: mpsc::Sender<Waiter>,
}

impl Committer {
    /// Starts the thread `name`; `on_commit` runs after each round (counters).
    pub fn start(name: &str, db: sled::Db, mut point: SyncPoint, on_commit: fn()) -> Result<Self, DurableError> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Waits for a first request, takes every other one already
                // queued (their writes all happened before they asked),
                // commits once, answers them all.
                while let Ok(first) = rx.recv() {
                    let mut waiters = vec![first];
                    waiters.extend(rx.try_iter());
                    let result = match db.flush() {
                        Ok(_) => point.after_flush().map_err(|e| Arc::new(CommitFailure::Sync(e))),
                        Err(e) => Err(Arc::new(CommitFailure::Flush(e))),
                    };
                    on_commit();
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            })
            .map_err(|e| DurableError::Io { what: "cannot start the commit thread", path: name.into(), source: e })?;
        Ok(Self { tx })
    }

    /// Resolves once everything written before the call is power-safe.
    pub async fn durable(&self) -> Result<(), CommitError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| CommitError::Stopped)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CommitError::Failed(e)),
            Err(_) => Err(CommitError::Stopped),
        }
    }
}

/// A commit that did not happen: nothing it covers may be acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("commit failed")]
    Failed(#[source] Arc<CommitFailure>),
    #[error("the commit thread has stopped")]
    Stopped,
}

/// What failed in a commit round (shared by every waiter of the round).
#[derive(Debug, thiserror::Error)]
pub enum CommitFailure {
    #[error("sled flush: {0}")]
    Flush(#[source] sled::Error),
    #[error("sync after the flush: {0}")]
    Sync(#[source] std::io::Error),
}
