//! Object checksums of multipart uploads, through the official AWS SDK: a
//! FULL_OBJECT CRC equals the CRC of the whole object (the SDK validates it
//! on GetObject), a COMPOSITE checksum is the algorithm over the parts'
//! digests with `-{parts}`, and AWS's refusals around both.

mod common;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart, ObjectAttributes,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::TestServer;
use crunchbox::cli::Role;
use sha2::Digest as _;

const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().map(str::to_owned).unwrap_or_else(|| format!("{e:?}")),
    }
}

/// The base64 CRC of `data`, as S3 writes it (big-endian, 4 or 8 bytes).
fn crc(algorithm: &ChecksumAlgorithm, data: &[u8]) -> String {
    let (crc, width) = match algorithm {
        ChecksumAlgorithm::Crc32 => (crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
        ChecksumAlgorithm::Crc32C => (crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
        _ => (crc_fast::CrcAlgorithm::Crc64Nvme, 8),
    };
    BASE64.encode(&crc_fast::checksum(crc, data).to_be_bytes()[8 - width..])
}

/// The object checksum value of `algorithm` in a completed upload or read.
macro_rules! value_of {
    ($out:expr, $algorithm:expr) => {
        match $algorithm {
            ChecksumAlgorithm::Crc32 => $out.checksum_crc32(),
            ChecksumAlgorithm::Crc32C => $out.checksum_crc32_c(),
            ChecksumAlgorithm::Sha256 => $out.checksum_sha256(),
            _ => $out.checksum_crc64_nvme(),
        }
    };
}

/// A part as CompleteMultipartUpload names it, with its checksum.
fn completed(n: i32, etag: Option<&str>, algorithm: &ChecksumAlgorithm, sum: Option<&str>) -> CompletedPart {
    let part = CompletedPart::builder().part_number(n).set_e_tag(etag.map(str::to_owned));
    let sum = sum.map(str::to_owned);
    match algorithm {
        ChecksumAlgorithm::Crc32 => part.set_checksum_crc32(sum),
        ChecksumAlgorithm::Crc32C => part.set_checksum_crc32_c(sum),
        ChecksumAlgorithm::Sha256 => part.set_checksum_sha256(sum),
        _ => part.set_checksum_crc64_nvme(sum),
    }
    .build()
}

/// Creates an upload of `algorithm` (and type) and uploads `parts`, each
/// checksummed by the SDK; returns the upload id and the parts to complete.
async fn upload(
    s3: &Client,
    key: &str,
    algorithm: &ChecksumAlgorithm,
    kind: Option<ChecksumType>,
    parts: &[Vec<u8>],
) -> (String, Vec<CompletedPart>) {
    let created = s3
        .create_multipart_upload()
        .bucket("sums")
        .key(key)
        .checksum_algorithm(algorithm.clone())
        .set_checksum_type(kind)
        .send()
        .await
        .expect("create");
    let id = created.upload_id().expect("upload id").to_owned();
    let mut done = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket("sums")
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(algorithm.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .expect("part");
        let sum = value_of!(out, algorithm);
        assert!(sum.is_some(), "UploadPart answers the part's {algorithm:?}");
        done.push(completed(n, out.e_tag(), algorithm, sum));
    }
    (id, done)
}

fn list(parts: Vec<CompletedPart>) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder().set_parts(Some(parts)).build()
}

async fn start() -> (TestServer, Client) {
    let server = TestServer::start(&[Role::S3]).await;
    let s3 = server.s3().await;
    s3.create_bucket().bucket("sums").send().await.expect("bucket");
    (server, s3)
}

#[tokio::test]
async fn full_object_crcs_are_the_whole_objects_crc() {
    let (server, s3) = start().await;
    let parts = [pattern(5 * MIB, 1), pattern(5 * MIB + 3, 2), pattern(1000, 3)];
    let whole = parts.concat();
    let cases = [
        (ChecksumAlgorithm::Crc64Nvme, None),
        (ChecksumAlgorithm::Crc32, Some(ChecksumType::FullObject)),
        (ChecksumAlgorithm::Crc32C, Some(ChecksumType::FullObject)),
    ];
    for (algorithm, kind) in cases {
        let key = format!("full-{algorithm:?}");
        let (id, done) = upload(&s3, &key, &algorithm, kind, &parts).await;
        let expected = crc(&algorithm, &whole);
        let complete = || s3.complete_multipart_upload().bucket("sums").key(&key).upload_id(&id);

        // A wrong full-object claim, a wrong size or the other type change nothing.
        let wrong = crc(&algorithm, b"something else");
        let claimed = match algorithm {
            ChecksumAlgorithm::Crc32 => complete().checksum_crc32(wrong),
            ChecksumAlgorithm::Crc32C => complete().checksum_crc32_c(wrong),
            _ => complete().checksum_crc64_nvme(wrong),
        };
        assert_eq!(code(claimed.multipart_upload(list(done.clone())).send().await), "BadDigest");
        let sized = complete().mpu_object_size(whole.len() as i64 + 1).multipart_upload(list(done.clone()));
        assert_eq!(code(sized.send().await), "InvalidRequest");
        let typed = complete().checksum_type(ChecksumType::Composite).multipart_upload(list(done.clone()));
        assert_eq!(code(typed.send().await), "BadDigest");

        let out = complete()
            .checksum_type(ChecksumType::FullObject)
            .mpu_object_size(whole.len() as i64)
            .multipart_upload(list(done))
            .send()
            .await
            .expect("complete");
        assert_eq!(value_of!(out, algorithm), Some(expected.as_str()), "{algorithm:?}");
        assert_eq!(out.checksum_type(), Some(&ChecksumType::FullObject));

        // The SDK checks a full-object checksum against the body it reads.
        let got =
            s3.get_object().bucket("sums").key(&key).checksum_mode(ChecksumMode::Enabled).send().await.expect("get");
        assert_eq!(value_of!(got, algorithm), Some(expected.as_str()));
        assert_eq!(got.checksum_type(), Some(&ChecksumType::FullObject));
        let body = got.body.collect().await.expect("the SDK validated the body").into_bytes();
        assert!(body == whole, "{algorithm:?} body");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn composite_checksums_are_checksums_of_the_parts() {
    let (server, s3) = start().await;
    let algorithm = ChecksumAlgorithm::Sha256;
    let first = pattern(5 * MIB, 7);
    let (id, mut done) = upload(&s3, "comp", &algorithm, None, std::slice::from_ref(&first)).await;
    // Part 2 is copied: it gets the upload's checksum too.
    let tail = pattern(777, 8);
    s3.put_object().bucket("sums").key("tail").body(ByteStream::from(tail.clone())).send().await.expect("put");
    let copied = s3
        .upload_part_copy()
        .bucket("sums")
        .key("comp")
        .upload_id(&id)
        .part_number(2)
        .copy_source("sums/tail")
        .send()
        .await
        .expect("part copy");
    let result = copied.copy_part_result().expect("result");
    let tail_sum = BASE64.encode(sha2::Sha256::digest(&tail));
    assert_eq!(result.checksum_sha256(), Some(tail_sum.as_str()));
    done.push(completed(2, result.e_tag(), &algorithm, Some(&tail_sum)));

    let complete = |parts: Vec<CompletedPart>| {
        s3.complete_multipart_upload().bucket("sums").key("comp").upload_id(&id).multipart_upload(list(parts)).send()
    };
    // Every part's checksum must be named, and they number 1, 2, ...
    let unnamed = vec![done[0].clone(), completed(2, result.e_tag(), &algorithm, None)];
    assert_eq!(code(complete(unnamed).await), "InvalidRequest");
    let wrong = vec![done[0].clone(), completed(2, result.e_tag(), &algorithm, Some(&BASE64.encode([0u8; 32])))];
    assert_eq!(code(complete(wrong).await), "InvalidPart");

    let out = complete(done).await.expect("complete");
    let mut digests = sha2::Sha256::digest(&first).to_vec();
    digests.extend_from_slice(&sha2::Sha256::digest(&tail));
    let composite = BASE64.encode(sha2::Sha256::digest(&digests));
    let shown = format!("{composite}-2");
    assert_eq!(out.checksum_sha256(), Some(shown.as_str()));
    assert_eq!(out.checksum_type(), Some(&ChecksumType::Composite));

    let head =
        s3.head_object().bucket("sums").key("comp").checksum_mode(ChecksumMode::Enabled).send().await.expect("head");
    assert_eq!(head.checksum_sha256(), Some(shown.as_str()));
    assert_eq!(head.checksum_type(), Some(&ChecksumType::Composite));
    // The SDK leaves a composite value unchecked and reads the body.
    let got =
        s3.get_object().bucket("sums").key("comp").checksum_mode(ChecksumMode::Enabled).send().await.expect("get");
    let body = got.body.collect().await.expect("body").into_bytes();
    assert!(body == [first, tail].concat());
    // GetObjectAttributes counts the parts apart, so the value has no `-2`.
    let attributes = s3
        .get_object_attributes()
        .bucket("sums")
        .key("comp")
        .object_attributes(ObjectAttributes::Checksum)
        .send()
        .await
        .expect("attributes");
    let checksum = attributes.checksum().expect("checksum");
    assert_eq!(checksum.checksum_sha256(), Some(composite.as_str()));
    assert_eq!(checksum.checksum_type(), Some(&ChecksumType::Composite));
    server.shutdown().await;
}

#[tokio::test]
async fn checksum_algorithms_and_types_are_refused_as_aws_refuses_them() {
    let (server, s3) = start().await;
    let create = |algorithm: Option<ChecksumAlgorithm>, kind: ChecksumType| {
        s3.create_multipart_upload()
            .bucket("sums")
            .key("k")
            .set_checksum_algorithm(algorithm)
            .checksum_type(kind)
            .send()
    };
    assert_eq!(code(create(Some(ChecksumAlgorithm::Sha256), ChecksumType::FullObject).await), "InvalidRequest");
    assert_eq!(code(create(Some(ChecksumAlgorithm::Crc64Nvme), ChecksumType::Composite).await), "InvalidRequest");
    assert_eq!(code(create(None, ChecksumType::Composite).await), "InvalidRequest");
    let created = create(Some(ChecksumAlgorithm::Crc32), ChecksumType::Composite).await.expect("create");
    assert_eq!(created.checksum_type(), Some(&ChecksumType::Composite));

    // A part checksummed with another algorithm than the upload's.
    let id = created.upload_id().expect("id");
    let part = s3
        .upload_part()
        .bucket("sums")
        .key("k")
        .upload_id(id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await;
    assert_eq!(code(part), "InvalidRequest");
    assert!(s3.list_parts().bucket("sums").key("k").upload_id(id).send().await.expect("parts").parts().is_empty());

    // A single PutObject's checksum is FULL_OBJECT.
    let put = s3
        .put_object()
        .bucket("sums")
        .key("single")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .expect("put");
    assert_eq!(put.checksum_type(), Some(&ChecksumType::FullObject));
    server.shutdown().await;
}
