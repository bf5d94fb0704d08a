//! Bearer-token check for the write routes.

use http::HeaderMap;

use super::error::ApiError;

/// 401 without a bearer token, 403 for one not in `tokens`. Tokens are
/// compared in constant time so their bytes cannot be probed by timing.
pub fn check_bearer(headers: &HeaderMap, tokens: &[String]) -> Result<(), ApiError> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or(ApiError::MissingToken)?;
    let value = value.to_str().map_err(|_| ApiError::MissingToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::MissingToken);
    }
    if tokens.iter().any(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::BadToken)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn bearer_rules() {
        let tokens = vec!["dev-token".to_owned()];
        assert!(matches!(check_bearer(&HeaderMap::new(), &tokens), Err(ApiError::MissingToken)));
        assert!(matches!(check_bearer(&with_auth("Basic abc"), &tokens), Err(ApiError::MissingToken)));
        assert!(matches!(check_bearer(&with_auth("Bearer "), &tokens), Err(ApiError::MissingToken)));
        assert!(matches!(check_bearer(&with_auth("Bearer nope"), &tokens), Err(ApiError::BadToken)));
        assert!(check_bearer(&with_auth("Bearer dev-token"), &tokens).is_ok());
        assert!(check_bearer(&with_auth("bearer dev-token"), &tokens).is_ok());
    }
}
