//! The JSON protocol (`X-Amz-Target: AmazonSQS.<Action>`,
//! `application/x-amz-json-1.0`), which aws-sdk-rust and current botocore
//! speak. Errors carry `__type` and the `x-amzn-query-error` header, from
//! which the SDKs build their typed errors.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use super::error::{Code, SqsError};
use super::params::Input;

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// The action and its input.
pub fn parse(parts: &Parts, body: &[u8]) -> Result<(String, Input), SqsError> {
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let action = target
        .strip_prefix("AmazonSQS.")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SqsError::new(Code::UnknownOperation, format!("Unknown operation {target}")))?;
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| SqsError::new(Code::Serialization, format!("Cannot parse the request body as JSON: {e}")))?
    };
    Ok((action.to_owned(), Input::from_value(value)?))
}

/// Renders an action's result.
pub fn respond(result: Result<Value, SqsError>, request_id: &str) -> Response<s3s::Body> {
    let (status, body, query_error) = match result {
        Ok(v) => (StatusCode::OK, v, None),
        Err(e) => {
            let body = json!({
                "__type": format!("com.amazonaws.sqs#{}", e.code.shape()),
                "message": e.message,
            });
            (e.code.status(), body, Some(format!("{};{}", e.code.query_code(), e.code.fault())))
        }
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::new(s3s::Body::from(Bytes::from(bytes)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(q) = query_error.and_then(|q| HeaderValue::from_str(&q).ok()) {
        h.insert("x-amzn-query-error", q);
    }
    resp
}
