//! Conditional reads (RFC 9110 §13 as S3 applies it): `If-Match` and
//! `If-Unmodified-Since` fail with 412, `If-None-Match` and
//! `If-Modified-Since` answer 304. The ETag test wins over the date test.

use http::HeaderMap;
use s3s::dto::{ETag, ETagCondition, Timestamp};
use s3s::{S3Error, S3ErrorCode};

/// The four conditional headers of a GET/HEAD (or their copy-source forms).
pub struct ReadConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// The [`ReadConditions`] of a GetObject / HeadObject input.
macro_rules! read_conditions {
    ($input:ident) => {
        $crate::s3compat::conditions::ReadConditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}
pub(crate) use read_conditions;

/// The copy-source [`ReadConditions`] of a CopyObject / UploadPartCopy input.
macro_rules! copy_source_conditions {
    ($input:ident) => {
        $crate::s3compat::conditions::ReadConditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
    };
}
pub(crate) use copy_source_conditions;

pub enum Outcome {
    Proceed,
    PreconditionFailed,
    NotModified,
}

impl ReadConditions<'_> {
    /// `modified` is the object's Last-Modified, compared at the one-second
    /// precision HTTP dates have.
    pub fn evaluate(&self, etag: &str, modified: &Timestamp) -> Outcome {
        let modified_s = seconds(modified);
        let etag_matches = |c: &ETagCondition| match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => listed(e.value()).any(|e| e == etag),
        };
        if let Some(c) = self.if_match {
            if !etag_matches(c) {
                return Outcome::PreconditionFailed;
            }
        } else if let Some(t) = self.if_unmodified_since
            && modified_s > seconds(t)
        {
            return Outcome::PreconditionFailed;
        }
        if let Some(c) = self.if_none_match {
            if etag_matches(c) {
                return Outcome::NotModified;
            }
        } else if let Some(t) = self.if_modified_since
            && modified_s <= seconds(t)
        {
            return Outcome::NotModified;
        }
        Outcome::Proceed
    }

    /// The S3 error for a failed read condition (`None` to proceed). A 304
    /// carries the validators, as a cache needs them.
    pub fn check(&self, etag: &str, modified: &Timestamp) -> Option<S3Error> {
        match self.evaluate(etag, modified) {
            Outcome::Proceed => None,
            Outcome::PreconditionFailed => Some(S3Error::with_message(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )),
            Outcome::NotModified => {
                let mut e = S3Error::new(S3ErrorCode::NotModified);
                let mut headers = HeaderMap::new();
                if let Ok(v) = ETag::Strong(etag.to_owned()).to_http_header() {
                    headers.insert(http::header::ETAG, v);
                }
                e.set_headers(headers);
                Some(e)
            }
        }
    }
}

/// The ETags of a condition that lists several (`"a", W/"b"`): s3s parses
/// the whole list as one quoted value, `a", W/"b`. An ETag never holds a
/// comma, so splitting on commas is exact. (A weak tag compares by its
/// value: S3's ETags are all strong.)
fn listed(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(|e| e.trim().trim_start_matches("W/").trim_matches('"'))
}

fn seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from(time::OffsetDateTime::from_unix_timestamp(secs).unwrap())
    }

    fn cond(etag: &str) -> ETagCondition {
        ETagCondition::ETag(ETag::Strong(etag.into()))
    }

    #[test]
    fn a_listed_etag_matches() {
        let none =
            ReadConditions { if_match: None, if_none_match: None, if_modified_since: None, if_unmodified_since: None };
        let parsed = |h: &str| ETagCondition::parse_http_header(h.as_bytes()).unwrap();
        let list = parsed(r#""zzz", "abc""#);
        let c = ReadConditions { if_none_match: Some(&list), ..none };
        assert!(matches!(c.evaluate("abc", &ts(100)), Outcome::NotModified));
        assert!(matches!(c.evaluate("zz", &ts(100)), Outcome::Proceed));
        let weak = parsed(r#"W/"x", W/"abc""#);
        let c = ReadConditions { if_match: Some(&weak), ..none };
        assert!(matches!(c.evaluate("abc", &ts(100)), Outcome::Proceed));
        assert!(matches!(c.evaluate("x,", &ts(100)), Outcome::PreconditionFailed));
    }

    #[test]
    fn etag_and_date_rules() {
        let none =
            ReadConditions { if_match: None, if_none_match: None, if_modified_since: None, if_unmodified_since: None };
        assert!(matches!(none.evaluate("a", &ts(100)), Outcome::Proceed));

        let m = cond("b");
        let c = ReadConditions { if_match: Some(&m), ..none };
        assert!(matches!(c.evaluate("a", &ts(100)), Outcome::PreconditionFailed));

        let n = cond("a");
        let c = ReadConditions {
            if_match: None,
            if_none_match: Some(&n),
            if_modified_since: None,
            if_unmodified_since: None,
        };
        assert!(matches!(c.evaluate("a", &ts(100)), Outcome::NotModified));

        let since = ts(100);
        let c = ReadConditions {
            if_match: None,
            if_none_match: None,
            if_modified_since: Some(&since),
            if_unmodified_since: None,
        };
        assert!(matches!(c.evaluate("a", &ts(100)), Outcome::NotModified));
        assert!(matches!(c.evaluate("a", &ts(101)), Outcome::Proceed));

        let c = ReadConditions {
            if_match: None,
            if_none_match: None,
            if_modified_since: None,
            if_unmodified_since: Some(&since),
        };
        assert!(matches!(c.evaluate("a", &ts(101)), Outcome::PreconditionFailed));

        // If-Match that holds overrides a failing If-Unmodified-Since.
        let m = cond("a");
        let c = ReadConditions {
            if_match: Some(&m),
            if_none_match: None,
            if_modified_since: None,
            if_unmodified_since: Some(&since),
        };
        assert!(matches!(c.evaluate("a", &ts(101)), Outcome::Proceed));
    }
}
