//! The web role's JSON errors: `{"code", "errno", "error", "message"}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::clients::{CallError, cause_chain};

/// Every way a web request can fail, each with its status and errno.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    #[error("the bearer token is not allowed to upload")]
    BadToken,
    #[error("Content-Type must be one of image/jpeg, image/png, image/gif, image/webp")]
    UnsupportedType,
    #[error("the body is not an {0} (its magic bytes do not match)")]
    MagicMismatch(&'static str),
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the body is empty")]
    EmptyBody,
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("no such avatar")]
    NotFound,
    #[error("{0} is not allowed here")]
    MethodNotAllowed(http::Method),
    /// S3 or SQS failed us. The client hears only what was being done;
    /// the chain (endpoints, connector errors) is logged.
    #[error("storage is unavailable ({0})")]
    Unavailable(#[source] CallError),
    #[error("too many uploads without a Content-Length are in progress; retry, or send Content-Length")]
    Busy,
    #[error("a body without Content-Length may be at most {0} bytes; send Content-Length")]
    LengthRequired(u64),
    /// A body held whole (no Content-Length) must not trickle: it holds a
    /// share of the memory every such upload draws on.
    #[error("a body without Content-Length must arrive at 32 KiB/s or faster; send Content-Length")]
    TooSlow,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken => StatusCode::UNAUTHORIZED,
            Self::BadToken => StatusCode::FORBIDDEN,
            Self::UnsupportedType | Self::MagicMismatch(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::EmptyBody | Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::LengthRequired(_) => StatusCode::LENGTH_REQUIRED,
            Self::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable number per error, so clients can tell cases apart without
    /// parsing messages (the Mozilla-services convention).
    pub fn errno(&self) -> u32 {
        match self {
            Self::MissingToken => 104,
            Self::BadToken => 110,
            Self::UnsupportedType => 120,
            Self::MagicMismatch(_) => 121,
            Self::TooLarge(_) => 130,
            Self::EmptyBody => 131,
            Self::BodyRead(_) => 132,
            Self::NotFound => 140,
            Self::MethodNotAllowed(_) => 141,
            Self::Unavailable(_) => 201,
            Self::Busy => 202,
            Self::LengthRequired(_) => 133,
            Self::TooSlow => 134,
            Self::Internal(_) => 999,
        }
    }
}

/// Renders `{"code", "errno", "error", "message"}` for any status.
pub fn json_error(status: StatusCode, errno: u32, message: String) -> Response {
    let body = serde_json::json!({
        "code": status.as_u16(),
        "errno": errno,
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Unavailable(_) | Self::Internal(_) => tracing::error!(error = %cause_chain(&self), "request failed"),
            // A refused upload (or delete) is worth noticing, not alarming.
            Self::MissingToken
            | Self::BadToken
            | Self::UnsupportedType
            | Self::MagicMismatch(_)
            | Self::TooLarge(_)
            | Self::LengthRequired(_) => {
                tracing::info!(status = self.status().as_u16(), errno = self.errno(), reason = %self, "refused")
            }
            _ => {}
        }
        let mut resp = json_error(self.status(), self.errno(), self.to_string());
        if matches!(self, Self::MissingToken) {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Maps an SDK error to 503 (the service could not be reached or failed).
pub fn unavailable<E: std::error::Error + Send + Sync + 'static>(what: &'static str, err: E) -> ApiError {
    ApiError::Unavailable(CallError::new(what, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's errno table is what clients code against: one row per
    /// case, each with the errno and status the code answers.
    #[test]
    fn the_readme_errno_table_matches_the_code() {
        let readme = include_str!("../../README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| errno | code | case |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let every = [
            ApiError::MissingToken,
            ApiError::BadToken,
            ApiError::UnsupportedType,
            ApiError::MagicMismatch("image/png"),
            ApiError::TooLarge(1),
            ApiError::EmptyBody,
            ApiError::BodyRead(String::new()),
            ApiError::NotFound,
            ApiError::MethodNotAllowed(http::Method::GET),
            ApiError::Unavailable(CallError::new("x", std::io::Error::other("x"))),
            ApiError::Busy,
            ApiError::LengthRequired(1),
            ApiError::TooSlow,
            ApiError::Internal(Box::new(std::io::Error::other("x"))),
        ];
        assert_eq!(table.len(), every.len(), "one row per case: {table:#?}");
        for e in &every {
            let row = format!("| {} | {} |", e.errno(), e.status().as_u16());
            assert!(table.iter().any(|l| l.starts_with(&row)), "no README row {row} for {e:?}");
        }
    }
}
