//! What the store keeps about buckets, objects, uploads and parts, and how
//! it is laid out in sled.
//!
//! Object keys are opaque bytes to the store: they only ever become sled
//! keys (`bucket NUL key`), never paths. Blob files are named by a random id.

use s3s::dto::{self, Timestamp};
use serde::{Deserialize, Serialize};

use super::error::StoreError;

/// A bucket's record (`buckets` tree, keyed by name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketMeta {
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// PutBucketTagging's tag set; `None` until one is put.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<dto::Tag>>,
    /// PutBucketCors's rules; `None` until some are put.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Vec<dto::CORSRule>>,
    /// PutBucketNotificationConfiguration's queue rules; empty: no events.
    #[serde(default, skip_serializing_if = "super::events::Notifications::is_empty")]
    pub notifications: super::events::Notifications,
}

impl BucketMeta {
    pub fn new(created_ms: i64) -> Self {
        Self { created_ms, tags: None, cors: None, notifications: Default::default() }
    }
}

/// The standard headers and user metadata stored with an object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Attrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<dto::Metadata>,
}

/// AWS's limit on user metadata: the UTF-8 bytes of its keys and values.
pub const MAX_USER_METADATA: usize = 2 * 1024;

/// Refuses user metadata over [`MAX_USER_METADATA`], as AWS does, before the
/// request's body is read: a record is meant to stay small.
pub fn check_user_metadata(metadata: Option<&dto::Metadata>) -> s3s::S3Result<()> {
    let size: usize = metadata.into_iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(s3s::s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        ));
    }
    Ok(())
}

/// The [`Attrs`] of any request that carries the standard object headers
/// (PutObject, CopyObject with `REPLACE`, CreateMultipartUpload): the
/// inputs are distinct s3s types with the same field names.
macro_rules! attrs_of {
    ($input:ident) => {
        $crate::s3compat::meta::Attrs {
            content_type: $input.content_type,
            content_encoding: $crate::s3compat::meta::stored_encoding($input.content_encoding),
            content_disposition: $input.content_disposition,
            content_language: $input.content_language,
            cache_control: $input.cache_control,
            expires: $input.expires,
            website_redirect_location: $input.website_redirect_location,
            metadata: $input.metadata,
        }
    };
}
pub(crate) use attrs_of;

/// `Content-Encoding` as stored: `aws-chunked` is how the body travelled,
/// not how the object is encoded, so `gzip, aws-chunked` is kept as `gzip`.
pub fn stored_encoding(value: Option<String>) -> Option<String> {
    let value = value?;
    let kept: Vec<&str> =
        value.split(',').map(str::trim).filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked")).collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// Full-object checksums (base64), as sent by the client and verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Checksums {
    /// The algorithms, named as in `x-amz-checksum-{name}`, in field order.
    pub const NAMES: [&'static str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

    /// Each algorithm's name with this set's value of it.
    pub fn fields(&self) -> [(&'static str, Option<&String>); 5] {
        let [a, b, c, d, e] = Self::NAMES;
        [
            (a, self.crc32.as_ref()),
            (b, self.crc32c.as_ref()),
            (c, self.crc64nvme.as_ref()),
            (d, self.sha1.as_ref()),
            (e, self.sha256.as_ref()),
        ]
    }

    /// Each algorithm's name with this set's slot for it.
    pub fn fields_mut(&mut self) -> [(&'static str, &mut Option<String>); 5] {
        let [a, b, c, d, e] = Self::NAMES;
        [
            (a, &mut self.crc32),
            (b, &mut self.crc32c),
            (c, &mut self.crc64nvme),
            (d, &mut self.sha1),
            (e, &mut self.sha256),
        ]
    }

    /// The value of one algorithm (named as in [`Self::NAMES`]).
    pub fn get(&self, name: &str) -> Option<&String> {
        self.fields().into_iter().find(|(n, _)| *n == name).and_then(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_none())
    }

    /// A set holding one algorithm's value.
    pub fn only(name: &str, value: String) -> Self {
        let mut sums = Self::default();
        if let Some((_, slot)) = sums.fields_mut().into_iter().find(|(n, _)| *n == name) {
            *slot = Some(value);
        }
        sums
    }
}

/// The `checksum_*` fields of an s3s input or output (they share the names),
/// as [`Checksums`].
macro_rules! checksums_of {
    ($x:expr) => {
        $crate::s3compat::meta::Checksums {
            crc32: $x.checksum_crc32.clone(),
            crc32c: $x.checksum_crc32c.clone(),
            crc64nvme: $x.checksum_crc64nvme.clone(),
            sha1: $x.checksum_sha1.clone(),
            sha256: $x.checksum_sha256.clone(),
        }
    };
}
pub(crate) use checksums_of;

impl From<dto::Checksum> for Checksums {
    fn from(c: dto::Checksum) -> Self {
        Self {
            crc32: c.checksum_crc32,
            crc32c: c.checksum_crc32c,
            crc64nvme: c.checksum_crc64nvme,
            sha1: c.checksum_sha1,
            sha256: c.checksum_sha256,
        }
    }
}

/// An object's record (`objects` tree, keyed by `bucket NUL key`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// Hex MD5 (or `md5-of-md5s-N` for multipart), without quotes.
    pub etag: String,
    /// Last modification, Unix milliseconds.
    pub modified_ms: i64,
    /// The blob file holding the bytes; `None` when they are stored inline
    /// in the same sled value (small objects: one durable write, no files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    #[serde(default)]
    pub attrs: Attrs,
    #[serde(default)]
    pub checksums: Checksums,
    /// Number of parts when the object was assembled by multipart upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// Each part's size and checksums, in order (GetObjectAttributes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_list: Vec<PartSummary>,
    /// The object's tag set (x-amz-tagging, PutObjectTagging).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<dto::Tag>,
    /// Whether `checksums` holds a checksum of the parts' checksums
    /// (AWS's COMPOSITE type) rather than one of the whole object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub composite: bool,
}

impl ObjectMeta {
    /// The checksums as GetObject, HeadObject and CompleteMultipartUpload
    /// show them: a COMPOSITE value ends in `-{parts}`.
    pub fn shown_checksums(&self) -> Checksums {
        let mut sums = self.checksums.clone();
        if self.composite {
            let parts = self.parts.unwrap_or(1);
            for (_, slot) in sums.fields_mut() {
                if let Some(v) = slot {
                    v.push_str(&format!("-{parts}"));
                }
            }
        }
        sums
    }

    /// `COMPOSITE` or `FULL_OBJECT` when the object carries a checksum.
    pub fn checksum_type(&self) -> Option<dto::ChecksumType> {
        (!self.checksums.is_empty()).then(|| checksum_type(!self.composite))
    }
}

/// What an assembled object remembers of one of its parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartSummary {
    pub size: u64,
    #[serde(default)]
    pub checksums: Checksums,
}

/// An in-progress multipart upload (`uploads` tree, keyed by upload id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadMeta {
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    #[serde(default)]
    pub attrs: Attrs,
    /// `x-amz-tagging` of CreateMultipartUpload, given to the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<dto::Tag>,
    /// The checksum CreateMultipartUpload asked the object to carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<UploadChecksum>,
}

/// A multipart upload's object checksum: its algorithm (named as in
/// [`Checksums::NAMES`]) and whether it covers the whole object
/// (`FULL_OBJECT`) or the parts' checksums (`COMPOSITE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChecksum {
    pub algorithm: String,
    pub full_object: bool,
}

/// AWS's name for a checksum that covers the whole object or not.
pub fn checksum_type(full_object: bool) -> dto::ChecksumType {
    dto::ChecksumType::from_static(if full_object {
        dto::ChecksumType::FULL_OBJECT
    } else {
        dto::ChecksumType::COMPOSITE
    })
}

/// One uploaded part (`parts` tree, keyed by `upload_id NUL part_number(BE)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartMeta {
    pub size: u64,
    pub etag: String,
    /// Raw MD5 of the part, for the multipart ETag.
    pub md5: String,
    pub modified_ms: i64,
    pub blob: String,
    #[serde(default)]
    pub checksums: Checksums,
}

pub fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The sled key prefix under which all of a bucket's objects sort.
pub fn bucket_prefix(bucket: &str) -> Vec<u8> {
    object_key(bucket, "")
}

pub fn part_key(upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(upload_id.len() + 5);
    k.extend_from_slice(upload_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&part_number.to_be_bytes());
    k
}

pub fn parts_prefix(upload_id: &str) -> Vec<u8> {
    let mut k = upload_id.as_bytes().to_vec();
    k.push(0);
    k
}

/// Object values are `[u32 json length][json][inline bytes]`, so a small
/// object's bytes travel in the same atomic, durable sled write as its record.
pub fn encode_object(meta: &ObjectMeta, inline: &[u8]) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(meta)?;
    let len = u32::try_from(json.len()).map_err(|_| StoreError::Corrupt("metadata too large".into()))?;
    let mut v = Vec::with_capacity(4 + json.len() + inline.len());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&json);
    v.extend_from_slice(inline);
    Ok(v)
}

/// Splits a stored object value into its record and the inline-bytes range.
pub fn decode_object(v: &[u8]) -> Result<(ObjectMeta, std::ops::Range<usize>), StoreError> {
    let corrupt = || StoreError::Corrupt("object record".into());
    let len_bytes: [u8; 4] = v.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?;
    let end = 4 + u32::from_be_bytes(len_bytes) as usize;
    let meta = serde_json::from_slice(v.get(4..end).ok_or_else(corrupt)?)?;
    Ok((meta, end..v.len()))
}

/// [`crate::durable::now_ms`] as S3's records keep it.
pub fn now_ms() -> i64 {
    i64::try_from(crate::durable::now_ms()).unwrap_or(i64::MAX)
}

pub fn timestamp(ms: i64) -> Timestamp {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_value_roundtrip_keeps_inline_bytes() {
        let meta = ObjectMeta {
            size: 3,
            etag: "abc".into(),
            modified_ms: 1,
            blob: None,
            attrs: Attrs::default(),
            checksums: Checksums::default(),
            parts: None,
            part_list: Vec::new(),
            tags: Vec::new(),
            composite: false,
        };
        let v = encode_object(&meta, b"xyz").unwrap();
        let (back, range) = decode_object(&v).unwrap();
        assert_eq!(back.etag, "abc");
        assert_eq!(&v[range], b"xyz");
        assert!(decode_object(&v[..2]).is_err());
    }

    #[test]
    fn aws_chunked_is_not_a_stored_encoding() {
        assert_eq!(stored_encoding(Some("gzip, aws-chunked".into())).as_deref(), Some("gzip"));
        assert_eq!(stored_encoding(Some("aws-chunked".into())), None);
        assert_eq!(stored_encoding(Some("br".into())).as_deref(), Some("br"));
        assert_eq!(stored_encoding(None), None);
    }

    #[test]
    fn keys_with_nul_or_dots_stay_inside_their_bucket() {
        assert!(object_key("b", "../../etc/passwd").starts_with(&bucket_prefix("b")));
        assert!(!object_key("bb", "x").starts_with(&bucket_prefix("b")));
    }
}
