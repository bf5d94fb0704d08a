//! Group commit for S3 acknowledgements: many PUTs, one flush.
//!
//! Each PUT (or delete, bucket or multipart change) writes its record to
//! sled in memory and then asks for durability. One thread flushes for
//! everyone who asked before that flush began; those who ask during a flush
//! share the next one. Under concurrency the log syncs per acknowledged
//! write fall well below one, and no caller ever waits on sled's own I/O
//! pool (its `flush_async` deadlocked with a few dozen concurrent callers).

use std::io;
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::error::StoreError;

type Waiter = oneshot::Sender<Result<(), String>>;

/// The writers' handle on the flushing thread. Dropping it stops the thread,
/// which then releases its handle on the database.
pub struct Committer {
    tx: mpsc::Sender<Waiter>,
}

impl Committer {
    pub fn start(db: sled::Db) -> Result<Committer, StoreError> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        std::thread::Builder::new().name("s3-commit".into()).spawn(move || run(&db, &rx))?;
        Ok(Committer { tx })
    }

    /// Resolves once everything written before the call is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StoreError::Io(io::Error::other("the s3 commit thread has stopped"));
        self.tx.send(tx).map_err(|_| stopped())?;
        match rx.await {
            Ok(result) => result.map_err(|e| StoreError::Io(io::Error::other(format!("sled flush: {e}")))),
            Err(_) => Err(stopped()),
        }
    }
}

/// Waits for a first request, takes every other one already queued (their
/// writes all happened before they asked), flushes once, answers them all.
fn run(db: &sled::Db, rx: &mpsc::Receiver<Waiter>) {
    while let Ok(first) = rx.recv() {
        let mut waiters = vec![first];
        waiters.extend(rx.try_iter());
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}
