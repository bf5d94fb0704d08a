//! The CI surface of the AWS port, as LocalStack's: health, init-hook
//! status, reset and peek, so `serve --roles s3,sqs` drops into CI scripts
//! and testcontainers setups written for LocalStack. Only unsigned requests
//! under `/_localstack/`, `/_crunchbox/` and `/_aws/` come here (no bucket
//! name starts with `_`, so none of them is an S3 path). Reset and peek
//! change or reveal everything, so they answer 403 unless the dev
//! endpoints are on (`--ephemeral`, `aws.dev_endpoints`), and 403 to
//! anything a web page sent (any page may POST to localhost without a
//! preflight; browsers name the page in `Origin` and `Sec-Fetch-Site`).

pub mod hooks;
pub mod wait;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::queue::QueueService;
use crate::s3compat::S3Front;
use hooks::Hooks;

/// Re-creates what the running web and worker roles need after a reset.
pub type Reprovision = Box<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

pub struct Surface {
    pub hooks: Arc<Hooks>,
    dev_endpoints: bool,
    reprovision: OnceLock<Reprovision>,
}

impl Surface {
    pub fn new(hooks: Arc<Hooks>, dev_endpoints: bool) -> Self {
        Self { hooks, dev_endpoints, reprovision: OnceLock::new() }
    }

    /// Set once the web or worker role has provisioned its resources.
    pub fn set_reprovision(&self, f: Reprovision) {
        let _ = self.reprovision.set(f);
    }

    /// Whether `req` is for this surface rather than S3, SQS or STS.
    pub fn claims<B>(req: &Request<B>) -> bool {
        let path = req.uri().path();
        let unsigned = !req.headers().contains_key(http::header::AUTHORIZATION)
            && !req.uri().query().is_some_and(|q| q.contains("X-Amz-Credential="));
        unsigned && ["/_localstack/", "/_crunchbox/", "/_aws/"].iter().any(|p| path.starts_with(p))
    }

    pub async fn handle<B>(
        &self,
        req: &Request<B>,
        s3: Option<&S3Front>,
        sqs: Option<&QueueService>,
    ) -> Response<s3s::Body> {
        let (method, path) = (req.method(), req.uri().path());
        let read = method == Method::GET || method == Method::HEAD;
        match path {
            "/_localstack/health" | "/_crunchbox/health" if read => health(s3.is_some(), sqs.is_some()),
            "/_localstack/init" if read => json_response(StatusCode::OK, &self.hooks.report()),
            "/_crunchbox/reset" | "/_localstack/state/reset" if method == Method::POST => {
                if let Some(refused) = self.refuse_dev(req) {
                    return refused;
                }
                self.reset(s3, sqs).await
            }
            "/_aws/sqs/messages" if read => {
                if let Some(refused) = self.refuse_dev(req) {
                    return refused;
                }
                match sqs {
                    Some(sqs) => sqs.peek(req),
                    None => error(StatusCode::NOT_FOUND, "NotFound", "the sqs role is not running in this process"),
                }
            }
            "/_localstack/health"
            | "/_crunchbox/health"
            | "/_localstack/init"
            | "/_crunchbox/reset"
            | "/_localstack/state/reset"
            | "/_aws/sqs/messages" => error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed"),
            _ => error(StatusCode::NOT_FOUND, "NotFound", "no such endpoint"),
        }
    }

    /// Why a dev endpoint (reset, peek) will not serve `req`, if it will not.
    fn refuse_dev<B>(&self, req: &Request<B>) -> Option<Response<s3s::Body>> {
        if !self.dev_endpoints {
            return Some(forbidden(
                "the dev endpoints (reset, peek) are off: run `crunchbox serve --ephemeral` or set aws.dev_endpoints = true",
            ));
        }
        let headers = req.headers();
        // `none` is the user's own navigation (the address bar); a page on
        // this very port (an HTML object) counts as a page too.
        let from_page = headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() != b"none");
        if headers.contains_key(http::header::ORIGIN) || from_page {
            return Some(forbidden("the dev endpoints (reset, peek) refuse requests sent by a web page"));
        }
        None
    }

    /// Deletes every bucket, object, queue and message, then re-creates
    /// what the web and worker roles need.
    async fn reset(&self, s3: Option<&S3Front>, sqs: Option<&QueueService>) -> Response<s3s::Body> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "reset: {what} failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &format!("reset: {what} failed"))
        };
        if let Some(sqs) = sqs
            && let Err(e) = sqs.reset().await
        {
            return failed("deleting the queues", &e);
        }
        if let Some(s3) = s3
            && let Err(e) = s3.reset().await
        {
            return failed("deleting the buckets", &e);
        }
        if let Some(reprovision) = self.reprovision.get()
            && let Err(e) = reprovision().await
        {
            return failed("re-provisioning", &e);
        }
        tracing::info!("state reset: every bucket, object, queue and message deleted");
        json_response(StatusCode::OK, &json!({ "reset": true }))
    }
}

fn health(s3: bool, sqs: bool) -> Response<s3s::Body> {
    let mut services = serde_json::Map::new();
    for (name, running) in [("s3", s3), ("sqs", sqs), ("sts", true)] {
        if running {
            services.insert(name.into(), "running".into());
        }
    }
    let body = json!({ "services": services, "edition": "crunchbox", "version": env!("CARGO_PKG_VERSION") });
    json_response(StatusCode::OK, &body)
}

fn forbidden(message: &str) -> Response<s3s::Body> {
    error(StatusCode::FORBIDDEN, "Forbidden", message)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<s3s::Body> {
    json_response(status, &json!({ "error": code, "message": message }))
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<s3s::Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(s3s::Body::from(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}
