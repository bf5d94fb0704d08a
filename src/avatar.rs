//! Where an upload's pieces live, shared by the web role and the worker.
//!
//! The status of an upload is derived from S3 alone, so web tiers stay
//! stateless: the original in the private bucket means *pending*, a failure
//! record beside it means *failed*, the default variant in the public bucket
//! means *ready* (the worker writes it last).
//!
//! A DELETE first writes a *tombstone* (`deleted/{id}`, empty, in the
//! private bucket), then removes the pieces. The tombstone outranks
//! everything else: status reads 404, `/a/` serves nothing, and a worker
//! that was crunching the id when it was deleted finds it after its PUTs
//! and takes its variants down again. So once a DELETE has answered, no
//! variant of the id is served again, whatever order the worker's writes
//! land in. Tombstones are kept (an empty object per deleted upload).

use std::fmt;

use aws_sdk_s3::operation::head_object::HeadObjectError;

use crate::clients::CallError;
use crate::crunch::VariantName;

/// Variants never change under a key, so caches may keep them forever.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// The `Content-Type` of a WebP twin.
pub const WEBP_TYPE: &str = "image/webp";

/// A validated upload id: 128 random bits as 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AvatarId(String);

impl AvatarId {
    /// A fresh id from the OS's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let (hi, lo) = (getrandom::u64()?, getrandom::u64()?);
        Ok(Self(format!("{hi:016x}{lo:016x}")))
    }

    /// Accepts exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id a crunch-queue message names: the bare id (`pipeline.trigger
    /// = message`) or an S3 `ObjectCreated` record of its original (`s3-event`).
    /// Anything else (an `s3:TestEvent`, a removal, a foreign key) names none.
    pub fn from_message(body: &str) -> Option<Self> {
        if let Some(id) = Self::parse(body) {
            return Some(id);
        }
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let [record] = v.get("Records")?.as_array()?.as_slice() else { return None };
        if !record.get("eventName")?.as_str()?.starts_with("ObjectCreated:") {
            return None;
        }
        let key = record.get("s3")?.get("object")?.get("key")?.as_str()?;
        // Keys arrive form-encoded: AWS keeps `/`, moto encodes it too.
        let key: String = form_urlencoded::parse(format!("k={key}").as_bytes()).next()?.1.into_owned();
        Self::parse(key.strip_prefix("originals/")?)
    }

    /// Key of the untrusted original in the private bucket (the `s3-event`
    /// notification filters on its prefix).
    pub fn original_key(&self) -> String {
        format!("originals/{}", self.0)
    }

    /// Key of the failure record (JSON) in the private bucket.
    pub fn failure_key(&self) -> String {
        format!("failed/{}", self.0)
    }

    /// Key of the tombstone a DELETE leaves in the private bucket.
    pub fn tombstone_key(&self) -> String {
        format!("deleted/{}", self.0)
    }

    /// Key of a variant in the public bucket; also its path under `/a/`.
    pub fn variant_key(&self, variant: VariantName) -> String {
        format!("{}{}", self.0, variant.suffix())
    }

    /// Key of a variant's WebP twin in the public bucket (`{id}_small.webp`).
    /// No `/a/` path names it: the variant's URL serves it to clients that
    /// accept WebP, so one URL stays one image.
    pub fn twin_key(&self, variant: VariantName) -> String {
        format!("{}{}.webp", self.0, variant.suffix())
    }
}

impl fmt::Display for AvatarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits a `/a/` path segment (`{id}`, `{id}_small`, `{id}_large`).
pub fn parse_variant_path(segment: &str) -> Option<(AvatarId, VariantName)> {
    VariantName::ALL.iter().rev().find_map(|&v| {
        let id = segment.strip_suffix(v.suffix())?;
        // The default variant has an empty suffix: demand an exact id.
        Some((AvatarId::parse(id)?, v))
    })
}

/// Whether `bucket/key` exists (HEAD: 404 is `false`, any other failure an error).
pub async fn exists(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<bool, CallError> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) => Ok(false),
        Err(e) => Err(CallError::new("looking up the upload", e)),
    }
}

/// Whether upload `id` was deleted (its tombstone is in `private_bucket`).
pub async fn is_deleted(s3: &aws_sdk_s3::Client, private_bucket: &str, id: &AvatarId) -> Result<bool, CallError> {
    exists(s3, private_bucket, &id.tombstone_key()).await
}

/// Removes every variant of `id` and its WebP twin from `public_bucket`
/// (deleting a missing key succeeds, so this can be repeated).
pub async fn delete_variants(s3: &aws_sdk_s3::Client, public_bucket: &str, id: &AvatarId) -> Result<(), CallError> {
    let keys = VariantName::ALL.iter().flat_map(|&v| [id.variant_key(v), id.twin_key(v)]);
    let deletes = keys.map(|key| s3.delete_object().bucket(public_bucket).key(key).send());
    futures_util::future::try_join_all(deletes).await.map_err(CallError::on("deleting the variants"))?;
    Ok(())
}

/// The failure record the worker writes for a permanent failure.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FailureRecord {
    /// Short machine code (`too_many_pixels`, `dead_lettered`, …).
    pub reason: String,
    /// Human text.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex() {
        let id = AvatarId::generate().unwrap();
        assert!(AvatarId::parse(id.as_str()).is_some());
        assert!(AvatarId::parse("../../etc/passwd").is_none());
        assert!(AvatarId::parse(&"A".repeat(32)).is_none());
        assert_ne!(id, AvatarId::generate().unwrap());
    }

    #[test]
    fn ids_from_messages_of_either_trigger() {
        let id = "0123456789abcdef0123456789abcdef";
        let record = |name: &str, key: &str| {
            serde_json::json!({ "Records": [{ "eventName": name, "s3": { "object": { "key": key } } }] }).to_string()
        };
        assert_eq!(AvatarId::from_message(id).map(|i| i.0), Some(id.to_owned()));
        let aws = record("ObjectCreated:Put", &format!("originals/{id}"));
        assert_eq!(AvatarId::from_message(&aws).map(|i| i.0), Some(id.to_owned()));
        // moto encodes the slash too.
        let moto = record("ObjectCreated:Put", &format!("originals%2F{id}"));
        assert_eq!(AvatarId::from_message(&moto).map(|i| i.0), Some(id.to_owned()));
        assert!(AvatarId::from_message(&record("ObjectRemoved:Delete", &format!("originals/{id}"))).is_none());
        assert!(AvatarId::from_message(&record("ObjectCreated:Put", &format!("deleted/{id}"))).is_none());
        assert!(AvatarId::from_message(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#).is_none());
    }

    #[test]
    fn variant_paths() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_variant_path(id).map(|(_, v)| v), Some(VariantName::Default));
        assert_eq!(parse_variant_path(&format!("{id}_small")).map(|(_, v)| v), Some(VariantName::Small));
        assert_eq!(parse_variant_path(&format!("{id}_large")).map(|(_, v)| v), Some(VariantName::Large));
        assert!(parse_variant_path(&format!("{id}_huge")).is_none());
        // A twin's key is no variant path: it has no URL of its own.
        let twin = AvatarId::parse(id).unwrap().twin_key(VariantName::Small);
        assert_eq!(twin, format!("{id}_small.webp"));
        assert!(parse_variant_path(&twin).is_none());
        assert!(parse_variant_path("short_small").is_none());
    }
}
