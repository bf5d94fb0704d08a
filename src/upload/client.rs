//! The HTTP side of `crunchbox upload`: one pooled hyper client that speaks
//! http and https (the rustls stack the AWS SDK already builds), and the two
//! calls the uploader needs: the upload and the upload's event stream. Every failure becomes an [`UploadError`] whose
//! text is the one line the user sees.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::UploadError;
use super::events::EventReader;

/// Answers from the web role are small JSON documents; anything bigger is
/// not crunchbox talking.
const MAX_ANSWER_BYTES: usize = 1 << 20;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// How long an upload waits for `100 Continue` before sending its body
/// anyway (curl's default), for servers and proxies that never send one.
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// `201` from `POST /v1/avatar/upload`.
#[derive(Debug, Deserialize)]
pub struct Accepted {
    pub id: String,
}

/// The JSON of a `status` event (that of `GET /v1/avatar/{id}`).
#[derive(Debug, Deserialize)]
pub struct Status {
    pub status: String,
    #[serde(default)]
    pub variants: Option<Variants>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Variants {
    pub default: String,
    pub small: String,
    pub large: String,
}

/// SPEC's error body; only the human text matters here.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: String,
}

/// A client bound to one web-role base URL.
pub struct WebClient {
    base: String,
    token: String,
    http: Client<HttpsConnector<HttpConnector>, Body>,
}

impl WebClient {
    pub fn new(endpoint: &str, token: &str) -> Result<Self, UploadError> {
        let base = endpoint.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|_| UploadError::BadEndpoint(endpoint.to_owned()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(UploadError::BadEndpoint(endpoint.to_owned()));
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| UploadError::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = Client::builder(TokioExecutor::new()).build(https);
        Ok(WebClient { base, token: token.to_owned(), http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Streams `body` (exactly `len` bytes of `mime`) to the upload route.
    ///
    /// The server refuses a bad token or an oversized body from the headers
    /// alone and hangs up without reading the body; a client already
    /// streaming then often sees only a broken pipe, never the answer. So the
    /// request says `Expect: 100-continue` and the body waits for the
    /// server's go-ahead (or [`CONTINUE_WAIT`]).
    pub async fn upload(&self, mime: &str, len: u64, body: Body) -> Result<Accepted, UploadError> {
        let (go, gate) = oneshot::channel();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/v1/avatar/upload", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, mime)
            .header(header::CONTENT_LENGTH, len)
            .header(header::EXPECT, "100-continue")
            .body(AfterContinue::new(body, gate).boxed())
            .map_err(|_| UploadError::BadEndpoint(self.base.clone()))?;
        let go = Mutex::new(Some(go));
        hyper::ext::on_informational(&mut request, move |response| {
            if response.status() == StatusCode::CONTINUE
                && let Some(go) = go.lock().ok().and_then(|mut go| go.take())
            {
                let _ = go.send(());
            }
        });
        let (status, answer) = self.send(request).await?;
        if status != StatusCode::CREATED {
            return Err(refusal(status, &answer));
        }
        serde_json::from_slice(&answer).map_err(|e| self.garbled(e))
    }

    /// Opens the upload's event stream (`GET /v1/avatar/{id}/events`).
    pub async fn events(&self, id: &str) -> Result<EventReader<Incoming>, UploadError> {
        let empty: Body = Empty::new().map_err(|never| match never {}).boxed();
        let request = Request::builder()
            .uri(format!("{}/v1/avatar/{id}/events", self.base))
            .header(header::ACCEPT, "text/event-stream")
            .body(empty)
            .map_err(|_| UploadError::BadEndpoint(self.base.clone()))?;
        let response = self.http.request(request).await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if status != StatusCode::OK || !is_stream {
            let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(refusal(status, &answer));
        }
        Ok(EventReader::new(response.into_body()))
    }

    /// Reads `data` of a `status` event.
    pub fn parse_status(&self, data: &str) -> Result<Status, UploadError> {
        serde_json::from_str(data).map_err(|e| self.garbled(e))
    }

    async fn send(&self, request: Request<Body>) -> Result<(StatusCode, Bytes), UploadError> {
        let response = self.http.request(request).await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| UploadError::Transport { endpoint: self.base.clone(), reason: e.to_string() })?
            .to_bytes();
        Ok((status, answer))
    }

    fn transport(&self, e: hyper_util::client::legacy::Error) -> UploadError {
        if e.is_connect() {
            return UploadError::Unreachable(self.base.clone());
        }
        UploadError::Transport { endpoint: self.base.clone(), reason: innermost(&e) }
    }

    fn garbled(&self, e: serde_json::Error) -> UploadError {
        UploadError::Transport { endpoint: self.base.clone(), reason: format!("unexpected answer: {e}") }
    }
}

/// A body that sends nothing until the server said `100 Continue`, the
/// callback was dropped (the exchange is over), or [`CONTINUE_WAIT`] passed.
struct AfterContinue {
    gate: Option<(oneshot::Receiver<()>, Pin<Box<tokio::time::Sleep>>)>,
    inner: Body,
}

impl AfterContinue {
    fn new(inner: Body, go: oneshot::Receiver<()>) -> Self {
        AfterContinue { gate: Some((go, Box::pin(tokio::time::sleep(CONTINUE_WAIT)))), inner }
    }
}

impl http_body::Body for AfterContinue {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some((go, timer)) = self.gate.as_mut() {
            if Pin::new(go).poll(cx).is_pending() && timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.gate = None;
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A non-success answer: the server's own message when it sent SPEC's JSON.
fn refusal(status: StatusCode, answer: &[u8]) -> UploadError {
    let message = serde_json::from_slice::<ErrorBody>(answer)
        .map(|b| b.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(answer).trim().chars().take(200).collect());
    UploadError::Refused { status: status.as_u16(), message }
}

/// hyper wraps the interesting cause (reset, broken pipe, TLS) a few levels deep.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
