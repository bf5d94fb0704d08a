//! GetObjectAttributes: size, ETag, checksums, storage class and the parts
//! of a multipart object, each only when asked for, as AWS answers.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;
use super::meta;

const MAX_PARTS: i32 = 1000;
const KNOWN: [&str; 5] = [
    ObjectAttributes::CHECKSUM,
    ObjectAttributes::ETAG,
    ObjectAttributes::OBJECT_PARTS,
    ObjectAttributes::OBJECT_SIZE,
    ObjectAttributes::STORAGE_CLASS,
];

pub async fn get(
    api: &S3Api,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    // aws-cli and boto3 send every attribute in one comma-joined header,
    // which s3s keeps as a single value; the Rust SDK sends one header each.
    let names: Vec<&str> = input.object_attributes.iter().flat_map(|a| a.as_str().split(',')).map(str::trim).collect();
    if names.is_empty() || !names.iter().all(|n| KNOWN.contains(n)) {
        return Err(s3_error!(InvalidArgument, "Invalid attribute name specified"));
    }
    let wants = |name: &str| names.contains(&name);
    let (record, _) = api.load_object(&input.bucket, &input.key)?;
    let sums = &record.checksums;
    // Unlike GetObject, a COMPOSITE value comes without its `-{parts}` here
    // (ObjectParts counts them).
    let checksum = wants(ObjectAttributes::CHECKSUM).then(|| record.checksum_type()).flatten().map(|kind| Checksum {
        checksum_crc32: sums.crc32.clone(),
        checksum_crc32c: sums.crc32c.clone(),
        checksum_crc64nvme: sums.crc64nvme.clone(),
        checksum_sha1: sums.sha1.clone(),
        checksum_sha256: sums.sha256.clone(),
        checksum_type: Some(kind),
    });
    let object_parts = (wants(ObjectAttributes::OBJECT_PARTS) && record.parts.is_some())
        .then(|| parts_page(&record, input.max_parts, input.part_number_marker));
    Ok(S3Response::new(GetObjectAttributesOutput {
        checksum,
        e_tag: wants(ObjectAttributes::ETAG).then(|| ETag::Strong(record.etag.clone())),
        last_modified: Some(meta::timestamp(record.modified_ms)),
        object_parts,
        object_size: wants(ObjectAttributes::OBJECT_SIZE).then(|| i64::try_from(record.size).unwrap_or(i64::MAX)),
        storage_class: wants(ObjectAttributes::STORAGE_CLASS)
            .then(|| StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

/// One page of an assembled object's parts, after `marker`.
fn parts_page(record: &meta::ObjectMeta, max: Option<i32>, marker: Option<i32>) -> GetObjectAttributesParts {
    let max = max.unwrap_or(MAX_PARTS).clamp(0, MAX_PARTS) as usize;
    let marker = marker.unwrap_or(0).max(0) as usize;
    let page: Vec<ObjectPart> = record
        .part_list
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1, p))
        .skip(marker)
        .take(max)
        .map(|(n, p)| ObjectPart {
            part_number: i32::try_from(n).ok(),
            size: i64::try_from(p.size).ok(),
            checksum_crc32: p.checksums.crc32.clone(),
            checksum_crc32c: p.checksums.crc32c.clone(),
            checksum_crc64nvme: p.checksums.crc64nvme.clone(),
            checksum_sha1: p.checksums.sha1.clone(),
            checksum_sha256: p.checksums.sha256.clone(),
        })
        .collect();
    let truncated = record.part_list.len().saturating_sub(marker) > page.len();
    let next = page.last().and_then(|p| p.part_number).filter(|_| truncated);
    GetObjectAttributesParts {
        is_truncated: Some(truncated),
        max_parts: i32::try_from(max).ok(),
        next_part_number_marker: next,
        part_number_marker: i32::try_from(marker).ok(),
        total_parts_count: record.parts.and_then(|n| i32::try_from(n).ok()),
        parts: Some(page),
    }
}
