//! Integrity checks on uploaded bytes: `Content-MD5` and `x-amz-checksum-*`
//! (sent as headers or as aws-chunked trailers). Pure functions over what
//! the client claimed and what [`super::ingest`] computed.

use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::dto::{self, ChecksumAlgorithm};
use s3s::{S3Error, S3Result, TrailingHeaders, s3_error};

use super::meta::Checksums;

const ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// A hasher for every algorithm the client named: in a header value, as the
/// declared algorithm, or as a promised trailer (`x-amz-trailer`).
pub fn hasher_for(claimed: &Checksums, algorithm: Option<&ChecksumAlgorithm>, headers: &HeaderMap) -> ChecksumHasher {
    let mut wanted: Vec<String> = Vec::new();
    if let Some(a) = algorithm {
        wanted.push(a.as_str().to_ascii_lowercase());
    }
    for t in headers.get_all("x-amz-trailer") {
        if let Ok(t) = t.to_str() {
            for name in t.split(',') {
                if let Some(alg) = name.trim().to_ascii_lowercase().strip_prefix("x-amz-checksum-") {
                    wanted.push(alg.to_owned());
                }
            }
        }
    }
    let want = |name: &str, value: &Option<String>| value.is_some() || wanted.iter().any(|w| w == name);
    ChecksumHasher {
        crc32: want("crc32", &claimed.crc32).then(Default::default),
        crc32c: want("crc32c", &claimed.crc32c).then(Default::default),
        crc64nvme: want("crc64nvme", &claimed.crc64nvme).then(Default::default),
        sha1: want("sha1", &claimed.sha1).then(Default::default),
        sha256: want("sha256", &claimed.sha256).then(Default::default),
    }
}

/// Adds checksums that arrived as trailers (after the body was read). Every
/// checksum the (signed) `x-amz-trailer` header announced must have come:
/// with `STREAMING-UNSIGNED-PAYLOAD-TRAILER` that trailer is all that binds
/// the body, so a request cut off before it must not be stored.
pub fn merge_trailers(
    claimed: &mut Checksums,
    headers: &HeaderMap,
    trailers: Option<&TrailingHeaders>,
) -> S3Result<()> {
    let map = trailers.and_then(TrailingHeaders::take).unwrap_or_default();
    let announced = headers.get_all("x-amz-trailer").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    for name in announced.map(|n| n.trim().to_ascii_lowercase()) {
        if name.starts_with("x-amz-checksum-") && !map.contains_key(name.as_str()) {
            return Err(s3_error!(IncompleteBody, "The trailer {name} that x-amz-trailer announced did not arrive."));
        }
    }
    for alg in ALGORITHMS {
        let Some(v) = map.get(format!("x-amz-checksum-{alg}")).and_then(|v| v.to_str().ok()) else { continue };
        let slot = match alg {
            "crc32" => &mut claimed.crc32,
            "crc32c" => &mut claimed.crc32c,
            "crc64nvme" => &mut claimed.crc64nvme,
            "sha1" => &mut claimed.sha1,
            _ => &mut claimed.sha256,
        };
        *slot = Some(v.to_owned());
    }
    Ok(())
}

/// Every claimed checksum must equal the computed one (`BadDigest`).
/// Returns the verified set, which is stored with the object.
pub fn verify(claimed: &Checksums, computed: dto::Checksum) -> S3Result<Checksums> {
    let computed = Checksums::from(computed);
    let pairs = [
        ("CRC32", &claimed.crc32, &computed.crc32),
        ("CRC32C", &claimed.crc32c, &computed.crc32c),
        ("CRC64NVME", &claimed.crc64nvme, &computed.crc64nvme),
        ("SHA1", &claimed.sha1, &computed.sha1),
        ("SHA256", &claimed.sha256, &computed.sha256),
    ];
    for (name, want, got) in pairs {
        if let Some(want) = want
            && Some(want) != got.as_ref()
        {
            return Err(bad_digest(&format!("The {name} you specified did not match the calculated checksum.")));
        }
    }
    Ok(computed)
}

/// `Content-MD5` must be base64 of 16 bytes (`InvalidDigest`) and match (`BadDigest`).
pub fn verify_content_md5(content_md5: Option<&str>, md5: &[u8; 16]) -> S3Result<()> {
    let Some(claimed) = content_md5 else { return Ok(()) };
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(claimed.trim())
        .ok()
        .filter(|d| d.len() == 16)
        .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?;
    if decoded != md5 {
        return Err(bad_digest("The Content-MD5 you specified did not match what we received."));
    }
    Ok(())
}

fn bad_digest(msg: &str) -> S3Error {
    S3Error::with_message(s3s::S3ErrorCode::BadDigest, msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;

    #[test]
    fn content_md5_checks() {
        let md5: [u8; 16] = md5::Md5::digest(b"hello").into();
        assert!(verify_content_md5(Some("XUFAKrxLKna5cZ2REBfFkg=="), &md5).is_ok());
        let bad = verify_content_md5(Some("AAAAAAAAAAAAAAAAAAAAAA=="), &md5).unwrap_err();
        assert_eq!(bad.code().as_str(), "BadDigest");
        let invalid = verify_content_md5(Some("not base64!"), &md5).unwrap_err();
        assert_eq!(invalid.code().as_str(), "InvalidDigest");
    }

    #[test]
    fn claimed_checksum_must_match() {
        let claimed = Checksums { crc32: Some("AAAAAA==".into()), ..Default::default() };
        let mut hasher = hasher_for(&claimed, None, &HeaderMap::new());
        hasher.update(b"hello");
        assert!(verify(&claimed, hasher.finalize()).is_err());
        let mut hasher = hasher_for(&Checksums::default(), None, &HeaderMap::new());
        hasher.update(b"hello");
        assert!(verify(&Checksums::default(), hasher.finalize()).is_ok());
    }
}
