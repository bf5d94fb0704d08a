//! Object and bucket tagging: Put/Get/DeleteObjectTagging, the
//! `x-amz-tagging` header of PutObject / CopyObject / CreateMultipartUpload,
//! and Put/Get/DeleteBucketTagging. Tags live in the object's or bucket's
//! own record, so they change atomically with it and are as durable.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;

/// AWS's limits: 10 tags on an object, 50 on a bucket; keys of 1–128 and
/// values of up to 256 Unicode characters.
const MAX_OBJECT_TAGS: usize = 10;
const MAX_BUCKET_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// The tags of an `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded).
pub fn from_header(header: Option<&str>) -> S3Result<Vec<Tag>> {
    let Some(header) = header.filter(|h| !h.is_empty()) else { return Ok(Vec::new()) };
    let tags: Vec<Tag> = form_urlencoded::parse(header.as_bytes())
        .map(|(k, v)| Tag { key: Some(k.into_owned()), value: Some(v.into_owned()) })
        .collect();
    validate(&tags, MAX_OBJECT_TAGS)?;
    Ok(tags)
}

fn validate(tags: &[Tag], max: usize) -> S3Result<()> {
    if tags.len() > max {
        return Err(s3_error!(InvalidTag, "Object tags cannot be greater than {max}"));
    }
    let mut seen = std::collections::HashSet::new();
    for tag in tags {
        let key = tag.key.as_deref().unwrap_or("");
        let value = tag.value.as_deref().unwrap_or("");
        let key_len = key.chars().count();
        if key_len == 0 || key_len > MAX_KEY_CHARS {
            return Err(s3_error!(InvalidTag, "The TagKey you have provided is invalid"));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(s3_error!(InvalidTag, "The TagValue you have provided is invalid"));
        }
        if !seen.insert(key) {
            return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

fn no_such_key() -> s3s::S3Error {
    s3_error!(NoSuchKey, "The specified key does not exist.")
}

pub async fn put_object(
    api: &S3Api,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    let tags = input.tagging.tag_set;
    validate(&tags, MAX_OBJECT_TAGS)?;
    api.require_bucket(&input.bucket)?;
    match api.store.update_object(&input.bucket, &input.key, |m| m.tags.clone_from(&tags)).await? {
        Some(_) => Ok(S3Response::new(PutObjectTaggingOutput { version_id: None })),
        None => Err(no_such_key()),
    }
}

pub async fn get_object(
    api: &S3Api,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    let (record, _) = api.load_object(&input.bucket, &input.key)?;
    Ok(S3Response::new(GetObjectTaggingOutput { tag_set: record.tags, version_id: None }))
}

pub async fn delete_object(
    api: &S3Api,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    match api.store.update_object(&input.bucket, &input.key, |m| m.tags.clear()).await? {
        Some(_) => Ok(S3Response::new(DeleteObjectTaggingOutput { version_id: None })),
        None => Err(no_such_key()),
    }
}

pub async fn put_bucket(
    api: &S3Api,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let input = req.input;
    let tags = input.tagging.tag_set;
    validate(&tags, MAX_BUCKET_TAGS)?;
    if !api.store.update_bucket(&input.bucket, |b| b.tags = Some(tags.clone())).await? {
        return Err(super::api::no_such_bucket());
    }
    Ok(S3Response::new(PutBucketTaggingOutput {}))
}

pub async fn get_bucket(
    api: &S3Api,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let bucket = api.bucket(&req.input.bucket)?;
    match bucket.tags {
        Some(tag_set) => Ok(S3Response::new(GetBucketTaggingOutput { tag_set })),
        None => Err(s3_error!(NoSuchTagSet, "The TagSet does not exist")),
    }
}

pub async fn delete_bucket(
    api: &S3Api,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    if !api.store.update_bucket(&req.input.bucket, |b| b.tags = None).await? {
        return Err(super::api::no_such_bucket());
    }
    Ok(S3Response::new(DeleteBucketTaggingOutput {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tags_are_url_encoded_pairs() {
        let tags = from_header(Some("a=1&b%20c=d%26e&empty=")).unwrap();
        let pairs: Vec<_> = tags.iter().map(|t| (t.key.as_deref().unwrap(), t.value.as_deref().unwrap())).collect();
        assert_eq!(pairs, [("a", "1"), ("b c", "d&e"), ("empty", "")]);
        assert!(from_header(None).unwrap().is_empty());
    }

    #[test]
    fn limits_are_aws_limits() {
        let many: String = (0..11).map(|i| format!("k{i}=v&")).collect();
        assert_eq!(from_header(Some(&many)).unwrap_err().code().as_str(), "InvalidTag");
        assert_eq!(from_header(Some("a=1&a=2")).unwrap_err().code().as_str(), "InvalidTag");
        let long_key = format!("{}=v", "k".repeat(129));
        assert!(from_header(Some(&long_key)).is_err());
        let max = format!("{}={}", "k".repeat(128), "v".repeat(256));
        assert_eq!(from_header(Some(&max)).unwrap().len(), 1);
        let long_value = format!("k={}", "v".repeat(257));
        assert!(from_header(Some(&long_value)).is_err());
    }
}
