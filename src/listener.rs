//! The accept loop shared by every HTTP listener: per-connection tasks,
//! a header-read timeout plus a stall and minimum-rate watch on each socket
//! (slowloris clients are dropped, see [`watched`]), a request id
//! per request, and graceful shutdown that finishes in-flight requests.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::shutdown::Shutdown;
use watched::Watched;

mod watched;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest read buffer per connection (hyper's default is ~400 KiB). Bodies
/// are streamed, so a bigger buffer only helps a burst, and a thousand
/// connections bursting at once would each grow one.
const MAX_READ_BUFFER: usize = 64 * 1024;
/// A listener at its connection limit says so at most this often.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// Who sent a request: put into every request's extensions (s3s hands
/// them on), so handlers can report the peer and the id, as S3's event
/// records do.
#[derive(Debug, Clone)]
pub struct RequestOrigin {
    pub peer: std::net::SocketAddr,
    pub id: String,
}

/// A request id unique within this process, sent back as `x-request-id`.
fn next_request_id() -> String {
    format!("{:016x}", NEXT_REQUEST.fetch_add(1, Ordering::Relaxed))
}

/// Serves `handler` on `listener` until `shutdown` fires, then drains.
/// At most `max_connections` are open at once: the next one is accepted
/// only when one closes (until then it waits in the kernel's backlog), so
/// memory and file descriptors stay bounded however many clients come.
pub async fn serve<H, F, B>(
    name: &'static str,
    listener: TcpListener,
    max_connections: usize,
    handler: H,
    mut shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = Arc::new(handler);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_READ_BUFFER);
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut warned_full: Option<Instant> = None;
    loop {
        if slots.available_permits() == 0 && warned_full.is_none_or(|at| at.elapsed() > FULL_WARNING_EVERY) {
            tracing::warn!(listener = name, max_connections, "at the connection limit; new connections wait");
            warned_full = Some(Instant::now());
        }
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = shutdown.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let service = service_fn(move |mut req: Request<Incoming>| {
            let handler = Arc::clone(&handler);
            let id = next_request_id();
            req.extensions_mut().insert(RequestOrigin { peer, id: id.clone() });
            let span = tracing::info_span!(
                "request",
                listener = name,
                request_id = %id,
                method = %req.method(),
                path = %req.uri().path(),
                status = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            );
            async move {
                let started = std::time::Instant::now();
                let mut resp = handler(req).await;
                let span = tracing::Span::current();
                span.record("status", resp.status().as_u16());
                span.record("duration_ms", started.elapsed().as_millis() as u64);
                tracing::debug!("done");
                if let Ok(v) = HeaderValue::from_str(&id) {
                    resp.headers_mut().insert("x-request-id", v);
                }
                Ok::<_, Infallible>(resp)
            }
            .instrument(span)
        });
        let conn = builder.serve_connection(TokioIo::new(Watched::new(stream)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    tracing::info!(listener = name, "draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = name, "drain timed out; closing remaining connections");
    }
}
