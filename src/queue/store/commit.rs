//! Group commit: many writers, one flush.
//!
//! A send, delete or visibility change is acknowledged only once it is on
//! disk. Writers apply their change to sled (in memory), then ask for
//! durability; one thread flushes for everyone who asked before the flush
//! began. Requests that arrive during a flush share the next one, so under
//! load the number of fsyncs per acknowledged message falls well below one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::StoreError;

/// sled flushes (each one fsync or more) since the process started.
pub static FLUSHES: AtomicU64 = AtomicU64::new(0);
/// Messages whose send, delete or visibility change waited for a flush.
pub static ACKED: AtomicU64 = AtomicU64::new(0);

type Waiter = oneshot::Sender<Result<(), String>>;

/// The writers' handle on the flushing thread. Dropping it stops the thread,
/// which then drops its handle on the database.
#[derive(Debug)]
pub struct Committer {
    tx: mpsc::Sender<Waiter>,
}

impl Committer {
    pub fn start(db: sled::Db) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        std::thread::Builder::new()
            .name("sqs-commit".into())
            .spawn(move || run(&db, &rx))
            .map_err(StoreError::Thread)?;
        Ok(Self { tx })
    }

    /// Resolves once everything written before the call is on disk;
    /// `messages` is how many acknowledged messages this flush covers.
    pub async fn durable(&self, messages: u64) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(())) => {
                ACKED.fetch_add(messages, Ordering::Relaxed);
                metrics::counter!("crunchbox_sqs_acked_messages_total").increment(messages);
                Ok(())
            }
            Ok(Err(e)) => Err(StoreError::Flush(e)),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

fn run(db: &sled::Db, rx: &mpsc::Receiver<Waiter>) {
    while let Ok(first) = rx.recv() {
        let mut waiters = vec![first];
        waiters.extend(rx.try_iter());
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        FLUSHES.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("crunchbox_sqs_flushes_total").increment(1);
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// `(flushes, acknowledged messages)` so far, for benchmarks and metrics.
pub fn durability_stats() -> (u64, u64) {
    (FLUSHES.load(Ordering::Relaxed), ACKED.load(Ordering::Relaxed))
}
