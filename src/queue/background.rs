//! The store's housekeeping task (mini-redis's purge task, for SQS): drops
//! messages past their retention period and forgets FIFO deduplication ids
//! after five minutes, and runs message move tasks a second's worth at a
//! time. Delays and visibility deadlines need no task: a long
//! poll sleeps until the next deadline itself.

use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::store::{Store, now_ms};

const TICK: Duration = Duration::from_secs(1);

/// Owns the task; [`Background::stop`] ends it. The task holds the store
/// weakly so it never keeps the database open on its own.
pub struct Background {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Background {
    pub fn start(store: Weak<Store>) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::runtime::Handle::try_current().ok().map(|rt| {
            rt.spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                    let Some(store) = store.upgrade() else { return };
                    match store.expire(now_ms()) {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(expired = n, "dropped messages past their retention period"),
                        Err(e) => tracing::warn!(error = %e, "queue housekeeping failed"),
                    }
                    // Moving is sled reads and writes: off the async threads.
                    let moves = tokio::task::spawn_blocking(move || store.run_moves()).await;
                    match moves.unwrap_or(Ok(0)) {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(moved = n, "message move tasks moved messages"),
                        Err(e) => tracing::warn!(error = %e, "message move tasks failed"),
                    }
                }
            })
        });
        Self { stop, task: Mutex::new(task) }
    }

    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
