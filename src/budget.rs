//! A shared byte budget for request bodies that must be held whole.
//!
//! Most bodies stream (S3 objects, avatar uploads with a length), but some
//! cannot: SQS and STS requests are signed over their whole body, and an
//! upload without `Content-Length` must be measured before S3 will take it.
//! Each such request reserves its bytes here *before* reading them, all at
//! once (never piecemeal, so two half-read requests cannot starve each
//! other), and gives them back when it is done. However many connections
//! are open, held bodies never exceed the budget: a request that cannot get
//! its share in time is refused with "busy" rather than queued in memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request waits for its share before it is refused.
const WAIT: Duration = Duration::from_secs(10);

/// Bytes that may be held at once; cheap to clone (one budget shared).
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: u32,
}

/// The budget was spent for longer than a request may wait.
#[derive(Debug, thiserror::Error)]
#[error("too many large requests in progress")]
pub struct Busy;

impl BodyBudget {
    pub fn new(total: u32) -> Self {
        Self { bytes: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// Reserves `n` bytes (at most the whole budget) until the returned
    /// permit is dropped.
    pub async fn reserve(&self, n: u64) -> Result<OwnedSemaphorePermit, Busy> {
        let n = u32::try_from(n).unwrap_or(u32::MAX).clamp(1, self.total);
        match tokio::time::timeout(WAIT, Arc::clone(&self.bytes).acquire_many_owned(n)).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or the semaphore was closed (it never is).
            _ => Err(Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_are_bounded_and_returned() {
        let budget = BodyBudget::new(100);
        let a = budget.reserve(60).await.unwrap();
        // 60 + 60 > 100: the second waits until the first is given back.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(60).await.map(|p| p.num_permits()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // The waiter at the head of the line collects what is free (tokio's
        // semaphore is FIFO), so later, smaller requests cannot starve it.
        assert_eq!(budget.bytes.available_permits(), 0);
        drop(a);
        assert_eq!(waiting.await.unwrap().unwrap(), 60);
        // Asking for more than the whole budget takes the whole budget.
        let all = budget.reserve(1_000).await.unwrap();
        assert_eq!(all.num_permits(), 100);
    }
}
