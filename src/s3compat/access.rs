//! Who may do what: every signed request (s3s has already verified the
//! signature against the configured key pairs) may do anything; an
//! anonymous one may only read objects of the public bucket.

use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

pub struct PublicReads {
    pub public_bucket: String,
}

impl PublicReads {
    fn allows_anonymous(&self, op: &str, path: &S3Path) -> bool {
        matches!(op, "GetObject" | "HeadObject")
            && matches!(path, S3Path::Object { bucket, .. } if **bucket == *self.public_bucket)
    }
}

#[async_trait::async_trait]
impl S3Access for PublicReads {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        refuse_oversized_xml(cx)?;
        refuse_version_ids(cx)?;
        if cx.credentials().is_some() {
            return Ok(());
        }
        if !self.allows_anonymous(cx.s3_op().name(), cx.s3_path()) {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        // An anonymous link must not restyle the bytes it serves (as
        // `text/html`, say): only a signer may ask for other headers.
        let query = cx.uri().query().unwrap_or_default();
        if form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k.starts_with("response-")) {
            return Err(s3_error!(
                InvalidRequest,
                "Request specific response headers cannot be used for anonymous GET requests."
            ));
        }
        Ok(())
    }
}

/// s3s buffers the XML body of non-streaming operations (DeleteObjects,
/// CompleteMultipartUpload, ...) up to `xml_max_body_size` but reports an
/// overflow as `InternalError`. This hook runs before that read, so a
/// declared oversized body is refused here with AWS's own code, and one
/// whose size only its end would tell (chunked, no length) with AWS's
/// `MissingContentLength`, as these operations require a length.
fn refuse_oversized_xml(cx: &S3AccessContext<'_>) -> S3Result<()> {
    const STREAMING: [&str; 3] = ["PutObject", "UploadPart", "PostObject"];
    if STREAMING.contains(&cx.s3_op().name()) {
        return Ok(());
    }
    let headers = cx.headers();
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > super::XML_MAX_BODY as u64 => {
            Err(s3_error!(MaxMessageLengthExceeded, "Your request was too big."))
        }
        None if headers.contains_key(http::header::TRANSFER_ENCODING) => {
            Err(s3_error!(MissingContentLength, "You must provide the Content-Length HTTP header."))
        }
        _ => Ok(()),
    }
}

/// Buckets here are never versioned, so the only version an object has is
/// `null` (what ListObjectVersions shows). Any other `versionId`, in the
/// query or a copy source, is AWS's `InvalidArgument`, not a quiet read of
/// the current object.
fn refuse_version_ids(cx: &S3AccessContext<'_>) -> S3Result<()> {
    let query = cx.uri().query().unwrap_or_default();
    let copy_source = cx.headers().get("x-amz-copy-source").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (_, source_query) = copy_source.split_once('?').unwrap_or_default();
    fn version_ids(query: &str) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == "versionId").map(|(_, v)| v)
    }
    if version_ids(query).chain(version_ids(source_query)).any(|v| v != "null") {
        return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
    }
    Ok(())
}

/// The configured key pairs. Unlike s3s's `SimpleAuth` (which answers
/// `NotSignedUp`), an unknown key gets AWS's `InvalidAccessKeyId`.
pub struct KeyPairs(pub crate::endpoint::sigv4::Keys);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for KeyPairs {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        match self.0.secret(access_key) {
            Ok(secret) => Ok(secret.to_owned().into()),
            Err(_) => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_reads_of_the_public_bucket() {
        let gate = PublicReads { public_bucket: "pub".into() };
        let obj = |b: &str| S3Path::Object { bucket: b.into(), key: "k".into() };
        assert!(gate.allows_anonymous("GetObject", &obj("pub")));
        assert!(gate.allows_anonymous("HeadObject", &obj("pub")));
        assert!(!gate.allows_anonymous("GetObject", &obj("private")));
        assert!(!gate.allows_anonymous("PutObject", &obj("pub")));
        assert!(!gate.allows_anonymous("ListObjects", &S3Path::Bucket { bucket: "pub".into() }));
    }
}
