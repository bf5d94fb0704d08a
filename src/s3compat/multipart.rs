//! Multipart uploads: create, upload part (and part-copy), complete, abort,
//! list parts, list uploads.
//!
//! Parts are always blob files. Completion concatenates them into a new
//! durable blob and then, in one sled transaction, publishes the object and
//! drops the upload, so a crash either keeps the upload or has the object.

use bytes::Bytes;
use futures_util::StreamExt as _;
use md5::Digest as _;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;
use super::checksums;
use super::conditions::copy_source_conditions;
use super::error::StoreError;
use super::ingest::{self, Stored, claims_of};
use super::meta::{self, Checksums, ObjectMeta, PartMeta, PartSummary, UploadMeta, attrs_of, checksums_of};
use super::store::PutCondition;
use super::tagging;

/// Every part but the last must be at least this large.
const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;

pub async fn create(
    api: &S3Api,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    meta::check_user_metadata(input.metadata.as_ref())?;
    let checksum = checksums::upload_checksum(input.checksum_algorithm.as_ref(), input.checksum_type.as_ref())?;
    let id = super::blob::BlobDir::new_id();
    let upload = UploadMeta {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        initiated_ms: meta::now_ms(),
        tags: tagging::from_header(input.tagging.as_deref())?,
        attrs: attrs_of!(input),
        checksum: checksum.clone(),
    };
    api.store.create_upload(&id, &upload).await?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(id),
        checksum_algorithm: input.checksum_algorithm,
        checksum_type: checksum.map(|c| meta::checksum_type(c.full_object)),
        ..Default::default()
    }))
}

/// The upload named by id, which must belong to `bucket`/`key`.
fn upload_of(api: &S3Api, bucket: &str, key: &str, id: &str) -> S3Result<UploadMeta> {
    match api.store.get_upload(id)? {
        Some(u) if u.bucket == bucket && u.key == key => Ok(u),
        _ => {
            api.require_bucket(bucket)?;
            Err(s3_error!(
                NoSuchUpload,
                "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
            ))
        }
    }
}

/// The algorithm an upload's parts are checksummed with, as a request names it.
fn part_algorithm(upload: &UploadMeta) -> Option<ChecksumAlgorithm> {
    upload.checksum.as_ref().map(|c| ChecksumAlgorithm::from(c.algorithm.to_ascii_uppercase()))
}

pub(super) fn part_number(n: i32) -> S3Result<u32> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(n as u32)
    } else {
        Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"))
    }
}

pub async fn upload_part(api: &S3Api, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
    let S3Request { mut input, headers, trailing_headers, .. } = req;
    let number = part_number(input.part_number)?;
    let upload = upload_of(api, &input.bucket, &input.key, &input.upload_id)?;
    let body = input.body.take();
    let mut claims = claims_of!(input, headers, trailing_headers);
    // A part of an upload created with a checksum algorithm always gets
    // that checksum, which the object's checksum is made from.
    let upload_algorithm = part_algorithm(&upload);
    if let Some(how) = &upload.checksum {
        let named = checksums::named(&claims.checksums, claims.algorithm, &headers);
        if let Some(other) = named.iter().find(|n| **n != how.algorithm)
            && !named.contains(&how.algorithm)
        {
            return Err(s3_error!(
                InvalidRequest,
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {other}",
                how.algorithm
            ));
        }
        claims.algorithm = upload_algorithm.as_ref();
    }
    let (ingested, verified) = ingest::ingest_verified(&api.store, body, claims, 0, input.content_length).await?;
    let Stored::Blob(blob) = &ingested.stored else {
        return Err(StoreError::Corrupt("part stored inline".into()).into());
    };
    let part = PartMeta {
        size: ingested.size,
        etag: ingested.etag(),
        md5: ingested.etag(),
        modified_ms: meta::now_ms(),
        blob: blob.clone(),
        checksums: verified.clone(),
    };
    if !api.store.put_part(&input.upload_id, number, &part).await? {
        return Err(s3_error!(NoSuchUpload, "The specified upload does not exist."));
    }
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(part.etag)),
        checksum_crc32: verified.crc32,
        checksum_crc32c: verified.crc32c,
        checksum_crc64nvme: verified.crc64nvme,
        checksum_sha1: verified.sha1,
        checksum_sha256: verified.sha256,
        ..Default::default()
    }))
}

pub async fn upload_part_copy(
    api: &S3Api,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let number = part_number(input.part_number)?;
    let upload = upload_of(api, &input.bucket, &input.key, &input.upload_id)?;
    let CopySource::Bucket { bucket: src_bucket, key: src_key, .. } = &input.copy_source else {
        return Err(s3_error!(NotImplemented, "Only bucket copy sources are supported"));
    };
    let (src, inline) = api.load_object(src_bucket, src_key)?;
    if copy_source_conditions!(input).check(&src.etag, &meta::timestamp(src.modified_ms)).is_some() {
        return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
    }
    let (start, len) = copy_range(input.copy_source_range.as_deref(), src.size)?;
    if len > ingest::MAX_UPLOAD {
        return Err(copy_source_too_large());
    }
    // The range streams from the source blob into the new part's temp file
    // in bounded batches: never whole in memory, whatever its size.
    let hasher = || {
        let algorithm = part_algorithm(&upload);
        checksums::hasher_for(&Checksums::default(), algorithm.as_ref(), &http::HeaderMap::new())
    };
    let ingested = match &src.blob {
        None => {
            let bytes = inline.slice(start as usize..(start + len) as usize);
            let body = futures_util::stream::iter([Ok::<Bytes, s3s::StdError>(bytes)]);
            ingest::ingest(&api.store, body, hasher(), 0, Some(len)).await?
        }
        Some(id) => {
            let body = match api.store.read_stream(id, start, len).await {
                Ok(stream) => stream.map(|r| r.map_err(s3s::StdError::from)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(s3_error!(SlowDown, "The source object changed during the copy; retry"));
                }
                Err(e) => return Err(StoreError::from(e).into()),
            };
            ingest::ingest(&api.store, body, hasher(), 0, Some(len)).await?
        }
    };
    let Stored::Blob(blob) = &ingested.stored else {
        return Err(StoreError::Corrupt("part stored inline".into()).into());
    };
    let part = PartMeta {
        size: ingested.size,
        etag: ingested.etag(),
        md5: ingested.etag(),
        modified_ms: meta::now_ms(),
        blob: blob.clone(),
        checksums: Checksums::from(ingested.checksum.clone()),
    };
    if !api.store.put_part(&input.upload_id, number, &part).await? {
        return Err(s3_error!(NoSuchUpload, "The specified upload does not exist."));
    }
    let sums = part.checksums;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(part.etag)),
            last_modified: Some(meta::timestamp(part.modified_ms)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
        }),
        ..Default::default()
    }))
}

/// AWS's answer to a copy whose source (or range) is over 5 GiB.
pub fn copy_source_too_large() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "The specified copy source is larger than the maximum allowable size for a copy source: {}",
        ingest::MAX_UPLOAD
    )
}

/// `bytes=first-last` (inclusive) within the source, else `InvalidRange`.
fn copy_range(range: Option<&str>, size: u64) -> S3Result<(u64, u64)> {
    let Some(range) = range else { return Ok((0, size)) };
    let invalid = || {
        s3_error!(
            InvalidRange,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (first, last) = range.strip_prefix("bytes=").and_then(|r| r.split_once('-')).ok_or_else(invalid)?;
    let first: u64 = first.parse().map_err(|_| invalid())?;
    let last: u64 = last.parse().map_err(|_| invalid())?;
    if first > last || last >= size {
        return Err(invalid());
    }
    Ok((first, last - first + 1))
}

/// Whether every checksum a CompleteMultipartUpload names for a part is
/// the one that part was stored with (AWS answers `InvalidPart` when not).
/// One the part was stored without cannot be compared and is let through.
fn checksums_agree(claimed: &Checksums, stored: &Checksums) -> bool {
    claimed.fields().into_iter().zip(stored.fields()).all(|((_, claimed), (_, kept))| match (claimed, kept) {
        (Some(claimed), Some(kept)) => claimed == kept,
        _ => true,
    })
}

pub async fn complete(
    api: &S3Api,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let origin = api.origin_of(&req);
    let input = req.input;
    let upload = upload_of(api, &input.bucket, &input.key, &input.upload_id)?;
    let requested = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
    if requested.is_empty() {
        return Err(s3_error!(MalformedXML, "You must specify at least one part"));
    }
    let stored: std::collections::HashMap<u32, PartMeta> = api.store.parts_of(&input.upload_id)?.into_iter().collect();
    let mut chosen: Vec<&PartMeta> = Vec::with_capacity(requested.len());
    let mut previous = 0;
    for p in &requested {
        let n = p.part_number.ok_or_else(|| s3_error!(MalformedXML, "Every part needs a PartNumber"))?;
        let n = u32::try_from(n)
            .map_err(|_| s3_error!(InvalidPart, "One or more of the specified parts could not be found."))?;
        if n <= previous {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number."
            ));
        }
        let claimed = checksums_of!(p);
        if let Some(how) = &upload.checksum {
            // AWS: parts of a checksummed upload are numbered 1, 2, 3, ...
            if n != previous + 1 {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The parts of an upload with checksums must be numbered consecutively from 1."
                ));
            }
            if !how.full_object && claimed.get(&how.algorithm).is_none() {
                return Err(s3_error!(
                    InvalidRequest,
                    "The upload was created using a {} checksum. The complete request must include the checksum for each \
                     part. It was missing for part {n} in the request.",
                    how.algorithm
                ));
            }
        }
        previous = n;
        let part = stored
            .get(&n)
            .filter(|s| p.e_tag.as_ref().is_none_or(|e| e.value() == s.etag) && checksums_agree(&claimed, &s.checksums))
            .ok_or_else(|| s3_error!(InvalidPart, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."))?;
        chosen.push(part);
    }
    if chosen.iter().rev().skip(1).any(|p| p.size < MIN_PART) {
        return Err(s3_error!(EntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size."));
    }
    let mut md5s = md5::Md5::new();
    for p in &chosen {
        md5s.update(hex::decode(&p.md5).map_err(|_| StoreError::Corrupt("part md5".into()))?);
    }
    let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
    let size: u64 = chosen.iter().map(|p| p.size).sum();
    if input.mpu_object_size.is_some_and(|declared| u64::try_from(declared).ok() != Some(size)) {
        return Err(s3_error!(
            InvalidRequest,
            "The provided 'x-amz-mp-object-size' header value does not match what was computed: {size}"
        ));
    }
    let (mut object_sums, mut composite) = (Checksums::default(), false);
    if let Some(how) = &upload.checksum {
        let parts: Vec<(u64, &Checksums)> = chosen.iter().map(|p| (p.size, &p.checksums)).collect();
        let computed = checksums::object_checksum(how, &parts);
        let claimed = checksums_of!(input);
        checksums::verify_object_claim(how, input.checksum_type.as_ref(), &claimed, computed.as_deref())?;
        if let Some(value) = computed {
            object_sums = Checksums::only(&how.algorithm, value);
            composite = !how.full_object;
        }
    }
    let blob_ids: Vec<String> = chosen.iter().map(|p| p.blob.clone()).collect();
    let bucket_meta = api.bucket(&input.bucket)?;
    let blob = api.store.concat_blobs(blob_ids).await?;
    let record = ObjectMeta {
        size,
        etag: etag.clone(),
        modified_ms: meta::now_ms(),
        blob: Some(blob.clone()),
        attrs: upload.attrs.clone(),
        checksums: object_sums,
        parts: Some(chosen.len() as u32),
        part_list: chosen.iter().map(|p| PartSummary { size: p.size, checksums: p.checksums.clone() }).collect(),
        tags: upload.tags.clone(),
        composite,
    };
    let cond = PutCondition::from_headers(input.if_match, input.if_none_match.as_ref());
    let name = super::events::EventName::CompleteMultipartUpload;
    let events = api.events_for(&bucket_meta, name, &input.bucket, &input.key, Some(&record), &origin);
    let outcome = api.store.complete_upload(&input.upload_id, &upload, &record, &cond, &events).await;
    match outcome {
        Ok(Some(Ok(()))) => api.delivered_later(&events),
        other => {
            api.store.discard_blob(&blob);
            return match other? {
                Some(Err(failed)) => Err(failed.into()),
                _ => Err(s3_error!(NoSuchUpload, "The specified upload does not exist.")),
            };
        }
    }
    let (sums, checksum_type) = (record.shown_checksums(), record.checksum_type());
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type,
        ..Default::default()
    }))
}

pub async fn abort(
    api: &S3Api,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    upload_of(api, &input.bucket, &input.key, &input.upload_id)?;
    if !api.store.abort_upload(&input.upload_id).await? {
        return Err(s3_error!(NoSuchUpload, "The specified upload does not exist."));
    }
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(api: &S3Api, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    upload_of(api, &input.bucket, &input.key, &input.upload_id)?;
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let marker = input.part_number_marker.unwrap_or(0);
    let mut parts: Vec<(u32, PartMeta)> =
        api.store.parts_of(&input.upload_id)?.into_iter().filter(|(n, _)| i64::from(*n) > i64::from(marker)).collect();
    let truncated = parts.len() > max;
    parts.truncate(max);
    let next = parts.last().map(|(n, _)| *n as i32).filter(|_| truncated);
    let parts = parts
        .into_iter()
        .map(|(n, p)| Part {
            part_number: Some(n as i32),
            e_tag: Some(ETag::Strong(p.etag)),
            size: i64::try_from(p.size).ok(),
            last_modified: Some(meta::timestamp(p.modified_ms)),
            checksum_crc32: p.checksums.crc32,
            checksum_crc32c: p.checksums.crc32c,
            checksum_crc64nvme: p.checksums.crc64nvme,
            checksum_sha1: p.checksums.sha1,
            checksum_sha256: p.checksums.sha256,
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        parts: Some(parts),
        owner: Some(api.owner()),
        initiator: Some(Initiator { id: api.owner().id, display_name: api.owner().display_name }),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    api: &S3Api,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let prefix = input.prefix.clone().unwrap_or_default();
    let mut uploads: Vec<(String, UploadMeta)> =
        api.store.uploads_of(&input.bucket)?.into_iter().filter(|(_, u)| u.key.starts_with(&prefix)).collect();
    uploads.sort_by(|(ia, a), (ib, b)| (&a.key, a.initiated_ms, ia).cmp(&(&b.key, b.initiated_ms, ib)));
    if let Some(km) = input.key_marker.as_deref() {
        let id_marker = input.upload_id_marker.as_deref();
        uploads.retain(|(id, u)| match id_marker {
            Some(im) => u.key.as_str() > km || (u.key == km && id.as_str() > im),
            None => u.key.as_str() > km,
        });
    }
    let truncated = uploads.len() > max;
    uploads.truncate(max);
    let (next_key, next_id) = match uploads.last().filter(|_| truncated) {
        Some((id, u)) => (Some(u.key.clone()), Some(id.clone())),
        None => (None, None),
    };
    let list = uploads
        .into_iter()
        .map(|(id, u)| MultipartUpload {
            upload_id: Some(id),
            key: Some(u.key),
            initiated: Some(meta::timestamp(u.initiated_ms)),
            owner: Some(api.owner()),
            initiator: Some(Initiator { id: api.owner().id, display_name: api.owner().display_name }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        next_key_marker: next_key,
        next_upload_id_marker: next_id,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        uploads: Some(list),
        delimiter: input.delimiter,
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges() {
        assert_eq!(copy_range(None, 10).unwrap(), (0, 10));
        assert_eq!(copy_range(Some("bytes=2-5"), 10).unwrap(), (2, 4));
        assert!(copy_range(Some("bytes=5-2"), 10).is_err());
        assert!(copy_range(Some("bytes=0-10"), 10).is_err());
        assert!(copy_range(Some("2-5"), 10).is_err());
    }
}
