//! S3 as the listener sees it: what s3s does not do for a browser. A CORS
//! preflight (`OPTIONS`, never signed) is answered here from the bucket's
//! rules; every other request goes to s3s, and a response to a request with
//! an `Origin` gets the matching rule's CORS headers, errors included. A
//! chunked PUT without a length is spooled first (`spool`), and a form
//! upload's `${filename}` filled in (`post_form`).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use s3s::service::S3Service;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::cors;
use super::events::deliver::{EventSink, Hub};
use super::host::Hosts;
use super::post_form;
use super::spool;
use super::store::Store;
use crate::endpoint::sigv4::{AuthError, Keys};
use crate::shutdown::Shutdown;

/// How long a signed form upload waits for a turn before `SlowDown`.
const FORM_TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
pub struct S3Front {
    service: S3Service,
    store: Arc<Store>,
    hosts: Arc<Hosts>,
    /// Turns for form uploads, which s3s holds in memory whole.
    form_uploads: Arc<Semaphore>,
    events: Arc<Hub>,
    /// To check a chunked PUT's signature before spooling its body.
    keys: Keys,
}

impl S3Front {
    pub(super) fn new(service: S3Service, store: Arc<Store>, hosts: Arc<Hosts>, events: Arc<Hub>, keys: Keys) -> Self {
        let form_uploads = Arc::new(Semaphore::new(super::POST_OBJECT_CONCURRENCY));
        Self { service, store, hosts, form_uploads, events, keys }
    }

    /// Connects event notifications to their queues (the SQS role of this
    /// process); until then events wait in the outbox and configurations
    /// cannot be validated.
    pub fn connect_events(&self, sink: Arc<dyn EventSink>) {
        self.events.connect(sink);
    }

    /// The task delivering event notifications; runs until `shutdown`.
    pub fn deliver_events(&self, shutdown: Shutdown) -> impl std::future::Future<Output = ()> + Send + 'static {
        super::events::deliver::run(Arc::clone(&self.store), Arc::clone(&self.events), shutdown)
    }

    /// Deletes every bucket and object (the CI reset).
    pub async fn reset(&self) -> Result<(), super::S3CompatError> {
        Ok(self.store.wipe().await?)
    }

    pub async fn call(&self, req: Request<s3s::Body>) -> Response<s3s::Body> {
        if req.method() == Method::OPTIONS {
            return self.preflight(req.uri(), req.headers());
        }
        let req = if spool::needs_spool(&req) {
            // Disk is spent on a body only for a request signed with a key
            // we know: s3s checks signatures after the spool, too late to
            // stop anyone from filling `tmp/`.
            let (parts, body) = req.into_parts();
            let signed = self.keys.verify_s3_head(&parts, std::time::SystemTime::now());
            let req = Request::from_parts(parts, body);
            match signed {
                Ok(_) => match spool::spool(&self.store, req).await {
                    Ok(req) => req,
                    Err(resp) => return resp,
                },
                // Unspooled, s3s refuses it without reading the body.
                Err(e) => {
                    tracing::debug!(error = %e, "a chunked PUT without a verified signature is not spooled");
                    req
                }
            }
        } else {
            req
        };
        let form_upload = post_form::boundary(&req).is_some();
        let (mut req, _turn) = match post_form::boundary(&req) {
            Some(boundary) => match self.form_turn(req, &boundary).await {
                Ok(admitted) => admitted,
                Err(refusal) => return refusal,
            },
            None => (req, None),
        };
        if form_upload {
            req.extensions_mut().insert(super::api::FormUpload);
        }
        let origin = header(req.headers(), http::header::ORIGIN);
        let cors = origin.and_then(|o| Some((o.to_owned(), self.bucket_of(req.uri(), req.headers())?)));
        let method = req.method().clone();
        let mut resp = match self.service.call(req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = ?e, "s3 service failed");
                xml_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "We encountered an internal error.")
            }
        };
        if form_upload {
            resp = post_form::as_aws_policy_error(resp);
        }
        if let Some((origin, bucket)) = cors
            && let Some(rules) = self.rules(&bucket)
            && let Some(rule) = cors::matching(&rules, &origin, method.as_str(), &[])
        {
            resp.headers_mut().extend(cors::response_headers(rule, &origin, None));
        }
        resp
    }

    /// Admits a form upload to one of the turns s3s's buffering of its file
    /// needs: only once the fields read ahead of the file carry a policy
    /// signature made with a key we know (anyone could otherwise hold all
    /// the turns with a few slow forms), and for at most [`FORM_TURN_WAIT`]
    /// of waiting. The refusals are AWS's for such forms.
    async fn form_turn(
        &self,
        req: Request<s3s::Body>,
        boundary: &str,
    ) -> Result<(Request<s3s::Body>, Option<OwnedSemaphorePermit>), Response<s3s::Body>> {
        let Ok((req, fields)) = post_form::read_head(req, boundary, crate::budget::HELD_PACE).await else {
            return Err(xml_error(
                StatusCode::BAD_REQUEST,
                "RequestTimeout",
                "Your socket connection to the server was not read from or written to within the timeout period.",
            ));
        };
        if let Err(e) = self.keys.verify_post_policy(&fields) {
            tracing::debug!(error = %e, "a form upload without a verified policy signature");
            return Err(match e {
                AuthError::UnknownKey => xml_error(
                    StatusCode::FORBIDDEN,
                    "InvalidAccessKeyId",
                    "The AWS Access Key Id you provided does not exist in our records.",
                ),
                AuthError::Mismatch => xml_error(
                    StatusCode::FORBIDDEN,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided.",
                ),
                _ => xml_error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied"),
            });
        }
        match tokio::time::timeout(FORM_TURN_WAIT, self.form_uploads.clone().acquire_owned()).await {
            // Never closed, so `acquire` cannot fail.
            Ok(turn) => Ok((req, turn.ok())),
            Err(_) => Err(xml_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", "Please reduce your request rate.")),
        }
    }

    fn preflight(&self, uri: &http::Uri, headers: &HeaderMap) -> Response<s3s::Body> {
        let insufficient = || {
            xml_error(StatusCode::BAD_REQUEST, "BadRequest", "Insufficient information. Origin request header needed.")
        };
        let Some(origin) = header(headers, http::header::ORIGIN) else { return insufficient() };
        let Some((method, requested)) = cors::preflight_request(headers) else { return insufficient() };
        let Some(bucket) = self.bucket_of(uri, headers) else { return insufficient() };
        let Some(rules) = self.rules(&bucket) else {
            return xml_error(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            );
        };
        let requested: Vec<&str> = requested.iter().map(String::as_str).collect();
        match cors::matching(&rules, origin, method.as_str(), &requested) {
            Some(rule) => {
                let mut resp = Response::new(s3s::Body::empty());
                *resp.headers_mut() = cors::response_headers(rule, origin, Some(&requested));
                resp
            }
            None => xml_error(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, \
                 request method / Access-Control-Request-Method or Access-Control-Request-Headers are not \
                 whitelisted by the resource's CORS spec.",
            ),
        }
    }

    /// A bucket's CORS rules; `None` without rules (or on a store error,
    /// which then simply means no CORS headers: logged, never shown).
    fn rules(&self, bucket: &str) -> Option<Vec<s3s::dto::CORSRule>> {
        match self.store.get_bucket(bucket) {
            Ok(b) => b.and_then(|b| b.cors),
            Err(e) => {
                tracing::error!(error = %e, bucket, "reading CORS rules failed");
                None
            }
        }
    }

    /// The bucket a request addresses: virtual-host style, else the first
    /// path segment.
    fn bucket_of(&self, uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
        let host = header(headers, http::header::HOST).or_else(|| uri.authority().map(|a| a.as_str()));
        if let Some(bucket) = host.and_then(|h| self.hosts.bucket_of(h)) {
            return Some(bucket);
        }
        let first = uri.path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_owned())
    }
}

fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An S3 XML error answered before (or instead of) s3s.
pub fn xml_error(status: StatusCode, code: &str, message: &str) -> Response<s3s::Body> {
    xml_error_with(status, code, message, &[])
}

/// [`xml_error`] with more elements after the message, as some of S3's
/// errors have (`<Region>` for a request signed for the wrong region).
pub fn xml_error_with(status: StatusCode, code: &str, message: &str, extra: &[(&str, &str)]) -> Response<s3s::Body> {
    let extra: String = extra
        .iter()
        .map(|(name, value)| format!("<{name}>{}</{name}>", quick_xml::escape::partial_escape(*value)))
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message>{extra}\
         <RequestId>{}</RequestId></Error>",
        quick_xml::escape::partial_escape(message),
        uuid::Uuid::new_v4().simple()
    );
    let mut resp = Response::new(s3s::Body::from(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    resp
}
