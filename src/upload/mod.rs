//! `crunchbox upload FILE...`: the command-line client of the web role.
//!
//! Each file is sniffed (the server only takes bytes whose magic matches the
//! declared type, so we declare what the bytes are, not what the name says),
//! streamed with a progress bar, then followed on its event stream
//! (`GET /v1/avatar/{id}/events`) until the worker has crunched it.
//! The three variant URLs go to stdout; progress and errors go to stderr, one
//! line per failure, and any failure makes the exit status non-zero.

mod client;
mod events;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures_util::TryStreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use client::{Variants, WebClient};

/// Flags of `crunchbox upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Image files to upload (JPEG, PNG, GIF or WebP).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Base URL of a running crunchbox web role [default: http:// and
    /// CRUNCHBOX_WEB_LISTEN when that is set, else http://127.0.0.1:8080].
    #[arg(long, env = "CRUNCHBOX_UPLOAD_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Bearer token allowed to upload (one of `web.upload_tokens`).
    #[arg(long, env = "CRUNCHBOX_UPLOAD_TOKEN", default_value = "dev-token", hide_env_values = true)]
    pub token: String,
    /// Give up waiting for a file to be crunched after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub wait_secs: u64,
}

/// Everything that can go wrong, each worded as the one line the user reads.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot reach {0}: is `crunchbox serve` running?")]
    Unreachable(String),
    #[error("{endpoint}: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("not an http:// or https:// URL: {0}")]
    BadEndpoint(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("not a JPEG, PNG, GIF or WebP image")]
    Unsupported,
    #[error("crunch failed: {0}")]
    CrunchFailed(String),
    #[error("still not crunched after {0}s; is a worker running?")]
    Timeout(u64),
}

impl UploadError {
    /// Errors that will hit every remaining file the same way (a refused
    /// token among them), so one line says it instead of one per file.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            UploadError::Unreachable(_)
                | UploadError::BadEndpoint(_)
                | UploadError::Tls(_)
                | UploadError::Refused { status: 401 | 403, .. }
        )
    }
}

/// Runs the command; the exit status is the only result.
pub fn main(args: UploadArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crunchbox upload: {e}");
            return ExitCode::FAILURE;
        }
    };
    if runtime.block_on(run(&args)) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Uploads every file in turn; true when all of them became ready.
async fn run(args: &UploadArgs) -> bool {
    let endpoint =
        args.endpoint.clone().unwrap_or_else(|| default_endpoint(std::env::var("CRUNCHBOX_WEB_LISTEN").ok()));
    let client = match WebClient::new(&endpoint, &args.token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crunchbox upload: {e}");
            return false;
        }
    };
    let mut all_ok = true;
    for path in &args.files {
        match upload_one(&client, path, Duration::from_secs(args.wait_secs)).await {
            Ok((id, variants)) => print_ready(path, &id, &variants),
            Err(e) => {
                all_ok = false;
                if e.is_fatal() {
                    eprintln!("crunchbox upload: {e}");
                    break;
                }
                eprintln!("crunchbox upload: {}: {e}", path.display());
            }
        }
    }
    all_ok
}

/// The web role a `serve` started in the same environment listens on: a
/// user who moved it with `CRUNCHBOX_WEB_LISTEN` should not have to say so
/// twice. A value that is no address is left to `serve` to complain about.
fn default_endpoint(web_listen: Option<String>) -> String {
    web_listen
        .and_then(|listen| listen.trim().parse::<std::net::SocketAddr>().ok())
        .map_or_else(|| "http://127.0.0.1:8080".to_owned(), crate::banner::url)
}

fn print_ready(path: &Path, id: &str, v: &Variants) {
    println!("{}: ready ({id})", path.display());
    println!("  default {}", v.default);
    println!("  small   {}", v.small);
    println!("  large   {}", v.large);
}

async fn upload_one(client: &WebClient, path: &Path, wait: Duration) -> Result<(String, Variants), UploadError> {
    let mut file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let mime = sniff(&mut file).await?;

    let bar = progress::transfer(path, len);
    let counted = bar.clone();
    let stream = ReaderStream::with_capacity(file, 64 * 1024)
        .inspect_ok(move |chunk| counted.inc(chunk.len() as u64))
        .map_ok(Frame::data);
    let body = StreamBody::new(stream).boxed();
    let accepted = client.upload(mime, len, body).await;
    let accepted = match accepted {
        Ok(a) => a,
        Err(e) => {
            bar.abandon();
            return Err(e);
        }
    };

    progress::crunching(&bar, &accepted.id);
    let result = wait_ready(client, &accepted.id, wait).await;
    bar.finish_and_clear();
    result.map(|v| (accepted.id, v))
}

/// Reads the signature and rewinds, so the whole file is sent as is.
async fn sniff(file: &mut tokio::fs::File) -> Result<&'static str, UploadError> {
    let mut head = Vec::with_capacity(16);
    (&mut *file).take(16).read_to_end(&mut head).await?;
    file.seek(std::io::SeekFrom::Start(0)).await?;
    crate::crunch::detect(&head).map(|f| f.mime()).ok_or(UploadError::Unsupported)
}

/// Follows the upload's event stream until it settles. A stream the server
/// ended early (its time limit, a restart) is opened again, as an
/// `EventSource` would.
async fn wait_ready(client: &WebClient, id: &str, wait: Duration) -> Result<Variants, UploadError> {
    let deadline = tokio::time::Instant::now() + wait;
    let timeout = || UploadError::Timeout(wait.as_secs());
    loop {
        let mut events = tokio::time::timeout_at(deadline, client.events(id)).await.map_err(|_| timeout())??;
        while let Some(event) = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| timeout())?
            .map_err(|e| UploadError::Transport { endpoint: client.base().to_owned(), reason: e.to_string() })?
        {
            if event.name != "status" {
                continue;
            }
            let status = client.parse_status(&event.data)?;
            match status.status.as_str() {
                "ready" => {
                    return status.variants.ok_or_else(|| UploadError::Transport {
                        endpoint: client.base().to_owned(),
                        reason: "ready without variant URLs".into(),
                    });
                }
                "failed" => {
                    let reason = status.error.unwrap_or_else(|| "no reason given".into());
                    return Err(UploadError::CrunchFailed(reason));
                }
                _ => {}
            }
        }
        tokio::time::timeout_at(deadline, tokio::time::sleep(REOPEN_PAUSE)).await.map_err(|_| timeout())?;
    }
}

/// Pause before opening a stream the server ended unsettled.
const REOPEN_PAUSE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sniff_reads_magic_and_rewinds() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("picture.jpg");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\n rest of it").unwrap();
        let mut file = tokio::fs::File::open(&png).await.unwrap();
        assert_eq!(sniff(&mut file).await.unwrap(), "image/png");
        let mut all = Vec::new();
        file.read_to_end(&mut all).await.unwrap();
        assert!(all.starts_with(b"\x89PNG"), "the body must start at byte 0 again");

        let text = dir.path().join("notes.png");
        std::fs::write(&text, b"hello").unwrap();
        let mut file = tokio::fs::File::open(&text).await.unwrap();
        assert!(matches!(sniff(&mut file).await, Err(UploadError::Unsupported)));
    }

    #[test]
    fn the_default_endpoint_follows_the_web_listen_variable() {
        assert_eq!(default_endpoint(None), "http://127.0.0.1:8080");
        assert_eq!(default_endpoint(Some("127.0.0.1:28080".into())), "http://127.0.0.1:28080");
        assert_eq!(default_endpoint(Some("0.0.0.0:9000".into())), "http://127.0.0.1:9000");
        assert_eq!(default_endpoint(Some("nonsense".into())), "http://127.0.0.1:8080");
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        for bad in ["127.0.0.1:8080", "ftp://host/", "http://", "not a url"] {
            assert!(matches!(WebClient::new(bad, "t"), Err(UploadError::BadEndpoint(_))), "{bad}");
        }
        assert!(WebClient::new("https://example.com/base/", "t").is_ok());
    }
}
