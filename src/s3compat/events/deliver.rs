//! Moves pending events from the S3 store's outbox to their queues.
//!
//! At least once: a batch is sent and made durable in the queue store
//! first, and only then removed from the outbox; a crash in between sends
//! it again after restart. The S3 side never sees the queue store itself,
//! only an [`EventSink`] (the embedded SQS implements it), so the two
//! stores stay apart and `--roles s3` alone still runs (events then wait).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::record::{self, Site};
use crate::s3compat::store::Store;
use crate::shutdown::Shutdown;

/// Events moved per round (one queue commit each round).
const BATCH: usize = 256;
/// How long a failed delivery waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where events go: the embedded SQS.
pub trait EventSink: Send + Sync {
    /// Whether `queue_arn` names a queue events can be sent to (it exists
    /// and is a standard queue, as AWS requires).
    fn accepts(&self, queue_arn: &str) -> bool;
    /// Stores one message (not yet durably); `Ok(false)` if the queue is gone.
    fn send(&self, queue_arn: &str, body: String) -> Result<bool, SinkError>;
    /// Resolves once everything sent so far is durable.
    fn durable(&self) -> futures_util::future::BoxFuture<'_, Result<(), SinkError>>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// What the S3 handlers and the delivery task share.
pub struct Hub {
    sink: OnceLock<Arc<dyn EventSink>>,
    /// Woken after a commit that put events in the outbox.
    wake: Notify,
    pub site: Site,
}

impl Hub {
    pub fn new(site: Site) -> Self {
        Self { sink: OnceLock::new(), wake: Notify::new(), site }
    }

    /// Connects the sink (once, when the SQS role runs in this process).
    pub fn connect(&self, sink: Arc<dyn EventSink>) {
        let _ = self.sink.set(sink);
        self.wake.notify_one();
    }

    pub fn sink(&self) -> Option<&Arc<dyn EventSink>> {
        self.sink.get()
    }

    /// Tells the delivery task that the outbox has new events.
    pub fn poke(&self) {
        self.wake.notify_one();
    }
}

/// Runs until `shutdown`: delivers what is in the outbox, then waits for
/// a poke (or a second, which also picks up what an earlier run left).
pub async fn run(store: Arc<Store>, hub: Arc<Hub>, mut shutdown: Shutdown) {
    loop {
        let wait = match hub.sink() {
            None => RETRY_AFTER,
            Some(sink) => match deliver_batch(&store, sink.as_ref(), &hub.site).await {
                Ok(n) if n == BATCH => continue,
                Ok(_) => RETRY_AFTER,
                Err(e) => {
                    tracing::warn!(error = %e, "delivering s3 events failed; will retry");
                    RETRY_AFTER
                }
            },
        };
        tokio::select! {
            () = hub.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum DeliverError {
    #[error(transparent)]
    Store(#[from] crate::s3compat::error::StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Sends up to [`BATCH`] events, makes them durable, then drops them from
/// the outbox. Returns how many were taken.
async fn deliver_batch(store: &Store, sink: &dyn EventSink, site: &Site) -> Result<usize, DeliverError> {
    let batch = store.outbox_batch(BATCH)?;
    if batch.is_empty() {
        return Ok(0);
    }
    let mut done = Vec::with_capacity(batch.len());
    for (seq, event) in &batch {
        if !sink.send(&event.queue_arn, record::record(event, *seq, site))? {
            tracing::warn!(queue = %event.queue_arn, bucket = %event.bucket, "s3 event dropped: its queue no longer exists");
        }
        done.push(*seq);
    }
    sink.durable().await?;
    store.outbox_remove(&done)?;
    Ok(batch.len())
}
