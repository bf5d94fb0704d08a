//! Integrity checks on uploaded bytes: `Content-MD5` and `x-amz-checksum-*`
//! (sent as headers or as aws-chunked trailers). Pure functions over what
//! the client claimed and what [`super::ingest`] computed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::dto::{self, ChecksumAlgorithm, ChecksumType};
use s3s::{S3Error, S3Result, TrailingHeaders, s3_error};

use super::meta::{Checksums, UploadChecksum};

/// Every algorithm the client named (lowercase): in a header value, as the
/// declared algorithm, or as a promised trailer (`x-amz-trailer`).
pub fn named(claimed: &Checksums, algorithm: Option<&ChecksumAlgorithm>, headers: &HeaderMap) -> Vec<String> {
    let mut named: Vec<String> =
        claimed.fields().iter().filter(|(_, v)| v.is_some()).map(|(n, _)| (*n).to_owned()).collect();
    if let Some(a) = algorithm {
        named.push(a.as_str().to_ascii_lowercase());
    }
    for t in headers.get_all("x-amz-trailer") {
        if let Ok(t) = t.to_str() {
            for name in t.split(',') {
                if let Some(alg) = name.trim().to_ascii_lowercase().strip_prefix("x-amz-checksum-") {
                    named.push(alg.to_owned());
                }
            }
        }
    }
    named
}

/// A hasher for every algorithm the client named (see [`named`]).
pub fn hasher_for(claimed: &Checksums, algorithm: Option<&ChecksumAlgorithm>, headers: &HeaderMap) -> ChecksumHasher {
    let wanted = named(claimed, algorithm, headers);
    let want = |name: &str| wanted.iter().any(|w| w == name);
    ChecksumHasher {
        crc32: want("crc32").then(Default::default),
        crc32c: want("crc32c").then(Default::default),
        crc64nvme: want("crc64nvme").then(Default::default),
        sha1: want("sha1").then(Default::default),
        sha256: want("sha256").then(Default::default),
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
    for (alg, slot) in claimed.fields_mut() {
        if let Some(v) = map.get(format!("x-amz-checksum-{alg}")).and_then(|v| v.to_str().ok()) {
            *slot = Some(v.to_owned());
        }
    }
    Ok(())
}

/// Every claimed checksum must equal the computed one (`BadDigest`).
/// Returns the verified set, which is stored with the object.
pub fn verify(claimed: &Checksums, computed: dto::Checksum) -> S3Result<Checksums> {
    let computed = Checksums::from(computed);
    for ((name, want), (_, got)) in claimed.fields().into_iter().zip(computed.fields()) {
        if want.is_some_and(|want| Some(want) != got) {
            return Err(mismatch(name));
        }
    }
    Ok(computed)
}

/// The object checksum a CreateMultipartUpload asks for, refused as AWS
/// refuses it: a type needs an algorithm, CRC64NVME is only ever
/// FULL_OBJECT, SHA-1 and SHA-256 only COMPOSITE. Without a type the CRCs
/// are COMPOSITE and CRC64NVME FULL_OBJECT.
pub fn upload_checksum(
    algorithm: Option<&ChecksumAlgorithm>,
    kind: Option<&ChecksumType>,
) -> S3Result<Option<UploadChecksum>> {
    let Some(algorithm) = algorithm else {
        return match kind {
            None => Ok(None),
            Some(_) => Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            )),
        };
    };
    let name = algorithm.as_str().to_ascii_lowercase();
    if !Checksums::NAMES.contains(&name.as_str()) {
        return Err(s3_error!(
            InvalidRequest,
            "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, \
             CRC64NVME, SHA1, SHA256]"
        ));
    }
    let full_object = match kind.map(ChecksumType::as_str) {
        None => name == "crc64nvme",
        Some(ChecksumType::FULL_OBJECT) => true,
        Some(ChecksumType::COMPOSITE) => false,
        Some(_) => return Err(s3_error!(InvalidRequest, "Value for x-amz-checksum-type header is invalid.")),
    };
    if full_object && crc_of(&name).is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {name} checksum algorithm."
        ));
    }
    if !full_object && name == "crc64nvme" {
        return Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
        ));
    }
    Ok(Some(UploadChecksum { algorithm: name, full_object }))
}

/// The checksum of an object assembled from `parts` (each part's size and
/// stored checksums), without the `-N` that COMPOSITE values carry on the
/// wire: FULL_OBJECT is the CRC of the whole object, combined from the
/// parts' CRCs without reading a byte again; COMPOSITE is the algorithm
/// over the parts' digests, concatenated. `None` when a part was stored
/// without the algorithm (an upload begun before parts kept it).
pub fn object_checksum(how: &UploadChecksum, parts: &[(u64, &Checksums)]) -> Option<String> {
    let digests = parts
        .iter()
        .map(|(size, sums)| Some((*size, BASE64.decode(sums.get(&how.algorithm)?).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    if how.full_object {
        let (crc, width) = crc_of(&how.algorithm)?;
        let mut whole: Option<u64> = None;
        for (size, digest) in digests {
            let mut be = [0u8; 8];
            be.get_mut(8 - width..)?.copy_from_slice(digest.get(..width).filter(|_| digest.len() == width)?);
            let part = u64::from_be_bytes(be);
            whole = Some(whole.map_or(part, |w| crc_fast::checksum_combine(crc, w, part, size)));
        }
        Some(BASE64.encode(&whole?.to_be_bytes()[8 - width..]))
    } else {
        let algorithm = ChecksumAlgorithm::from(how.algorithm.to_ascii_uppercase());
        let mut hasher = hasher_for(&Checksums::default(), Some(&algorithm), &HeaderMap::new());
        for (_, digest) in digests {
            hasher.update(&digest);
        }
        Checksums::from(hasher.finalize()).get(&how.algorithm).cloned()
    }
}

/// A CRC algorithm as `crc-fast` names it, with its width in bytes.
fn crc_of(algorithm: &str) -> Option<(crc_fast::CrcAlgorithm, usize)> {
    match algorithm {
        "crc32" => Some((crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4)),
        "crc32c" => Some((crc_fast::CrcAlgorithm::Crc32Iscsi, 4)),
        "crc64nvme" => Some((crc_fast::CrcAlgorithm::Crc64Nvme, 8)),
        _ => None,
    }
}

/// A CompleteMultipartUpload's own claims on the object checksum: its type
/// (`BadDigest` if not the upload's), and a value of the upload's algorithm,
/// which must be the one computed (`BadDigest`; a COMPOSITE value may come
/// with or without its `-N`).
pub fn verify_object_claim(
    how: &UploadChecksum,
    kind: Option<&ChecksumType>,
    claimed: &Checksums,
    computed: Option<&str>,
) -> S3Result<()> {
    if let Some(kind) = kind {
        let expected = super::meta::checksum_type(how.full_object);
        if *kind != expected {
            return Err(bad_digest(&format!(
                "The upload was created using the {} checksum mode. The complete request must use the same \
                 checksum mode.",
                expected.as_str()
            )));
        }
    }
    if let (Some(claim), Some(computed)) = (claimed.get(&how.algorithm), computed) {
        let bare = if how.full_object { claim.as_str() } else { claim.split('-').next().unwrap_or_default() };
        if bare != computed {
            return Err(mismatch(&how.algorithm));
        }
    }
    Ok(())
}

/// `Content-MD5` must be base64 of 16 bytes (`InvalidDigest`) and match (`BadDigest`).
pub fn verify_content_md5(content_md5: Option<&str>, md5: &[u8; 16]) -> S3Result<()> {
    let Some(claimed) = content_md5 else { return Ok(()) };
    let decoded = BASE64
        .decode(claimed.trim())
        .ok()
        .filter(|d| d.len() == 16)
        .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?;
    if decoded != md5 {
        return Err(bad_digest("The Content-MD5 you specified did not match what we received."));
    }
    Ok(())
}

fn mismatch(algorithm: &str) -> S3Error {
    let name = algorithm.to_ascii_uppercase();
    bad_digest(&format!("The {name} you specified did not match the calculated checksum."))
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
