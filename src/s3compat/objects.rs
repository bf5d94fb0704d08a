//! Object operations: put, get (ranges, conditions), head, delete,
//! delete-objects and copy.

use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;
use super::conditions::{copy_source_conditions, read_conditions};
use super::error::StoreError;
use super::events::{EventName, Origin};
use super::ingest::{self, Ingested, Stored, claims_of, discard};
use super::meta::{self, Attrs, ObjectMeta, attrs_of};
use super::store::{PutCondition, STREAM_CHUNK};
use super::tagging;

/// Ranges up to one stream chunk are read in one blocking call; larger ones
/// stream, so a GET holds at most a chunk of its body at a time.
const READ_WHOLE_MAX: u64 = STREAM_CHUNK as u64;

pub async fn put(
    api: &S3Api,
    req: S3Request<PutObjectInput>,
    event: EventName,
) -> S3Result<S3Response<PutObjectOutput>> {
    let origin = api.origin_of(&req);
    let S3Request { mut input, headers, trailing_headers, .. } = req;
    let bucket_meta = api.bucket(&input.bucket)?;
    let tags = tagging::from_header(input.tagging.as_deref())?;
    meta::check_user_metadata(input.metadata.as_ref())?;
    let body = input.body.take();
    let claims = claims_of!(input, headers, trailing_headers);
    let (ingested, verified) =
        ingest::ingest_verified(&api.store, body, claims, ingest::INLINE_MAX, input.content_length).await?;
    let cond = PutCondition::from_headers(input.if_match.take(), input.if_none_match.as_ref());
    let (bucket, key) = (std::mem::take(&mut input.bucket), std::mem::take(&mut input.key));
    let (mut record, inline) = record_for(&ingested, attrs_of!(input), verified.clone());
    record.tags = tags;
    let events = api.events_for(&bucket_meta, event, &bucket, &key, Some(&record), &origin);
    if let Err(failed) = api.store.put_object(&bucket, &key, &record, &inline, &cond, &events).await? {
        discard(&api.store, &ingested);
        return Err(failed.into());
    }
    api.delivered_later(&events);
    let checksum_type = record.checksum_type();
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(record.etag)),
        checksum_type,
        checksum_crc32: verified.crc32,
        checksum_crc32c: verified.crc32c,
        checksum_crc64nvme: verified.crc64nvme,
        checksum_sha1: verified.sha1,
        checksum_sha256: verified.sha256,
        size: i64::try_from(record.size).ok(),
        ..Default::default()
    }))
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
        part_list: Vec::new(),
        tags: Vec::new(),
        composite: false,
    };
    (record, inline)
}

/// The response of a GetObject or HeadObject (distinct s3s types with the
/// same fields): the stored headers, with the request's `response-*`
/// overrides, for `len` bytes of the object.
macro_rules! described {
    ($out:ident, $input:ident, $record:ident, $len:expr, $content_range:expr, $sums:expr, $sums_type:expr) => {{
        let sums: meta::Checksums = $sums;
        let parts_count = $record.parts.and_then(|p| i32::try_from(p).ok());
        let modified = meta::timestamp($record.modified_ms);
        let Attrs {
            content_type,
            content_encoding,
            content_disposition,
            content_language,
            cache_control,
            expires,
            website_redirect_location,
            metadata,
        } = $record.attrs;
        $out {
            content_length: i64::try_from($len).ok(),
            content_range: $content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong($record.etag)),
            last_modified: Some(modified),
            // AWS's type for an object stored without one.
            content_type: $input.response_content_type.or(content_type).or_else(|| Some("binary/octet-stream".into())),
            content_encoding: $input.response_content_encoding.or(content_encoding),
            content_disposition: $input.response_content_disposition.or(content_disposition),
            content_language: $input.response_content_language.or(content_language),
            cache_control: $input.response_cache_control.or(cache_control),
            expires: $input.response_expires.or(expires),
            website_redirect_location,
            metadata,
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_type: $sums_type,
            parts_count,
            ..Default::default()
        }
    }};
}

pub async fn get(api: &S3Api, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let (record, inline) = api.load_object(&input.bucket, &input.key)?;
    if let Some(e) = read_conditions!(input).check(&record.etag, &meta::timestamp(record.modified_ms)) {
        return Err(e);
    }
    let (start, len, content_range) = read_range(&record, input.part_number, input.range.as_ref())?;
    let body = read_body(api, &input.bucket, &input.key, record.clone(), inline, start, len).await?;
    let (sums, sums_type) = shown_checksums(&record, input.checksum_mode.as_ref(), input.part_number, &content_range);
    let tag_count = (!record.tags.is_empty()).then(|| i32::try_from(record.tags.len()).unwrap_or(i32::MAX));
    let mut out = described!(GetObjectOutput, input, record, len, content_range, sums, sums_type);
    out.body = Some(body);
    out.tag_count = tag_count;
    Ok(S3Response::new(out))
}

pub async fn head(api: &S3Api, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let (record, _) = api.load_object(&input.bucket, &input.key)?;
    if let Some(e) = read_conditions!(input).check(&record.etag, &meta::timestamp(record.modified_ms)) {
        return Err(e);
    }
    let (_, len, content_range) = read_range(&record, input.part_number, input.range.as_ref())?;
    let (sums, sums_type) = shown_checksums(&record, input.checksum_mode.as_ref(), input.part_number, &content_range);
    Ok(S3Response::new(described!(HeadObjectOutput, input, record, len, content_range, sums, sums_type)))
}

/// The checksums a read shows: only when asked (`x-amz-checksum-mode:
/// ENABLED`), as AWS. A part read shows that part's own; a range shows none
/// (its bytes do not carry the whole object's).
fn shown_checksums(
    record: &ObjectMeta,
    mode: Option<&ChecksumMode>,
    part: Option<i32>,
    content_range: &Option<String>,
) -> (meta::Checksums, Option<ChecksumType>) {
    if mode.is_none_or(|m| m.as_str() != ChecksumMode::ENABLED) {
        return Default::default();
    }
    let part = part.and_then(|n| usize::try_from(n).ok()?.checked_sub(1)).and_then(|i| record.part_list.get(i));
    match (part, content_range) {
        (Some(part), _) => (part.checksums.clone(), None),
        (None, None) => (record.shown_checksums(), record.checksum_type()),
        (None, Some(_)) => Default::default(),
    }
}

/// `(start, length, Content-Range)` of what a read asks for: the part
/// `partNumber` names (a part of a multipart object, or the whole of any
/// other as its part 1; past the last part AWS's `InvalidPartNumber`, 416;
/// with a Range too, `InvalidRequest`), else the Range.
fn read_range(record: &ObjectMeta, part: Option<i32>, range: Option<&Range>) -> S3Result<(u64, u64, Option<String>)> {
    let Some(n) = part else { return resolve_range(range, record.size) };
    if range.is_some() {
        return Err(s3_error!(InvalidRequest, "Cannot specify both Range header and partNumber query parameter"));
    }
    let index = super::multipart::part_number(n)? as usize - 1;
    let sizes: Vec<u64> =
        if record.part_list.is_empty() { vec![record.size] } else { record.part_list.iter().map(|p| p.size).collect() };
    let Some(&len) = sizes.get(index) else {
        let code = s3s::S3ErrorCode::Custom("InvalidPartNumber".into());
        let mut e = s3s::S3Error::with_message(code, "The requested partnumber is not satisfiable");
        e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
        return Err(e);
    };
    let start: u64 = sizes[..index].iter().sum();
    let range = format!("bytes {start}-{}/{}", (start + len).saturating_sub(1), record.size);
    Ok((start, len, Some(range)))
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
    let origin = api.origin_of(&req);
    let input = req.input;
    let bucket_meta = api.bucket(&input.bucket)?;
    remove(api, &bucket_meta, &input.bucket, &[input.key], &origin).await?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

/// Removes `keys`, recording an `ObjectRemoved:Delete` for each one that
/// existed, as the bucket's rules ask.
async fn remove(api: &S3Api, meta: &meta::BucketMeta, bucket: &str, keys: &[String], origin: &Origin) -> S3Result<()> {
    let events_for = |key: &str| api.events_for(meta, EventName::Delete, bucket, key, None, origin);
    api.store.delete_objects(bucket, keys, &events_for).await?;
    if !meta.notifications.is_empty() {
        api.events.poke();
    }
    Ok(())
}

/// Deletes up to 1000 keys with one durable flush.
pub async fn delete_many(api: &S3Api, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let origin = api.origin_of(&req);
    let input = req.input;
    let bucket_meta = api.bucket(&input.bucket)?;
    let objects = input.delete.objects;
    if objects.is_empty() || objects.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    }
    let keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
    remove(api, &bucket_meta, &input.bucket, &keys, &origin).await?;
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
    let origin = api.origin_of(&req);
    let input = req.input;
    let CopySource::Bucket { bucket: src_bucket, key: src_key, .. } = &input.copy_source else {
        return Err(s3_error!(NotImplemented, "Only bucket copy sources are supported"));
    };
    let bucket_meta = api.bucket(&input.bucket)?;
    let (src, inline) = api.load_object(src_bucket, src_key)?;
    if copy_source_conditions!(input).check(&src.etag, &meta::timestamp(src.modified_ms)).is_some() {
        return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
    }
    if src.size > super::ingest::MAX_UPLOAD {
        return Err(super::multipart::copy_source_too_large());
    }
    let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    if replace {
        meta::check_user_metadata(input.metadata.as_ref())?;
    }
    if !replace && **src_bucket == *input.bucket && **src_key == *input.key {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let tags = match input.tagging_directive.as_ref().map(TaggingDirective::as_str) {
        Some(TaggingDirective::REPLACE) => tagging::from_header(input.tagging.as_deref())?,
        _ => src.tags.clone(),
    };
    let (bucket, key) = (input.bucket.clone(), input.key.clone());
    let attrs = if replace { attrs_of!(input) } else { src.attrs.clone() };
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
    let record = ObjectMeta { modified_ms: meta::now_ms(), blob: blob.clone(), attrs, tags, ..src };
    let events = api.events_for(&bucket_meta, EventName::Copy, &bucket, &key, Some(&record), &origin);
    if let Err(e) = api.store.put_object(&bucket, &key, &record, &inline, &PutCondition::None, &events).await {
        if let Some(id) = &blob {
            api.store.discard_blob(id);
        }
        return Err(e.into());
    }
    api.delivered_later(&events);
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(record.etag)),
            last_modified: Some(meta::timestamp(record.modified_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}
