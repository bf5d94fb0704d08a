//! The one embedded AWS listener (`aws.listen`): S3, SQS and STS on one port.
//!
//! Requests are told apart the way AWS's own front ends would if they shared
//! a host: by the service in the SigV4 credential scope (`s3`, `sqs`, `sts`),
//! then by `X-Amz-Target` / `Action`. Unsigned requests are S3 (anonymous
//! reads of the public bucket) unless they are plainly Query- or
//! JSON-protocol shaped (a form body, an `Action` parameter, an
//! `X-Amz-Target`), in which case SQS answers with its own
//! `MissingAuthenticationToken`, as AWS's front ends do.

pub mod sigv4;
pub mod sts;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::queue::QueueService;

/// Which embedded service a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    S3,
    Sqs,
    Sts,
}

/// The services behind the listener; a role that is not running is `None`.
#[derive(Clone)]
pub struct Endpoint {
    pub s3: Option<crate::s3compat::S3Front>,
    pub sqs: Option<QueueService>,
    pub sts: sts::Sts,
    /// Health, init status, reset and peek (LocalStack's CI endpoints).
    pub ci: std::sync::Arc<crate::ci::Surface>,
}

impl Endpoint {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        if crate::ci::Surface::claims(&req) {
            return self.ci.handle(&req, self.s3.as_ref(), self.sqs.as_ref()).await;
        }
        let target = target_of(req.method(), req.headers(), req.uri());
        if target == Target::S3
            && let Err(e) = sigv4::presigned_expires(req.uri())
        {
            return s3_error(&e);
        }
        match target {
            Target::S3 => match &self.s3 {
                Some(s3) => s3.call(req.map(s3s::Body::from)).await,
                None => plain(StatusCode::SERVICE_UNAVAILABLE, "the s3 role is not running in this process"),
            },
            Target::Sqs => match &self.sqs {
                Some(sqs) => sqs.handle(req).await,
                None => plain(StatusCode::SERVICE_UNAVAILABLE, "the sqs role is not running in this process"),
            },
            Target::Sts => self.sts.handle(req).await,
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<s3s::Body> {
    let mut resp = Response::new(s3s::Body::from(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// An S3-shaped XML error for a request refused before s3s saw it.
fn s3_error(e: &sigv4::AuthError) -> Response<s3s::Body> {
    crate::s3compat::xml_error(e.status(), e.code(), &e.to_string())
}

/// Picks the service from the SigV4 credential scope (header or presigned
/// query), falling back to the request's shape when it is unsigned.
pub fn target_of(method: &Method, headers: &HeaderMap, uri: &http::Uri) -> Target {
    let scope_service = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split_once("Credential=").map(|(_, rest)| rest))
        .and_then(|cred| service_in_credential(cred.split([',', ' ']).next().unwrap_or("")))
        .or_else(|| {
            uri.query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "X-Amz-Credential")
                    .and_then(|(_, v)| service_in_credential(&v).map(|s| s.into_owned()).map(Into::into))
            })
        });
    match scope_service.as_deref() {
        Some("sqs") => Target::Sqs,
        Some("sts") => Target::Sts,
        Some(_) => Target::S3,
        None if is_query_or_json_protocol(method, headers, uri) => Target::Sqs,
        None => Target::S3,
    }
}

/// An unsigned request in the shape of SQS's (or STS's) wire protocols,
/// which S3 never uses: a JSON-protocol target, a form-encoded POST (S3's
/// browser uploads are `multipart/form-data`), or an `Action` parameter.
fn is_query_or_json_protocol(method: &Method, headers: &HeaderMap, uri: &http::Uri) -> bool {
    let header = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json_target = header(http::header::HeaderName::from_static("x-amz-target")).starts_with("AmazonSQS.");
    let content_type = header(http::header::CONTENT_TYPE).to_ascii_lowercase();
    let form_post = method == Method::POST && content_type.starts_with("application/x-www-form-urlencoded");
    let json_post = content_type.starts_with("application/x-amz-json");
    let action = uri.query().is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "Action"));
    json_target || form_post || json_post || action
}

/// `AKID/20260101/us-east-1/sqs/aws4_request` → `sqs`.
fn service_in_credential(cred: &str) -> Option<std::borrow::Cow<'_, str>> {
    let mut parts = cred.rsplit('/');
    let terminator = parts.next()?;
    let service = parts.next()?;
    (terminator == "aws4_request").then(|| service.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn dispatches_by_credential_scope() {
        let uri: http::Uri = "/".parse().unwrap();
        let auth = |svc: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/{svc}/aws4_request, SignedHeaders=host, Signature=00"
            )
        };
        assert_eq!(target_of(&Method::POST, &headers(&[("authorization", &auth("sqs"))]), &uri), Target::Sqs);
        assert_eq!(target_of(&Method::POST, &headers(&[("authorization", &auth("sts"))]), &uri), Target::Sts);
        assert_eq!(target_of(&Method::POST, &headers(&[("authorization", &auth("s3"))]), &uri), Target::S3);
    }

    #[test]
    fn presigned_query_and_unsigned_requests() {
        let uri: http::Uri =
            "/q?X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fsqs%2Faws4_request&Action=ListQueues".parse().unwrap();
        assert_eq!(target_of(&Method::GET, &HeaderMap::new(), &uri), Target::Sqs);
        let root: http::Uri = "/bucket/key".parse().unwrap();
        assert_eq!(target_of(&Method::GET, &HeaderMap::new(), &root), Target::S3);
        assert_eq!(target_of(&Method::POST, &headers(&[("x-amz-target", "AmazonSQS.ListQueues")]), &root), Target::Sqs);
        let form = headers(&[("content-type", "application/x-www-form-urlencoded; charset=utf-8")]);
        assert_eq!(target_of(&Method::POST, &form, &"/".parse().unwrap()), Target::Sqs);
        let upload = headers(&[("content-type", "multipart/form-data; boundary=x")]);
        assert_eq!(target_of(&Method::POST, &upload, &"/bucket".parse().unwrap()), Target::S3);
        assert_eq!(target_of(&Method::GET, &HeaderMap::new(), &"/?Action=ListQueues".parse().unwrap()), Target::Sqs);
    }
}
