//! Bearer-token check for the write routes.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::error::ApiError;

/// 401 without a bearer token, 403 for one not in `tokens`.
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
    // Compare digests, not the tokens: equal-length values whatever was
    // sent, so neither a token's bytes nor its length can be probed by
    // timing; every token is compared, so neither is its position.
    let offered = Sha256::digest(token.as_bytes());
    let matched = tokens.iter().fold(Choice::from(0), |acc, t| acc | Sha256::digest(t.as_bytes()).ct_eq(&offered));
    if bool::from(matched) { Ok(()) } else { Err(ApiError::BadToken) }
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
        assert!(matches!(check_bearer(&with_auth("Bearer dev-toke"), &tokens), Err(ApiError::BadToken)));
        assert!(matches!(check_bearer(&with_auth("Bearer dev-tokenn"), &tokens), Err(ApiError::BadToken)));
        let two = vec!["a-token".to_owned(), "second-token".to_owned()];
        assert!(check_bearer(&with_auth("Bearer second-token"), &two).is_ok());
    }
}
