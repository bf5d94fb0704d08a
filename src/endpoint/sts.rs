//! STS `GetCallerIdentity`, so `aws sts get-caller-identity` — the first
//! command people run to check their setup — answers with the configured
//! account. Every other STS action is refused with STS's own `InvalidAction`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::sigv4::{AuthError, Verifier};
use crate::budget::BodyBudget;

/// STS requests are a few hundred bytes; this is the most one may send.
const MAX_BODY: usize = 64 * 1024;
/// Bytes of STS bodies held at once.
const STS_BODY_BUDGET: u32 = 1024 * 1024;

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

#[derive(Clone, Debug)]
pub struct Sts {
    pub account_id: String,
    verifier: Verifier,
}

impl Sts {
    pub fn new(config: &crate::config::Config) -> Self {
        let budget = BodyBudget::new(STS_BODY_BUDGET);
        Self { account_id: config.aws.account_id.clone(), verifier: Verifier::new(config.credentials(), budget) }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        let verified = match self.verifier.read_verified(req, MAX_BODY).await {
            Ok(ok) => ok,
            Err(e) => return auth_error(&e),
        };
        let (parts, body) = (&verified.parts, &verified.body);
        let mut params: Vec<(String, String)> = Vec::new();
        if let Some(q) = parts.uri.query() {
            params.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        params.extend(form_urlencoded::parse(body).into_owned());
        let action = params.iter().find(|(k, _)| k == "Action").map(|(_, v)| v.as_str());
        match action {
            Some("GetCallerIdentity") => self.caller_identity(),
            Some(other) => {
                let msg = format!("Could not find operation {other} for version 2011-06-15");
                error(StatusCode::BAD_REQUEST, "InvalidAction", &msg)
            }
            None => error(StatusCode::BAD_REQUEST, "MissingAction", "Missing Action"),
        }
    }

    fn caller_identity(&self) -> Response<s3s::Body> {
        let account = &self.account_id;
        let body = format!(
            "<GetCallerIdentityResponse xmlns=\"{XMLNS}\"><GetCallerIdentityResult>\
             <Arn>arn:aws:iam::{account}:root</Arn><UserId>{account}</UserId><Account>{account}</Account>\
             </GetCallerIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\
             </GetCallerIdentityResponse>",
            uuid::Uuid::new_v4()
        );
        xml(StatusCode::OK, body)
    }
}

fn auth_error(e: &AuthError) -> Response<s3s::Body> {
    error(e.status(), e.code(), &e.to_string())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<s3s::Body> {
    let body = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message>\
         </Error><RequestId>{}</RequestId></ErrorResponse>",
        quick_xml::escape::partial_escape(message),
        uuid::Uuid::new_v4()
    );
    xml(status, body)
}

fn xml(status: StatusCode, body: String) -> Response<s3s::Body> {
    let mut resp = Response::new(s3s::Body::from(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/xml"));
    resp
}
