//! A socket wrapper that drops clients who stall or trickle.
//!
//! hyper bounds how long request headers may take, but not bodies nor
//! responses: a client that sends a body one byte at a time, or never reads
//! its response, would hold its connection (a task, buffers, a file
//! descriptor) forever. The rules, checked only while the server is waiting
//! on the socket:
//!
//! - **stall**: no byte moved in either direction for [`STALL_TIMEOUT`]
//!   (longer than the longest silent request, a 20 s SQS long poll);
//! - **trickle**: a [`RATE_WINDOW`] in which some bytes arrived, but fewer
//!   than [`MIN_WINDOW_BYTES`], and nothing was sent back (in the manner of
//!   Apache's `mod_reqtimeout` `MinRate`). A window with no bytes at all is
//!   a silent wait and is left to the stall rule.
//!
//! A broken rule fails the pending read or write with `TimedOut`, which ends
//! the connection and frees its slot.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// No progress in either direction for this long ends the connection.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Length of the window the minimum read rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Bytes a client must send per window once it has started sending
/// (16 KiB a minute, about 270 B/s).
pub const MIN_WINDOW_BYTES: u64 = 16 * 1024;

/// The thresholds; [`Rules::DEFAULT`] in production, shorter in tests.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub stall: Duration,
    pub window: Duration,
    pub min_window_bytes: u64,
}

impl Rules {
    pub const DEFAULT: Rules = Rules { stall: STALL_TIMEOUT, window: RATE_WINDOW, min_window_bytes: MIN_WINDOW_BYTES };
}

/// An I/O object under the stall and trickle rules.
pub struct Watched<T> {
    inner: T,
    rules: Rules,
    timer: Pin<Box<Sleep>>,
    /// Last time a byte moved either way.
    last_progress: Instant,
    /// Start of the current rate window; a write restarts it.
    window_start: Instant,
    /// Bytes read since `window_start`.
    window_read: u64,
}

impl<T> Watched<T> {
    pub fn new(inner: T) -> Self {
        Self::with_rules(inner, Rules::DEFAULT)
    }

    pub fn with_rules(inner: T, rules: Rules) -> Self {
        let now = Instant::now();
        Self {
            inner,
            rules,
            timer: Box::pin(tokio::time::sleep_until(now + rules.stall)),
            last_progress: now,
            window_start: now,
            window_read: 0,
        }
    }

    fn on_read(&mut self, n: usize) {
        self.last_progress = Instant::now();
        self.window_read += n as u64;
    }

    fn on_write(&mut self) {
        let now = Instant::now();
        self.last_progress = now;
        // The server answered: the client is not trickling a request.
        self.window_start = now;
        self.window_read = 0;
    }

    /// Called when the socket is not ready: arms the timer for the next
    /// deadline and fails if a rule is already broken.
    fn check(&mut self, cx: &mut Context<'_>, reading: bool) -> Poll<io::Error> {
        loop {
            let now = Instant::now();
            let stall_at = self.last_progress + self.rules.stall;
            if now >= stall_at {
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "client stalled"));
            }
            let mut deadline = stall_at;
            if reading {
                let window_end = self.window_start + self.rules.window;
                if now >= window_end {
                    if self.window_read > 0 && self.window_read < self.rules.min_window_bytes {
                        return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "client sends too slowly"));
                    }
                    self.window_start = now;
                    self.window_read = 0;
                    continue;
                }
                deadline = deadline.min(window_end);
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            match self.timer.as_mut().poll(cx) {
                // Fired: the loop re-checks against the clock.
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Bookkeeping shared by both write paths: progress resets the stall
    /// clock; a pending write is watched like a pending read.
    fn after_write(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.on_write();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx, false).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.on_read(n);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.check(cx, true).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The production rules scaled down 300×.
    const FAST: Rules = Rules {
        stall: Duration::from_millis(200),
        window: Duration::from_millis(200),
        min_window_bytes: MIN_WINDOW_BYTES,
    };

    #[tokio::test]
    async fn a_silent_peer_is_dropped_after_the_stall_timeout() {
        let (client, server) = tokio::io::duplex(64);
        let mut watched = Watched::with_rules(server, FAST);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = watched.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= FAST.stall);
        drop(client);
    }

    #[tokio::test]
    async fn a_trickling_peer_is_dropped_at_the_end_of_a_window() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut watched = Watched::with_rules(server, FAST);
        let trickle = tokio::spawn(async move {
            while client.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut buf = [0u8; 8];
        let mut got = 0;
        let err = loop {
            match watched.read(&mut buf).await {
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(got > 0, "the trickle did arrive before the cut");
        trickle.abort();
    }

    #[tokio::test]
    async fn a_steady_peer_with_silences_shorter_than_the_stall_passes() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut watched = Watched::with_rules(server, FAST);
        let writer = tokio::spawn(async move {
            // Requests well above the minimum rate, separated by
            // long-poll-like silences.
            for _ in 0..3 {
                client.write_all(&[7u8; 20 * 1024]).await.expect("write");
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
            client
        });
        let mut total = 0;
        let mut buf = vec![0u8; 4096];
        while total < 3 * 20 * 1024 {
            total += watched.read(&mut buf).await.expect("no timeout");
        }
        drop(writer.await.expect("writer"));
    }

    #[tokio::test]
    async fn answering_restarts_the_window() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut watched = Watched::with_rules(server, FAST);
        // A small request, a silent wait (a long poll), the answer, again.
        for _ in 0..3 {
            client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
            let mut buf = [0u8; 64];
            let n = watched.read(&mut buf).await.expect("read");
            assert!(n > 0);
            tokio::time::sleep(Duration::from_millis(120)).await;
            watched.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("answer");
            let mut back = [0u8; 64];
            let _ = client.read(&mut back).await.expect("client read");
        }
    }
}
