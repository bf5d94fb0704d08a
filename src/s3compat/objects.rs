//! Object operations: put, get (ranges, conditions), head, delete,
//! delete-objects and copy.

use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;
use super::checksums;
use super::conditions::ReadConditions;
use super::error::StoreError;
use super::ingest::{self, Ingested, Stored};
use super::meta::{self, Attrs, ObjectMeta};
use super::store::{PutCondition, STREAM_CHUNK, Store};

/// Ranges up to one stream chunk are read in one blocking call; larger ones
/// stream, so a GET holds at most a chunk of its body at a time.
const READ_WHOLE_MAX: u64 = STREAM_CHUNK as u64;

pub async fn put(api: &S3Api, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
    let S3Request { input, headers, trailing_headers, .. } = req;
    api.require_bucket(&input.bucket)?;
    let mut claimed = checksums::claimed(
        input.checksum_crc32,
        input.checksum_crc32c,
        input.checksum_crc64nvme,
        input.checksum_sha1,
        input.checksum_sha256,
    );
    let hasher = checksums::hasher_for(&claimed, input.checksum_algorithm.as_ref(), &headers);
    let size_hint = input.content_length.and_then(|n| u64::try_from(n).ok());
    let body = input.body.unwrap_or_else(empty_body);
    let ingested = ingest::ingest(&api.store, body, hasher, ingest::INLINE_MAX, size_hint).await?;
    let verified = checksums::verify_content_md5(input.content_md5.as_deref(), &ingested.md5).and_then(|()| {
        checksums::merge_trailers(&mut claimed, trailing_headers.as_ref());
        checksums::verify(&claimed, ingested.checksum.clone())
    });
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            discard(&api.store, &ingested);
            return Err(e);
        }
    };
    let attrs = Attrs {
        content_type: input.content_type,
        content_encoding: input.content_encoding,
        content_disposition: input.content_disposition,
        content_language: input.content_language,
        cache_control: input.cache_control,
        expires: input.expires,
        website_redirect_location: input.website_redirect_location,
        metadata: input.metadata,
    };
    let (record, inline) = record_for(&ingested, attrs, verified.clone());
    let cond = PutCondition::from_headers(input.if_match, input.if_none_match.as_ref());
    if api.store.put_object(&input.bucket, &input.key, &record, &inline, &cond).await?.is_err() {
        discard(&api.store, &ingested);
        return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
    }
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(record.etag)),
        checksum_crc32: verified.crc32,
        checksum_crc32c: verified.crc32c,
        checksum_crc64nvme: verified.crc64nvme,
        checksum_sha1: verified.sha1,
        checksum_sha256: verified.sha256,
        size: i64::try_from(record.size).ok(),
        ..Default::default()
    }))
}

/// A body-less PUT is an empty object.
pub fn empty_body() -> StreamingBlob {
    StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>())
}

/// Removes the blob of an upload that will not be published.
pub fn discard(store: &Store, ingested: &Ingested) {
    if let Stored::Blob(id) = &ingested.stored {
        store.discard_blob(id);
    }
}

fn record_for(ingested: &Ingested, attrs: Attrs, checksums: meta::Checksums) -> (ObjectMeta, Bytes) {
    let (blob, inline) = match &ingested.stored {
        Stored::Inline(b) => (None, b.clone()),
        Stored::Blob(id) => (Some(id.clone()), Bytes::new()),
    };
    let record = ObjectMeta {
        size: ingested.size,
        etag: ingested.etag(),
        modified_ms: meta::now_ms(),
        blob,
        attrs,
        checksums,
        parts: None,
    };
    (record, inline)
}

pub async fn get(api: &S3Api, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let (record, inline) = api.load_object(&input.bucket, &input.key)?;
    let modified = meta::timestamp(record.modified_ms);
    let conds = ReadConditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    if let Some(e) = conds.check(&record.etag, &modified) {
        return Err(e);
    }
    let (start, len, content_range) = resolve_range(input.range.as_ref(), record.size)?;
    let body = read_body(api, &input.bucket, &input.key, record.clone(), inline, start, len).await?;
    let full = content_range.is_none();
    let Attrs {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires,
        website_redirect_location,
        metadata,
    } = record.attrs;
    let sums = if full { record.checksums } else { meta::Checksums::default() };
    Ok(S3Response::new(GetObjectOutput {
        body: Some(body),
        content_length: i64::try_from(len).ok(),
        content_range,
        accept_ranges: Some("bytes".into()),
        e_tag: Some(ETag::Strong(record.etag)),
        last_modified: Some(modified),
        content_type: input.response_content_type.or(content_type),
        content_encoding: input.response_content_encoding.or(content_encoding),
        content_disposition: input.response_content_disposition.or(content_disposition),
        content_language: input.response_content_language.or(content_language),
        cache_control: input.response_cache_control.or(cache_control),
        expires: input.response_expires.or(expires),
        website_redirect_location,
        metadata,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        parts_count: record.parts.and_then(|p| i32::try_from(p).ok()),
        ..Default::default()
    }))
}

pub async fn head(api: &S3Api, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let (record, _) = api.load_object(&input.bucket, &input.key)?;
    let modified = meta::timestamp(record.modified_ms);
    let conds = ReadConditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    if let Some(e) = conds.check(&record.etag, &modified) {
        return Err(e);
    }
    let (_, len, content_range) = resolve_range(input.range.as_ref(), record.size)?;
    let Attrs {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires,
        website_redirect_location,
        metadata,
    } = record.attrs;
    let sums = record.checksums;
    Ok(S3Response::new(HeadObjectOutput {
        content_length: i64::try_from(len).ok(),
        content_range,
        accept_ranges: Some("bytes".into()),
        e_tag: Some(ETag::Strong(record.etag)),
        last_modified: Some(modified),
        content_type: input.response_content_type.or(content_type),
        content_encoding: input.response_content_encoding.or(content_encoding),
        content_disposition: input.response_content_disposition.or(content_disposition),
        content_language: input.response_content_language.or(content_language),
        cache_control: input.response_cache_control.or(cache_control),
        expires: input.response_expires.or(expires),
        website_redirect_location,
        metadata,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        parts_count: record.parts.and_then(|p| i32::try_from(p).ok()),
        ..Default::default()
    }))
}

/// `(start, length, Content-Range)`; an unsatisfiable range is `InvalidRange` (416).
fn resolve_range(range: Option<&Range>, size: u64) -> S3Result<(u64, u64, Option<String>)> {
    let Some(range) = range else { return Ok((0, size, None)) };
    let r = range.check(size).map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
    Ok((r.start, r.end - r.start, Some(format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1)))))
}

/// The bytes of `[start, start+len)`. A blob can vanish between reading the
/// record and opening the file (an overwrite retired it): then re-read the
/// record and serve the newer version, as if the GET came a moment later.
async fn read_body(
    api: &S3Api,
    bucket: &str,
    key: &str,
    mut record: ObjectMeta,
    mut inline: Bytes,
    start: u64,
    len: u64,
) -> S3Result<StreamingBlob> {
    for _ in 0..3 {
        let Some(blob) = record.blob.clone() else {
            let (s, e) =
                (usize::try_from(start).unwrap_or(usize::MAX), usize::try_from(start + len).unwrap_or(usize::MAX));
            let bytes = inline.get(s..e).map(Bytes::copy_from_slice).unwrap_or_default();
            return Ok(StreamingBlob::from(s3s::Body::from(bytes)));
        };
        let opened = if len <= READ_WHOLE_MAX {
            api.store
                .read_blob(blob, start, len as usize)
                .await?
                .map(|bytes| StreamingBlob::from(s3s::Body::from(bytes)))
        } else {
            api.store.read_stream(&blob, start, len).await.map(StreamingBlob::wrap)
        };
        match opened {
            Ok(body) => return Ok(body),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (record, inline) = api.load_object(bucket, key)?;
                if start + len > record.size {
                    return Err(s3_error!(InvalidRange, "The requested range is not satisfiable"));
                }
            }
            Err(e) => return Err(StoreError::from(e).into()),
        }
    }
    Err(s3_error!(SlowDown, "The object is being overwritten too often; retry"))
}

pub async fn delete(api: &S3Api, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    api.store.delete_objects(&input.bucket, &[input.key]).await?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

/// Deletes up to 1000 keys with one durable flush.
pub async fn delete_many(api: &S3Api, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    let objects = input.delete.objects;
    if objects.is_empty() || objects.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    }
    let keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
    api.store.delete_objects(&input.bucket, &keys).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let deleted = if quiet {
        Vec::new()
    } else {
        objects
            .into_iter()
            .map(|o| DeletedObject { key: Some(o.key), version_id: o.version_id, ..Default::default() })
            .collect()
    };
    Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), ..Default::default() }))
}

pub async fn copy(api: &S3Api, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
    let input = req.input;
    let CopySource::Bucket { bucket: src_bucket, key: src_key, .. } = &input.copy_source else {
        return Err(s3_error!(NotImplemented, "Only bucket copy sources are supported"));
    };
    api.require_bucket(&input.bucket)?;
    let (src, inline) = api.load_object(src_bucket, src_key)?;
    let modified = meta::timestamp(src.modified_ms);
    let conds = ReadConditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    };
    if conds.check(&src.etag, &modified).is_some() {
        return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
    }
    if src.size > super::ingest::MAX_UPLOAD {
        return Err(super::multipart::copy_source_too_large());
    }
    let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    if !replace && **src_bucket == *input.bucket && **src_key == *input.key {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let attrs = if replace {
        Attrs {
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: input.expires,
            website_redirect_location: input.website_redirect_location,
            metadata: input.metadata,
        }
    } else {
        src.attrs.clone()
    };
    let blob = match &src.blob {
        None => None,
        Some(id) => match api.store.link_blob(id.clone()).await? {
            Ok(new_id) => Some(new_id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(s3_error!(SlowDown, "The source object changed during the copy; retry"));
            }
            Err(e) => return Err(StoreError::from(e).into()),
        },
    };
    let record = ObjectMeta { modified_ms: meta::now_ms(), blob: blob.clone(), attrs, ..src };
    if let Err(e) = api.store.put_object(&input.bucket, &input.key, &record, &inline, &PutCondition::None).await {
        if let Some(id) = &blob {
            api.store.discard_blob(id);
        }
        return Err(e.into());
    }
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(record.etag)),
            last_modified: Some(meta::timestamp(record.modified_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}
