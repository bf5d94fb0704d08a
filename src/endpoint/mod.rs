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
    /// `aws.region`: the one region S3 requests may be signed for.
    pub region: std::sync::Arc<str>,
    /// Health, init status, reset and peek (LocalStack's CI endpoints).
    pub ci: std::sync::Arc<crate::ci::Surface>,
}

impl Endpoint {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        if crate::ci::Surface::claims(&req) {
            return self.ci.handle(&req, self.s3.as_ref(), self.sqs.as_ref()).await;
        }
        let target = target_of(req.method(), req.headers(), req.uri());
        let resp = self.route(target, req).await;
        if resp.status().as_u16() >= 400 {
            log_error_response(target, &resp);
        }
        resp
    }

    async fn route(&self, target: Target, req: Request<Incoming>) -> Response<s3s::Body> {
        if target == Target::S3 {
            if let Err(e) = sigv4::presigned_expires(req.uri()) {
                return s3_error(&e);
            }
            if let Some((status, code, message)) =
                sigv4::sigv2_refusal(req.headers(), req.uri(), std::time::SystemTime::now())
            {
                return crate::s3compat::xml_error(status, code, &message);
            }
            if let Some((given, presigned)) = sigv4::signed_region(req.headers(), req.uri())
                && given != *self.region
            {
                let (code, message) = sigv4::wrong_region_s3(&given, &self.region, presigned);
                let region = [("Region", &*self.region)];
                return crate::s3compat::xml_error_with(StatusCode::BAD_REQUEST, code, &message, &region);
            }
            let unsigned = sigv4::unsigned_amz_headers(req.headers(), req.uri());
            if !unsigned.is_empty() {
                let message = "There were headers present in the request which were not signed";
                let joined = unsigned.join(", ");
                let named = [("HeadersNotSigned", joined.as_str())];
                return crate::s3compat::xml_error_with(StatusCode::FORBIDDEN, "AccessDenied", message, &named);
            }
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

/// One line per error answer, at a level that says whose fault it was: a
/// missing key or a failed precondition is routine (debug), a client's
/// mistake or a refused signature is worth noticing (info), a failure of
/// ours is an error. The request's id, method and path come from its span.
fn log_error_response(target: Target, resp: &Response<s3s::Body>) {
    let status = resp.status().as_u16();
    let (code, message) = error_summary(resp);
    let service = match target {
        Target::S3 => "s3",
        Target::Sqs => "sqs",
        Target::Sts => "sts",
    };
    // (`detail`, not `message`: that field name is the event's own text.)
    let (code, detail) = (code.as_deref().unwrap_or("-"), message.as_deref().unwrap_or(""));
    // SQS says "no such queue" with a 400 (provision asks it at every start).
    let missing = status == 404 || code.ends_with("NonExistentQueue") || code.ends_with("QueueDoesNotExist");
    match status {
        _ if missing || status == 412 => tracing::debug!(service, status, code, detail, "refused"),
        503 => tracing::warn!(service, status, code, detail, "busy"),
        s if s >= 500 && s != 501 => tracing::error!(service, status, code, detail, "failed"),
        _ => tracing::info!(service, status, code, detail, "refused"),
    }
}

/// The AWS error code and message of an error answer, from the Query
/// protocol's `x-amzn-query-error` header, an XML `<Code>`/`<Message>`, or
/// a JSON `__type`/`message` body (only a body held in memory is read).
fn error_summary(resp: &Response<s3s::Body>) -> (Option<String>, Option<String>) {
    let from_header = resp
        .headers()
        .get("x-amzn-query-error")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).to_owned());
    let Some(body) = resp.body().bytes() else { return (from_header, None) };
    let text = String::from_utf8_lossy(&body);
    let element = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_owned())
    };
    if let (Some(code), message) = (element("Code"), element("Message")) {
        return (from_header.or(Some(code)), message);
    }
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let code = field("__type").map(|t| t.rsplit('#').next().unwrap_or(&t).to_owned());
    (from_header.or(code), field("message").or_else(|| field("Message")))
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
    let scope_service = sigv4::claims(headers, uri).find_map(|c| c.service().map(str::to_owned));
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
