//! CORS: Put/Get/DeleteBucketCors keep a bucket's rules in its record;
//! [`matching`] picks the rule that answers a browser (preflight or actual
//! request), as AWS does: the first rule whose origin, method and (for a
//! preflight) every requested header are allowed.

use http::{HeaderMap, HeaderValue, Method};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;

const MAX_RULES: usize = 100;
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

pub async fn put(api: &S3Api, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    let rules = input.cors_configuration.cors_rules;
    validate(&rules)?;
    if !api.store.update_bucket(&input.bucket, |b| b.cors = Some(rules.clone())).await? {
        return Err(super::api::no_such_bucket());
    }
    Ok(S3Response::new(PutBucketCorsOutput {}))
}

pub async fn get(api: &S3Api, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
    match api.bucket(&req.input.bucket)?.cors {
        Some(rules) => Ok(S3Response::new(GetBucketCorsOutput { cors_rules: Some(rules) })),
        None => Err(s3_error!(NoSuchCORSConfiguration, "The CORS configuration does not exist")),
    }
}

pub async fn delete(
    api: &S3Api,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    if !api.store.update_bucket(&req.input.bucket, |b| b.cors = None).await? {
        return Err(super::api::no_such_bucket());
    }
    Ok(S3Response::new(DeleteBucketCorsOutput {}))
}

fn validate(rules: &[CORSRule]) -> S3Result<()> {
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(s3_error!(MalformedXML, "A CORS configuration holds 1 to {MAX_RULES} rules"));
    }
    for rule in rules {
        if let Some(m) = rule.allowed_methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            ));
        }
        if rule.allowed_methods.is_empty() || rule.allowed_origins.is_empty() {
            return Err(s3_error!(MalformedXML, "A CORS rule needs an AllowedMethod and an AllowedOrigin"));
        }
        let wildcards = |s: &String| s.matches('*').count() > 1;
        if let Some(o) = rule.allowed_origins.iter().find(|o| wildcards(o)) {
            return Err(s3_error!(InvalidRequest, "AllowedOrigin \"{o}\" can not have more than one wildcard."));
        }
        if let Some(h) = rule.allowed_headers.iter().flatten().find(|h| wildcards(h)) {
            return Err(s3_error!(InvalidRequest, "AllowedHeader \"{h}\" can not have more than one wildcard."));
        }
    }
    Ok(())
}

/// `pattern` with at most one `*` (any run of characters), ASCII case-insensitive.
fn glob(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.to_ascii_lowercase(), value.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == v,
        Some((head, tail)) => v.len() >= head.len() + tail.len() && v.starts_with(head) && v.ends_with(tail),
    }
}

/// The first rule allowing `origin` to use `method` with every header in
/// `request_headers` (a preflight's `Access-Control-Request-Headers`).
pub fn matching<'r>(
    rules: &'r [CORSRule],
    origin: &str,
    method: &str,
    request_headers: &[&str],
) -> Option<&'r CORSRule> {
    rules.iter().find(|rule| {
        rule.allowed_origins.iter().any(|o| glob(o, origin))
            && rule.allowed_methods.iter().any(|m| m.as_str() == method)
            && request_headers.iter().all(|h| rule.allowed_headers.iter().flatten().any(|a| glob(a, h)))
    })
}

/// The CORS headers a matched rule puts on a response. A rule for any
/// origin (`*`) answers `*` without credentials; otherwise the origin is
/// echoed with credentials allowed, and caches are told it varies.
pub fn response_headers(rule: &CORSRule, origin: &str, preflight: Option<&[&str]>) -> HeaderMap {
    let mut h = HeaderMap::new();
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    if any {
        set("access-control-allow-origin", "*".into());
    } else {
        set("access-control-allow-origin", origin.to_owned());
        set("access-control-allow-credentials", "true".into());
    }
    let methods: Vec<&str> = rule.allowed_methods.iter().map(String::as_str).collect();
    set("access-control-allow-methods", methods.join(", "));
    if let Some(requested) = preflight.filter(|r| !r.is_empty()) {
        set("access-control-allow-headers", requested.join(", "));
    }
    if let Some(expose) = rule.expose_headers.as_ref().filter(|e| !e.is_empty()) {
        set("access-control-expose-headers", expose.join(", "));
    }
    if let Some(age) = rule.max_age_seconds {
        set("access-control-max-age", age.to_string());
    }
    set("vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into());
    h
}

/// A preflight's requested method and headers, from its request headers.
pub fn preflight_request(headers: &HeaderMap) -> Option<(Method, Vec<String>)> {
    let method = headers.get("access-control-request-method")?.to_str().ok()?.parse().ok()?;
    let requested = headers
        .get_all("access-control-request-headers")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    Some((method, requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CORSRule {
        CORSRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: Some(headers.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn origins_methods_and_headers_must_all_match() {
        let rules = [rule(&["https://*.example.com"], &["PUT"], &["content-*"]), rule(&["*"], &["GET"], &[])];
        assert!(matching(&rules, "https://app.example.com", "PUT", &["content-type"]).is_some());
        assert!(matching(&rules, "https://app.example.com", "PUT", &["x-other"]).is_none());
        assert!(matching(&rules, "https://evil.com", "PUT", &[]).is_none());
        assert!(std::ptr::eq(matching(&rules, "https://evil.com", "GET", &[]).unwrap(), &rules[1]));
        assert!(matching(&rules, "https://evil.com", "DELETE", &[]).is_none());
    }

    #[test]
    fn wildcard_needs_room_for_both_ends() {
        assert!(glob("http://a*a", "http://aa"));
        assert!(!glob("http://ab*ba", "http://aba"));
        assert!(glob("*", "anything"));
    }

    #[test]
    fn rules_are_validated() {
        assert!(validate(&[rule(&["*"], &["GET"], &[])]).is_ok());
        assert_eq!(validate(&[rule(&["*"], &["PATCH"], &[])]).unwrap_err().code().as_str(), "InvalidRequest");
        assert_eq!(validate(&[rule(&["http://*.*"], &["GET"], &[])]).unwrap_err().code().as_str(), "InvalidRequest");
        assert!(validate(&[]).is_err());
    }

    #[test]
    fn any_origin_answers_star_without_credentials() {
        let h = response_headers(&rule(&["*"], &["GET", "PUT"], &[]), "https://x", None);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(h.get("access-control-allow-credentials").is_none());
        assert_eq!(h["access-control-allow-methods"], "GET, PUT");
        let h = response_headers(&rule(&["https://x"], &["GET"], &[]), "https://x", Some(&["content-type"]));
        assert_eq!(h["access-control-allow-origin"], "https://x");
        assert_eq!(h["access-control-allow-headers"], "content-type");
    }
}
