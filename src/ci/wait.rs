//! `crunchbox wait`: blocks until the AWS endpoint is ready and its init
//! hooks have run (`GET /_localstack/init` says `READY`), for CI steps that
//! start `serve` in the background. Exit 0 when ready, 1 on timeout with
//! one line saying what was last seen.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::CommonArgs;

/// Pause between attempts.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// One attempt's limit (a listener that accepts but never answers).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The AWS endpoint to wait for (an http:// URL); default: `aws.listen`.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Why the endpoint was not ready (the last attempt's answer).
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{endpoint} not ready after {secs}s: {last}")]
    Timeout { endpoint: String, secs: u64, last: String },
    #[error("not an http:// URL: {0}")]
    BadEndpoint(String),
}

/// Polls `endpoint` until it is ready or `timeout` passes.
pub async fn run(endpoint: &str, timeout: Duration) -> Result<(), WaitError> {
    let base = endpoint.trim_end_matches('/');
    let uri: http::Uri =
        format!("{base}/_localstack/init").parse().map_err(|_| WaitError::BadEndpoint(endpoint.to_owned()))?;
    if uri.scheme_str() != Some("http") {
        return Err(WaitError::BadEndpoint(endpoint.to_owned()));
    }
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(&client, uri.clone())).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(why)) => why,
            Err(_) => "no answer within 2s".into(),
        };
        if Instant::now() + POLL_EVERY >= deadline {
            return Err(WaitError::Timeout { endpoint: base.to_owned(), secs: timeout.as_secs(), last });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// One look: `Ok` once `completed.READY` is true, else what was seen.
async fn attempt(client: &HttpClient, uri: http::Uri) -> Result<(), String> {
    let resp = client.get(uri).await.map_err(|e| format!("cannot connect ({e})"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| format!("reading the answer: {e}"))?.to_bytes();
    if !status.is_success() {
        return Err(format!("GET /_localstack/init answered {status}"));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| "the answer is not JSON".to_owned())?;
    if v["completed"]["READY"] == serde_json::Value::Bool(true) {
        Ok(())
    } else {
        Err("init hooks still running".into())
    }
}
