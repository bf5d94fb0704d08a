//! SigV4 verification for the services s3s does not cover (SQS, STS), and
//! the checks S3 requests get before s3s sees them.
//!
//! SQS and STS sign the whole body, so it is buffered first, under a limit:
//! SQS's largest legal request is a 1 MiB batch, which form encoding can
//! triple, plus its envelope. The canonical request follows AWS's
//! "Create a canonical request for Signature Version 4" for non-S3 services;
//! for S3 (whose body s3s checks as it streams) only the signed head is
//! verified here, against the payload hash the request declares.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::request::Parts;
use hyper::body::Incoming;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;

use crate::budget::{BodyBudget, HELD_PACE, ReadError, read_held};

type HmacSha256 = Hmac<Sha256>;

/// Largest request body SQS/STS accept: a 1 MiB payload, form-encoded
/// (up to 3× for non-ASCII text), plus the request's envelope.
pub const MAX_BODY: usize = 3 * 1024 * 1024 + 256 * 1024;

/// Bytes of SQS request bodies held at once, across all connections (see
/// [`BodyBudget`]): a few dozen of the largest batches, thousands of the
/// usual few-KiB requests.
pub const SQS_BODY_BUDGET: u32 = 64 * 1024 * 1024;

/// How far a request's timestamp may be from ours (AWS allows 15 minutes).
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// The longest lifetime AWS allows a presigned URL (`X-Amz-Expires`): 7 days.
pub const MAX_PRESIGNED_EXPIRES: u64 = 7 * 24 * 60 * 60;

/// Everything but AWS's unreserved characters is percent-encoded.
const AWS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// The same, keeping `/` (path segments).
const AWS_ENCODE_PATH: &AsciiSet = &AWS_ENCODE.remove(b'/');

/// Why a request was refused before it reached the service. Each maps onto
/// the AWS error code that SQS and STS send for it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Request is missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
         Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    #[error("Signature expired: {0} is now earlier or later than 15 minutes from the current time.")]
    Expired(String),
    #[error("{0}")]
    QueryParameters(String),
    #[error("Request body is larger than {MAX_BODY} bytes.")]
    TooLarge,
    #[error("The service is busy with other large requests; retry.")]
    Busy,
    #[error("Cannot read the request body: {0}")]
    Body(String),
    #[error("Your socket connection to the server was not read from or written to within the timeout period.")]
    TooSlow,
}

impl AuthError {
    /// The AWS error code (the same for SQS's Query and JSON protocols and STS).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "MissingAuthenticationToken",
            Self::Incomplete(_) => "IncompleteSignature",
            Self::UnknownKey => "InvalidClientTokenId",
            Self::Mismatch => "SignatureDoesNotMatch",
            Self::Expired(_) => "RequestExpired",
            Self::QueryParameters(_) => "AuthorizationQueryParametersError",
            Self::TooLarge => "RequestEntityTooLarge",
            Self::Busy => "ServiceUnavailable",
            Self::Body(_) => "MalformedInput",
            Self::TooSlow => "RequestTimeout",
        }
    }

    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Missing | Self::UnknownKey | Self::Mismatch => http::StatusCode::FORBIDDEN,
            Self::TooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy => http::StatusCode::SERVICE_UNAVAILABLE,
            Self::Incomplete(_) | Self::Expired(_) | Self::QueryParameters(_) | Self::Body(_) | Self::TooSlow => {
                http::StatusCode::BAD_REQUEST
            }
        }
    }
}

/// The key pairs the endpoint accepts; cheap to clone.
#[derive(Clone, Debug)]
pub struct Keys {
    secrets: Arc<HashMap<String, String>>,
}

/// Knows the key pairs the endpoint accepts, and holds the budget the
/// bodies it must buffer are drawn from.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Keys,
    budget: BodyBudget,
}

/// Where a canonical request's payload hash comes from.
#[derive(Clone, Copy)]
enum Payload<'a> {
    /// SQS, STS: the bytes received (a declared hash must equal them).
    Body(&'a [u8]),
    /// S3, before its body is read: the hash `x-amz-content-sha256`
    /// declares (`UNSIGNED-PAYLOAD` for a presigned URL), which s3s then
    /// holds the streamed bytes to. S3 also encodes its path only once.
    DeclaredS3,
}

/// A request whose signature held, with its body. The body's share of the
/// budget is given back when this is dropped, so keep it while the body is
/// in use.
pub struct Verified {
    pub parts: Parts,
    pub body: Bytes,
    pub access_key: String,
    _reserved: OwnedSemaphorePermit,
}

/// The parts of a parsed `Authorization` header or presigned query.
struct Signed {
    access_key: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    presigned: bool,
}

impl Verifier {
    pub fn new(credentials: Vec<(String, String)>, budget: BodyBudget) -> Self {
        Self { keys: Keys::new(credentials), budget }
    }

    /// Buffers the body (up to `limit`, reserved from the budget first: its
    /// `Content-Length`, or `limit` when it has none, and read at the
    /// budget's [`HELD_PACE`]) and checks the signature over it.
    pub async fn read_verified(&self, req: http::Request<Incoming>, limit: usize) -> Result<Verified, AuthError> {
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(AuthError::TooLarge);
        }
        // Only a caller naming a key we know may hold a share of the budget:
        // anonymous clients cannot starve signed ones by trickling bodies.
        let signed = parse_signed(&parts)?;
        if !self.keys.secrets.contains_key(&signed.access_key) {
            return Err(AuthError::UnknownKey);
        }
        let reserved = self.budget.reserve(declared.unwrap_or(limit as u64)).await.map_err(|_| AuthError::Busy)?;
        let limit = declared.map_or(limit, |n| n as usize);
        let body = read_held(body, limit, HELD_PACE).await.map_err(|e| match e {
            ReadError::TooLarge => AuthError::TooLarge,
            ReadError::TooSlow => AuthError::TooSlow,
            ReadError::Body(e) => AuthError::Body(e),
        })?;
        let access_key = self.keys.check(&parts, signed, Payload::Body(&body), SystemTime::now())?;
        Ok(Verified { parts, body, access_key, _reserved: reserved })
    }

    /// Checks the request's SigV4 signature; returns the access key it used.
    pub fn verify(&self, parts: &Parts, body: &[u8], now: SystemTime) -> Result<String, AuthError> {
        self.keys.check(parts, parse_signed(parts)?, Payload::Body(body), now)
    }
}

impl Keys {
    pub fn new(credentials: Vec<(String, String)>) -> Self {
        Self { secrets: Arc::new(credentials.into_iter().collect()) }
    }

    /// The secret of a configured access key.
    pub fn secret(&self, access_key: &str) -> Result<&str, AuthError> {
        self.secrets.get(access_key).map(String::as_str).ok_or(AuthError::UnknownKey)
    }

    /// Checks the signature of an S3 request's head (header or presigned
    /// URL) before its body is read; returns the access key it used. Only a
    /// request that passes may make the endpoint spend disk on its body
    /// ahead of s3s, which verifies everything again.
    pub fn verify_s3_head(&self, parts: &Parts, now: SystemTime) -> Result<String, AuthError> {
        self.check(parts, parse_signed(parts)?, Payload::DeclaredS3, now)
    }

    /// Checks a form upload's policy signature (SigV4, or Signature Version
    /// 2 as botocore makes by default) from the form's fields, before its
    /// file is read; returns the access key it used. s3s verifies it again,
    /// with the policy's conditions.
    pub fn verify_post_policy(&self, fields: &HashMap<String, String>) -> Result<String, AuthError> {
        let field = |name: &str| fields.get(name).map(String::as_str);
        let policy = field("policy").ok_or(AuthError::Missing)?;
        if let Some(signature) = field("x-amz-signature") {
            let credential = field("x-amz-credential").unwrap_or_default();
            let scope = Scope::parse(credential)
                .ok_or_else(|| AuthError::Incomplete(format!("Invalid x-amz-credential '{credential}'.")))?;
            let secret = self.secret(scope.access_key)?;
            let provided = hex::decode(signature).map_err(|_| AuthError::Mismatch)?;
            let mut mac = hmac_for(&signing_key(secret, scope.date, scope.region, scope.service));
            mac.update(policy.as_bytes());
            mac.verify_slice(&provided).map_err(|_| AuthError::Mismatch)?;
            return Ok(scope.access_key.to_owned());
        }
        let (Some(access_key), Some(signature)) = (field("awsaccesskeyid"), field("signature")) else {
            return Err(AuthError::Missing);
        };
        let secret = self.secret(access_key)?;
        let provided = base64::engine::general_purpose::STANDARD.decode(signature).map_err(|_| AuthError::Mismatch)?;
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).map_err(|_| AuthError::Mismatch)?;
        mac.update(policy.as_bytes());
        mac.verify_slice(&provided).map_err(|_| AuthError::Mismatch)?;
        Ok(access_key.to_owned())
    }

    /// Verifies a request whose signature fields are parsed.
    fn check(&self, parts: &Parts, signed: Signed, payload: Payload<'_>, now: SystemTime) -> Result<String, AuthError> {
        let secret = self.secret(&signed.access_key)?;
        let when = parse_amz_date(&signed.amz_date)
            .ok_or_else(|| AuthError::Incomplete(format!("Invalid X-Amz-Date '{}'.", signed.amz_date)))?;
        let skew = match now.duration_since(when) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > MAX_SKEW && !signed.presigned {
            return Err(AuthError::Expired(signed.amz_date.clone()));
        }
        if signed.presigned {
            let expires = presigned_expires(&parts.uri)?.unwrap_or(900);
            if now > when + Duration::from_secs(expires) || when > now + MAX_SKEW {
                return Err(AuthError::Expired(signed.amz_date.clone()));
            }
        }
        let unsigned = not_signed(&parts.headers, &signed.signed_headers);
        if !unsigned.is_empty() {
            return Err(AuthError::Incomplete(format!(
                "Every x-amz-* header must be signed; not in SignedHeaders: {}.",
                unsigned.join(", ")
            )));
        }
        let canonical = canonical_request(parts, payload, &signed)?;
        let scope = format!("{}/{}/{}/aws4_request", signed.date, signed.region, signed.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            signed.amz_date,
            scope,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(secret, &signed.date, &signed.region, &signed.service);
        let provided = hex::decode(&signed.signature).map_err(|_| AuthError::Mismatch)?;
        let mut mac = hmac_for(&key);
        mac.update(string_to_sign.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&provided).map_err(|_| AuthError::Mismatch)?;
        Ok(signed.access_key)
    }
}

fn hmac_for(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = hmac_for(key);
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    uri_query_param(&parts.uri, name)
}

fn uri_query_param(uri: &http::Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A presigned URL's `X-Amz-Expires`, if it has one: a whole number of
/// seconds from 1 to 7 days, as AWS requires of every service (s3s does
/// not check the upper bound, so the endpoint checks it for S3 too).
pub fn presigned_expires(uri: &http::Uri) -> Result<Option<u64>, AuthError> {
    let Some(raw) = uri_query_param(uri, "X-Amz-Expires") else { return Ok(None) };
    match raw.parse::<u64>() {
        Ok(secs) if secs > MAX_PRESIGNED_EXPIRES => Err(AuthError::QueryParameters(format!(
            "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES}"
        ))),
        Ok(secs) if secs > 0 => Ok(Some(secs)),
        _ => Err(AuthError::QueryParameters("X-Amz-Expires should be a number".into())),
    }
}

fn parse_signed(parts: &Parts) -> Result<Signed, AuthError> {
    if let Some(auth) = parts.headers.get(http::header::AUTHORIZATION) {
        let auth = auth.to_str().map_err(|_| AuthError::Incomplete("Authorization header is not ASCII.".into()))?;
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
            AuthError::Incomplete(format!("Unsupported Authorization header (only AWS4-HMAC-SHA256): '{auth}'."))
        })?;
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for part in rest.split(',') {
            if let Some((k, v)) = part.trim().split_once('=') {
                fields.insert(k.trim(), v.trim());
            }
        }
        let field = |name: &str| {
            fields.get(name).map(|v| v.to_string()).ok_or_else(|| {
                AuthError::Incomplete(format!("Authorization header requires '{name}' parameter. Authorization={auth}"))
            })
        };
        let credential = field("Credential")?;
        let signed_headers = field("SignedHeaders")?;
        let signature = field("Signature")?;
        let amz_date = header_str(parts, "x-amz-date")
            .ok_or_else(|| AuthError::Incomplete("Authorization header requires existence of X-Amz-Date.".into()))?;
        return signed_from(credential, signed_headers, signature, amz_date, false);
    }
    if query_param(parts, "X-Amz-Signature").is_some() || query_param(parts, "X-Amz-Credential").is_some() {
        let need = |name: &str| {
            query_param(parts, name)
                .ok_or_else(|| AuthError::Incomplete(format!("Presigned request requires the '{name}' parameter.")))
        };
        if need("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
            return Err(AuthError::Incomplete("Only X-Amz-Algorithm=AWS4-HMAC-SHA256 is supported.".into()));
        }
        return signed_from(
            need("X-Amz-Credential")?,
            need("X-Amz-SignedHeaders")?,
            need("X-Amz-Signature")?,
            need("X-Amz-Date")?,
            true,
        );
    }
    Err(AuthError::Missing)
}

/// A credential scope a request claims (`ACCESS/DATE/REGION/SERVICE/aws4_request`),
/// read before any signature is checked: what routing and the region check
/// go by. The signature check parses it again, strictly.
#[derive(Debug)]
pub struct Claim {
    credential: String,
    /// From a presigned URL's `X-Amz-Credential`, not the `Authorization` header.
    pub presigned: bool,
    /// An `AWS4-HMAC-SHA256` header or a presigned URL: a scope with a
    /// region in it (a SigV4a header's scope has none).
    regional: bool,
}

impl Claim {
    /// `sqs` of `AKID/20260101/us-east-1/sqs/aws4_request`; `None` without
    /// the terminator.
    pub fn service(&self) -> Option<&str> {
        let mut parts = self.credential.rsplit('/');
        let terminator = parts.next()?;
        let service = parts.next()?;
        (terminator == "aws4_request").then_some(service)
    }

    /// The scope's third part from the end (an access key may hold no `/`).
    fn region(&self) -> Option<&str> {
        self.credential.rsplit('/').nth(2)
    }
}

/// The scopes a request claims: its `Authorization` header's (any scheme
/// with a `Credential=`), then its presigned URL's.
pub fn claims(headers: &http::HeaderMap, uri: &http::Uri) -> impl Iterator<Item = Claim> {
    let from_header = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|auth| {
        let (_, rest) = auth.split_once("Credential=")?;
        let credential = rest.split([',', ' ']).next().unwrap_or("").to_owned();
        Some(Claim { credential, presigned: false, regional: auth.starts_with("AWS4-HMAC-SHA256") })
    });
    let from_query = || {
        uri_query_param(uri, "X-Amz-Credential").map(|credential| Claim { credential, presigned: true, regional: true })
    };
    from_header.into_iter().chain(std::iter::once_with(from_query).flatten())
}

/// The region a request is signed for (and whether by a presigned URL);
/// `None` when it carries no SigV4 credential scope.
pub fn signed_region(headers: &http::HeaderMap, uri: &http::Uri) -> Option<(String, bool)> {
    let claim = claims(headers, uri).find(|c| c.regional)?;
    Some((claim.region()?.to_owned(), claim.presigned))
}

/// The `x-amz-*` headers a SigV4 request (header or presigned) carries
/// without having signed them; empty for any other request. AWS refuses
/// such a request: anyone who saw it could add one, and one header changes
/// what it does (`x-amz-copy-source` turns a PUT into a copy of any object,
/// `x-amz-target` a receive into a purge). Read before the signature is
/// checked; the signature check then covers every header that is left.
pub fn unsigned_amz_headers(headers: &http::HeaderMap, uri: &http::Uri) -> Vec<String> {
    let from_header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|auth| auth.starts_with("AWS4-"))
        .map(|auth| {
            auth.split_once("SignedHeaders=")
                .map_or("", |(_, rest)| rest.split([',', ' ']).next().unwrap_or(""))
                .to_owned()
        });
    let Some(signed) = from_header.or_else(|| uri_query_param(uri, "X-Amz-SignedHeaders")) else {
        return Vec::new();
    };
    let signed: Vec<String> = signed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    not_signed(headers, &signed)
}

/// The `x-amz-*` headers present but not in `signed` (lowercase names).
fn not_signed(headers: &http::HeaderMap, signed: &[String]) -> Vec<String> {
    headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-") && !signed.iter().any(|s| s == name))
        .map(str::to_owned)
        .collect()
}

/// S3's answer (status, code, message) to a Signature Version 2 request it
/// will not take; `None` for any other. V2 signs neither the body nor, in
/// an `Authorization` header, a time s3s would check: a captured request
/// could be replayed, with another body, forever. So V2 headers are refused
/// as AWS refuses them for every bucket made since 2020. V2 presigned URLs
/// stay (botocore still makes them by default), their `Expires` held to the
/// week SigV4 allows.
pub fn sigv2_refusal(
    headers: &http::HeaderMap,
    uri: &http::Uri,
    now: SystemTime,
) -> Option<(http::StatusCode, &'static str, String)> {
    let auth = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if auth.starts_with("AWS ") {
        let message = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.";
        return Some((http::StatusCode::BAD_REQUEST, "InvalidRequest", message.into()));
    }
    if uri_query_param(uri, "Signature").is_none() || uri_query_param(uri, "X-Amz-Algorithm").is_some() {
        return None;
    }
    let latest = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + MAX_PRESIGNED_EXPIRES;
    match uri_query_param(uri, "Expires").map(|e| e.parse::<u64>()) {
        Some(Ok(expires)) if expires <= latest => None,
        Some(Ok(_)) => Some((
            http::StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            format!("Expires must be less than a week (in seconds) from now; that is {MAX_PRESIGNED_EXPIRES}"),
        )),
        _ => Some((
            http::StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters".into(),
        )),
    }
}

/// S3's answer to a request signed for another region: 400 with the region
/// to use in `<Region>`, which AWS's SDKs, aws-cli and s3cmd read to sign
/// again for it.
pub fn wrong_region_s3(given: &str, expected: &str, presigned: bool) -> (&'static str, String) {
    if presigned {
        (
            "AuthorizationQueryParametersError",
            format!(
                "Error parsing the X-Amz-Credential parameter; the region '{given}' is wrong; expecting '{expected}'"
            ),
        )
    } else {
        (
            "AuthorizationHeaderMalformed",
            format!("The authorization header is malformed; the region '{given}' is wrong; expecting '{expected}'"),
        )
    }
}

fn header_str(parts: &Parts, name: &str) -> Option<String> {
    parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A credential scope, `key/yyyymmdd/region/service/aws4_request`.
struct Scope<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

impl<'a> Scope<'a> {
    fn parse(credential: &'a str) -> Option<Self> {
        let mut pieces = credential.split('/');
        let scope =
            Scope { access_key: pieces.next()?, date: pieces.next()?, region: pieces.next()?, service: pieces.next()? };
        (pieces.next() == Some("aws4_request") && pieces.next().is_none()).then_some(scope)
    }
}

fn signed_from(
    credential: String,
    signed_headers: String,
    signature: String,
    amz_date: String,
    presigned: bool,
) -> Result<Signed, AuthError> {
    let Some(Scope { access_key, date, region, service }) = Scope::parse(&credential) else {
        return Err(AuthError::Incomplete(format!(
            "Credential should be scoped to a valid region, service and terminator: '{credential}'."
        )));
    };
    if access_key.is_empty() {
        return Err(AuthError::Incomplete("Credential has no access key.".into()));
    }
    if !amz_date.starts_with(date) {
        return Err(AuthError::Incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != \
             '{amz_date}'."
        )));
    }
    let signed_headers: Vec<String> = signed_headers.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::Incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.".into()));
    }
    Ok(Signed {
        access_key: access_key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature,
        amz_date,
        presigned,
    })
}

/// `20260101T120000Z` → the instant it names.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(num(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(6..8)? as u8).ok()?;
    let t = time::Time::from_hms(num(9..11)? as u8, num(11..13)? as u8, num(13..15)? as u8).ok()?;
    let secs = time::PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp();
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn canonical_request(parts: &Parts, payload: Payload<'_>, signed: &Signed) -> Result<String, AuthError> {
    let path = parts.uri.path();
    let canonical_uri = match payload {
        _ if path.is_empty() => "/".to_owned(),
        // Other services encode the (already encoded) path once more.
        Payload::Body(_) => utf8_percent_encode(path, AWS_ENCODE_PATH).to_string(),
        Payload::DeclaredS3 => utf8_percent_encode(&decode(path), AWS_ENCODE_PATH).to_string(),
    };

    let mut query: Vec<(String, String)> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (aws_encode(&decode_query(k)), aws_encode(&decode_query(v)))
        })
        .filter(|(k, _)| !(signed.presigned && k == "X-Amz-Signature"))
        .collect();
    query.sort();
    let canonical_query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");

    let mut canonical_headers = String::new();
    for name in &signed.signed_headers {
        let values: Vec<String> = parts
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() {
            return Err(AuthError::Mismatch);
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }

    let declared = parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok());
    let payload_hash = match payload {
        // The signature must bind the bytes received, not a hash the client
        // merely claims: a declared hash that differs (or `UNSIGNED-PAYLOAD`,
        // which SQS and STS do not allow) is a signature that does not match.
        Payload::Body(body) => {
            let hash = hex::encode(Sha256::digest(body));
            if declared.is_some_and(|d| !d.eq_ignore_ascii_case(&hash)) {
                return Err(AuthError::Mismatch);
            }
            hash
        }
        Payload::DeclaredS3 if signed.presigned => "UNSIGNED-PAYLOAD".to_owned(),
        Payload::DeclaredS3 => declared
            .ok_or_else(|| {
                AuthError::Incomplete("Missing required header for this request: x-amz-content-sha256".into())
            })?
            .to_owned(),
    };
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method.as_str(),
        canonical_uri,
        canonical_query,
        canonical_headers,
        signed.signed_headers.join(";"),
        payload_hash
    ))
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A query name or value as the services read it (form encoding: `+` is a
/// space). Canonicalizing `+` as itself would sign `a+b` and `a%2Bb` alike
/// while one means `a b` and the other `a+b`.
fn decode_query(s: &str) -> String {
    decode(&s.replace('+', " "))
}

fn aws_encode(s: &str) -> String {
    utf8_percent_encode(s, AWS_ENCODE).to_string()
}

fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: &str, date: &str) -> Parts {
        let req = http::Request::post("/")
            .header("host", "example.amazonaws.com")
            .header("x-amz-date", date)
            .header("authorization", auth)
            .body(())
            .unwrap();
        req.into_parts().0
    }

    #[test]
    fn parses_amz_date() {
        let t = parse_amz_date("19700101T000001Z").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1));
        assert!(parse_amz_date("1970-01-01").is_none());
    }

    #[test]
    fn malformed_header_is_incomplete() {
        let v = Verifier::new(vec![("AK".into(), "SK".into())], BodyBudget::new(1024));
        let p = parts("AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/sqs/aws4_request", "20260101T000000Z");
        assert!(matches!(v.verify(&p, b"", SystemTime::now()), Err(AuthError::Incomplete(_))));
    }

    #[test]
    fn unknown_key_and_missing() {
        let v = Verifier::new(vec![("AK".into(), "SK".into())], BodyBudget::new(1024));
        let p = parts(
            "AWS4-HMAC-SHA256 Credential=NOPE/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, \
             Signature=00",
            "20260101T000000Z",
        );
        assert!(matches!(v.verify(&p, b"", SystemTime::now()), Err(AuthError::UnknownKey)));
        let bare = http::Request::post("/").body(()).unwrap().into_parts().0;
        assert!(matches!(v.verify(&bare, b"", SystemTime::now()), Err(AuthError::Missing)));
    }

    #[test]
    fn sigv2_headers_are_refused_and_v2_urls_held_to_a_week() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut v2 = http::HeaderMap::new();
        v2.insert("authorization", "AWS AK:c2lnbmF0dXJl".parse().unwrap());
        let root: http::Uri = "/b/k".parse().unwrap();
        let refused = sigv2_refusal(&v2, &root, now).map(|(s, c, _)| (s.as_u16(), c));
        assert_eq!(refused, Some((400, "InvalidRequest")));
        let none = http::HeaderMap::new();
        let url = |expires: u64| -> http::Uri {
            format!("/b/k?AWSAccessKeyId=AK&Signature=c2ln&Expires={expires}").parse().unwrap()
        };
        assert!(sigv2_refusal(&none, &url(1_000_000 + MAX_PRESIGNED_EXPIRES), now).is_none());
        let far = sigv2_refusal(&none, &url(1_000_001 + MAX_PRESIGNED_EXPIRES), now).map(|(_, c, _)| c);
        assert_eq!(far, Some("AuthorizationQueryParametersError"));
        let no_expiry: http::Uri = "/b/k?AWSAccessKeyId=AK&Signature=c2ln".parse().unwrap();
        assert_eq!(sigv2_refusal(&none, &no_expiry, now).map(|(_, c, _)| c), Some("AccessDenied"));
        // SigV4 (header or presigned) is not this check's business.
        let v4: http::Uri = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00".parse().unwrap();
        assert!(sigv2_refusal(&none, &v4, now).is_none());
        assert!(sigv2_refusal(&none, &root, now).is_none());
    }

    #[test]
    fn signed_region_from_header_or_query() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20260101/US/s3/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        let root: http::Uri = "/".parse().unwrap();
        assert_eq!(signed_region(&h, &root), Some(("US".into(), false)));
        let q: http::Uri = "/b/k?X-Amz-Credential=AK%2F20260101%2Feu-west-1%2Fs3%2Faws4_request".parse().unwrap();
        assert_eq!(signed_region(&http::HeaderMap::new(), &q), Some(("eu-west-1".into(), true)));
        assert_eq!(signed_region(&http::HeaderMap::new(), &root), None);
        // A SigV4a scope names no region: it is routed by its service, not
        // judged by a region it does not have.
        let mut v4a = http::HeaderMap::new();
        v4a.insert("authorization", "AWS4-ECDSA-P256-SHA256 Credential=AK/20260101/s3/aws4_request".parse().unwrap());
        assert_eq!(signed_region(&v4a, &root), None);
        assert_eq!(claims(&v4a, &root).find_map(|c| c.service().map(str::to_owned)).as_deref(), Some("s3"));
        let (code, message) = wrong_region_s3("US", "us-east-1", false);
        assert_eq!(code, "AuthorizationHeaderMalformed");
        assert_eq!(message, "The authorization header is malformed; the region 'US' is wrong; expecting 'us-east-1'");
    }
}
