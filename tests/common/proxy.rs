#![allow(dead_code)]

//! A pass-through HTTP proxy that can hold chosen requests: the way a test
//! stops a real worker at an exact point of its job (say, with its variant
//! PUTs sent but not yet stored) without any hook in the code under test.
//! Requests are forwarded byte for byte, `Host` included, so SigV4
//! signatures made for the proxy's address still verify upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

use crate::common::{TestServer, test_config};

type Rule = Box<dyn Fn(&http::request::Parts) -> bool + Send + Sync>;

struct Gate {
    rule: Mutex<Option<Rule>>,
    /// Requests answered 503 at once, without reaching upstream.
    fail: Mutex<Option<Rule>>,
    /// Failed requests so far that were an SDK call's retry (attempt 2+).
    retries_failed: watch::Sender<usize>,
    /// Bumped by `release`; a held request waits for the next value.
    generation: watch::Sender<u64>,
    /// Requests being held right now.
    held: watch::Sender<usize>,
    /// Client connections open right now.
    connections: watch::Sender<usize>,
    /// The most client connections open at once so far.
    peak_connections: watch::Sender<usize>,
    /// Held requests so far that were an SDK call's first attempt (its
    /// `amz-sdk-request: attempt=1; …`), not one of its retries.
    first_attempts_held: watch::Sender<usize>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    gate: Arc<Gate>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let gate = Arc::new(Gate {
            rule: Mutex::new(None),
            fail: Mutex::new(None),
            retries_failed: watch::Sender::new(0),
            generation: watch::Sender::new(0),
            held: watch::Sender::new(0),
            connections: watch::Sender::new(0),
            peak_connections: watch::Sender::new(0),
            first_attempts_held: watch::Sender::new(0),
        });
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let serving = Arc::clone(&gate);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (gate, client) = (Arc::clone(&serving), client.clone());
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (gate, client) = (Arc::clone(&gate), client.clone());
                    async move { Ok::<_, Infallible>(forward(&gate, &client, upstream, req).await) }
                });
                let open = Arc::clone(&serving);
                open.connections.send_modify(|n| {
                    *n += 1;
                    open.peak_connections.send_modify(|p| *p = (*p).max(*n));
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    open.connections.send_modify(|n| *n -= 1);
                });
            }
        });
        Self { addr, gate }
    }

    /// From now on, requests for which `rule(method, path)` holds wait
    /// until [`Proxy::release`].
    pub fn hold(&self, rule: impl Fn(&http::Method, &str) -> bool + Send + Sync + 'static) {
        self.hold_requests(move |parts| rule(&parts.method, parts.uri.path()));
    }

    /// [`Proxy::hold`] for a rule that looks at the whole request head
    /// (an SQS action is only in its `X-Amz-Target` header).
    pub fn hold_requests(&self, rule: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static) {
        *self.gate.rule.lock().unwrap() = Some(Box::new(rule));
    }

    /// From now on, requests for which `rule` holds are answered `503 Slow
    /// Down` at once, as S3 in a brownout would (the rule replaces the last
    /// one given here). It may keep state: fail only the first match, say.
    pub fn fail_requests(&self, rule: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static) {
        *self.gate.fail.lock().unwrap() = Some(Box::new(rule));
    }

    /// Failed requests so far that were an SDK retry, not a first attempt.
    pub fn retries_failed(&self) -> usize {
        *self.gate.retries_failed.borrow()
    }

    /// Lets every request held so far through; the rule stays (replace it
    /// with [`Proxy::hold`] first, or clear it with [`Proxy::pass_all`]).
    pub fn release(&self) {
        self.gate.generation.send_modify(|g| *g += 1);
    }

    pub fn pass_all(&self) {
        *self.gate.rule.lock().unwrap() = None;
        self.release();
    }

    /// How many requests are being held right now.
    pub fn held(&self) -> usize {
        *self.gate.held.borrow()
    }

    /// Client connections open right now (kept-alive idle ones included).
    pub fn connections(&self) -> usize {
        *self.gate.connections.borrow()
    }

    /// The most client connections that were open at once.
    pub fn peak_connections(&self) -> usize {
        *self.gate.peak_connections.borrow()
    }

    /// Waits until at least `n` held requests were SDK first attempts.
    pub async fn wait_first_attempts_held(&self, n: usize, deadline: Duration) {
        at_least(&self.gate.first_attempts_held, n, deadline, "first attempts were held").await;
    }

    /// Waits until at least `n` requests are being held.
    pub async fn wait_held(&self, n: usize, deadline: Duration) {
        at_least(&self.gate.held, n, deadline, "requests were held").await;
    }
}

/// Waits until `count` reaches `n`; panics, saying `what`, past `deadline`.
async fn at_least(count: &watch::Sender<usize>, n: usize, deadline: Duration, what: &str) {
    let mut seen = count.subscribe();
    tokio::time::timeout(deadline, seen.wait_for(|c| *c >= n))
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} {what} within {deadline:?}"))
        .expect("proxy gate");
}

/// Embedded S3 and SQS, and a tier of its own running `roles` that reaches
/// them through a [`Proxy`].
pub async fn tier_behind_proxy(roles: &[crunchbox::cli::Role]) -> (TestServer, Proxy, TestServer) {
    tier_behind_proxy_with(roles, |_| {}).await
}

/// [`tier_behind_proxy`], the tier's config changed by `edit` first.
pub async fn tier_behind_proxy_with(
    roles: &[crunchbox::cli::Role],
    edit: impl FnOnce(&mut crunchbox::config::Config),
) -> (TestServer, Proxy, TestServer) {
    use crunchbox::cli::Role;
    let core = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let proxy = Proxy::start(core.app().aws_addr.expect("aws listener")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.aws.listen = proxy.addr;
    edit(&mut config);
    let tier = TestServer::start_with(config, dir, roles).await;
    (core, proxy, tier)
}

async fn forward(
    gate: &Gate,
    client: &Client<HttpConnector, Full<Bytes>>,
    upstream: SocketAddr,
    req: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    // `amz-sdk-request: attempt=N; max=M`, sent by the SDK with every attempt.
    let attempt = parts.headers.get("amz-sdk-request").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let first_attempt = attempt.starts_with("attempt=1;");
    if gate.fail.lock().unwrap().as_ref().is_some_and(|rule| rule(&parts)) {
        if attempt.starts_with("attempt=") && !first_attempt {
            gate.retries_failed.send_modify(|n| *n += 1);
        }
        return slow_down();
    }
    let matches = gate.rule.lock().unwrap().as_ref().is_some_and(|rule| rule(&parts));
    if matches {
        if first_attempt {
            gate.first_attempts_held.send_modify(|n| *n += 1);
        }
        let mut generation = gate.generation.subscribe();
        let at = *generation.borrow_and_update();
        gate.held.send_modify(|h| *h += 1);
        // Counted out when released or when its client gives up (hyper
        // then drops this future).
        let _held = Held(&gate.held);
        let _ = generation.wait_for(|g| *g > at).await;
    }
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad_gateway(),
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    parts.uri = format!("http://{upstream}{path}").parse().expect("upstream uri");
    let Ok(resp) = client.request(http::Request::from_parts(parts, Full::new(body))).await else {
        return bad_gateway();
    };
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(b) => http::Response::from_parts(parts, Full::new(b.to_bytes())),
        Err(_) => bad_gateway(),
    }
}

/// Takes one off the held count when dropped.
struct Held<'a>(&'a watch::Sender<usize>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|h| *h -= 1);
    }
}

fn slow_down() -> http::Response<Full<Bytes>> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let mut resp = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    resp
}

fn bad_gateway() -> http::Response<Full<Bytes>> {
    let mut resp = http::Response::new(Full::new(Bytes::from_static(b"proxy: upstream failed")));
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}
