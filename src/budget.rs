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
//!
//! A held body must also keep coming ([`read_held`]): the budget stops a
//! thousand slow bodies from filling memory, the rate stops a few from
//! keeping it spent.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request waits for its share before it is refused.
const WAIT: Duration = Duration::from_secs(10);

/// How fast a held body must arrive: its first bytes may take `grace`,
/// then it must keep up `rate` bytes a second on average.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub grace: Duration,
    pub rate: u64,
}

/// The pace of held bodies. A client given a share on its word (SQS
/// reserves a body's declared length once its key id is known, before the
/// signature over that body can be checked) and then trickling would
/// otherwise hold the share as long as the listener's own rules allow:
/// twenty such requests at 1 KB/s kept SQS refusing everyone else. At 32
/// KiB/s, keeping a 64 MiB budget spent takes a steady 640 KiB/s or more.
pub const HELD_PACE: Pace = Pace { grace: Duration::from_secs(5), rate: 32 * 1024 };

impl Pace {
    /// When the next bytes are due, `done` bytes after `start`.
    pub fn due(&self, start: tokio::time::Instant, done: usize) -> tokio::time::Instant {
        start + self.grace + Duration::from_secs_f64(done as f64 / self.rate.max(1) as f64)
    }
}

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

/// Why a held body was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the request body is larger than its limit")]
    TooLarge,
    #[error("the request body arrived too slowly")]
    TooSlow,
    #[error("cannot read the request body: {0}")]
    Body(String),
}

/// Reads a body whole, at most `limit` bytes, and gives up as soon as it
/// falls behind `pace`: each next byte is due by the time the bytes so far
/// have used up theirs, so a trickle is cut at once, not when some total
/// deadline expires.
pub async fn read_held<B>(mut body: B, limit: usize, pace: Pace) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let start = tokio::time::Instant::now();
    let mut out = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(pace.due(start, out.len()), body.frame()).await {
            Err(_) => return Err(ReadError::TooSlow),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => return Err(ReadError::Body(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    /// A body of `chunks`, each after its delay.
    fn paced(
        chunks: Vec<(Duration, &'static [u8])>,
    ) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let frames = futures_util::stream::iter(chunks).then(|(delay, data)| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(data)))
        });
        http_body_util::StreamBody::new(Box::pin(frames))
    }

    #[tokio::test]
    async fn a_held_body_must_keep_up_its_pace() {
        let pace = Pace { grace: Duration::from_millis(200), rate: 1000 };
        let ms = Duration::from_millis;
        let whole = paced(vec![(Duration::ZERO, b"abc"), (ms(150), b"def")]);
        assert_eq!(read_held(whole, 10, pace).await.unwrap(), Bytes::from_static(b"abcdef"));
        // Ten bytes a second fall behind once the grace is used up.
        let trickle = paced((0..20).map(|_| (ms(100), &b"x"[..])).collect());
        assert!(matches!(read_held(trickle, 100, pace).await, Err(ReadError::TooSlow)));
        let large = paced(vec![(Duration::ZERO, b"abcdef")]);
        assert!(matches!(read_held(large, 5, pace).await, Err(ReadError::TooLarge)));
    }

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
