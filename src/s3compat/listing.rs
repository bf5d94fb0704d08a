//! ListObjects (v1), ListObjectsV2 and ListObjectVersions (unversioned:
//! every object is its own latest version `null`).
//!
//! All three walk one bucket's slice of the `objects` tree in key order
//! (sled orders bytes, which is S3's UTF-8 binary order), folding keys into
//! common prefixes when a delimiter is given and jumping over each folded
//! prefix instead of reading every key under it.

use std::ops::Bound;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;
use super::error::StoreResult;
use super::meta::{self, ObjectMeta};
use super::store::Store;

const DEFAULT_MAX_KEYS: i32 = 1000;

/// What `EncodingType=url` escapes: everything but unreserved characters and `/`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// One page of a listing.
pub struct Page {
    pub objects: Vec<(String, ObjectMeta)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned: where the next page resumes.
    pub last: Option<String>,
}

/// Lists `bucket` under `prefix`, strictly after `after`, at most `max` entries.
pub fn walk(
    store: &Store,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> StoreResult<Page> {
    let base = meta::bucket_prefix(bucket);
    let full_prefix = [base.as_slice(), prefix.as_bytes()].concat();
    let mut start = match after {
        Some(a) if a >= prefix => Bound::Excluded([base.as_slice(), a.as_bytes()].concat()),
        _ => Bound::Included(full_prefix.clone()),
    };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut page = Page { objects: Vec::new(), prefixes: Vec::new(), truncated: false, last: None };
    if max == 0 {
        // AWS: `max-keys=0` lists nothing and is not truncated.
        return Ok(page);
    }
    'outer: loop {
        for item in store.objects_from(start.clone()) {
            let (k, v) = item?;
            if !k.starts_with(&full_prefix) {
                break 'outer;
            }
            let Ok(key) = std::str::from_utf8(&k[base.len()..]) else { continue };
            if let Some(d) = delimiter
                && let Some(pos) = key[prefix.len()..].find(d)
            {
                let common = &key[..prefix.len() + pos + d.len()];
                // Resume after the whole folded prefix: 0xFF never occurs in UTF-8.
                start = Bound::Excluded([base.as_slice(), common.as_bytes(), &[0xFF]].concat());
                if after != Some(common) {
                    if page.objects.len() + page.prefixes.len() >= max {
                        page.truncated = true;
                        break 'outer;
                    }
                    page.prefixes.push(common.to_owned());
                    page.last = Some(common.to_owned());
                }
                continue 'outer;
            }
            if page.objects.len() + page.prefixes.len() >= max {
                page.truncated = true;
                break 'outer;
            }
            page.objects.push((key.to_owned(), meta::decode_object(&v)?.0));
            page.last = Some(key.to_owned());
        }
        break;
    }
    Ok(page)
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be non-negative")),
        Some(n) => Ok(n.min(DEFAULT_MAX_KEYS) as usize),
        None => Ok(DEFAULT_MAX_KEYS as usize),
    }
}

/// Applies `EncodingType=url` to a key or prefix in a response.
fn encoder(encoding: Option<&EncodingType>) -> impl Fn(String) -> String + use<> {
    let url = encoding.is_some_and(|e| e.as_str() == EncodingType::URL);
    move |s| if url { utf8_percent_encode(&s, URL_ENCODE).to_string() } else { s }
}

/// An empty `delimiter=` is no delimiter: AWS then omits the element.
fn delimiter_of(d: Option<String>) -> Option<String> {
    d.filter(|d| !d.is_empty())
}

fn object_entry(key: String, m: &ObjectMeta, owner: Option<Owner>) -> Object {
    Object {
        key: Some(key),
        size: i64::try_from(m.size).ok(),
        e_tag: Some(ETag::Strong(m.etag.clone())),
        last_modified: Some(meta::timestamp(m.modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        owner,
        ..Default::default()
    }
}

fn common_prefixes(page: &Page, enc: &impl Fn(String) -> String) -> Option<Vec<CommonPrefix>> {
    (!page.prefixes.is_empty())
        .then(|| page.prefixes.iter().map(|p| CommonPrefix { prefix: Some(enc(p.clone())) }).collect())
}

pub async fn list_v1(api: &S3Api, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    let max = max_keys(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let page = walk(&api.store, &input.bucket, &prefix, input.delimiter.as_deref(), input.marker.as_deref(), max)?;
    let enc = encoder(input.encoding_type.as_ref());
    let contents = page.objects.iter().map(|(k, m)| object_entry(enc(k.clone()), m, Some(api.owner()))).collect();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(enc(prefix)),
        // v1 always echoes the marker, empty when none was sent.
        marker: Some(enc(input.marker.unwrap_or_default())),
        max_keys: input.max_keys.or(Some(DEFAULT_MAX_KEYS)),
        is_truncated: Some(page.truncated),
        common_prefixes: common_prefixes(&page, &enc),
        contents: Some(contents),
        next_marker: page.last.clone().filter(|_| page.truncated).map(&enc),
        delimiter: delimiter_of(input.delimiter).map(&enc),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub async fn list_v2(api: &S3Api, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    let max = max_keys(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let token = match input.continuation_token.as_deref() {
        Some(t) => Some(decode_token(t)?),
        None => None,
    };
    let after = token.as_deref().or(input.start_after.as_deref());
    let page = walk(&api.store, &input.bucket, &prefix, input.delimiter.as_deref(), after, max)?;
    let enc = encoder(input.encoding_type.as_ref());
    // v2 names owners only when asked (`fetch-owner=true`).
    let owner = input.fetch_owner.unwrap_or(false).then(|| api.owner());
    let contents: Vec<Object> =
        page.objects.iter().map(|(k, m)| object_entry(enc(k.clone()), m, owner.clone())).collect();
    let key_count = (page.objects.len() + page.prefixes.len()) as i32;
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(enc(prefix)),
        max_keys: input.max_keys.or(Some(DEFAULT_MAX_KEYS)),
        key_count: Some(key_count),
        continuation_token: input.continuation_token,
        is_truncated: Some(page.truncated),
        next_continuation_token: page.last.as_deref().filter(|_| page.truncated).map(encode_token),
        common_prefixes: common_prefixes(&page, &enc),
        contents: Some(contents),
        delimiter: delimiter_of(input.delimiter).map(&enc),
        encoding_type: input.encoding_type,
        start_after: input.start_after.map(&enc),
        ..Default::default()
    }))
}

pub async fn list_versions(
    api: &S3Api,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    let max = max_keys(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let page = walk(&api.store, &input.bucket, &prefix, input.delimiter.as_deref(), input.key_marker.as_deref(), max)?;
    let enc = encoder(input.encoding_type.as_ref());
    let versions = page
        .objects
        .iter()
        .map(|(k, m)| ObjectVersion {
            key: Some(enc(k.clone())),
            version_id: Some("null".into()),
            is_latest: Some(true),
            size: i64::try_from(m.size).ok(),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(meta::timestamp(m.modified_ms)),
            storage_class: Some(ObjectVersionStorageClass::from_static(ObjectVersionStorageClass::STANDARD)),
            owner: Some(api.owner()),
            ..Default::default()
        })
        .collect();
    let next = page.last.clone().filter(|_| page.truncated);
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(enc(prefix)),
        key_marker: input.key_marker.map(&enc),
        version_id_marker: input.version_id_marker,
        max_keys: input.max_keys.or(Some(DEFAULT_MAX_KEYS)),
        is_truncated: Some(page.truncated),
        next_version_id_marker: next.as_ref().map(|_| "null".to_owned()),
        next_key_marker: next.map(&enc),
        common_prefixes: common_prefixes(&page, &enc),
        versions: Some(versions),
        delimiter: delimiter_of(input.delimiter).map(&enc),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

/// Continuation tokens are opaque to clients: base64 of the resume key.
fn encode_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn decode_token(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roundtrip_and_reject_garbage() {
        assert_eq!(decode_token(&encode_token("a/b c")).unwrap(), "a/b c");
        assert!(decode_token("%%%").is_err());
    }

    #[test]
    fn url_encoding_keeps_slashes_and_escapes_plus() {
        let enc = encoder(Some(&EncodingType::from_static(EncodingType::URL)));
        assert_eq!(enc("a b+c/d".into()), "a%20b%2Bc/d");
        let plain = encoder(None);
        assert_eq!(plain("a b".into()), "a b");
    }
}
