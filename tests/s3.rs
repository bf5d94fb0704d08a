//! The embedded S3 over real sockets: the official AWS SDK for the API,
//! reqwest (with a small SigV4 signer) for what the SDK will not send:
//! anonymous and virtual-host requests, malformed XML, bad signatures.

mod common;
#[path = "common/sign.rs"]
mod sign;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier};
use common::{ACCESS_KEY, SECRET_KEY, TestServer};
use crunchbox::cli::Role;
use md5::Digest as _;

const MIB: usize = 1024 * 1024;

async fn start() -> (TestServer, Client) {
    let server = TestServer::start(&[Role::S3]).await;
    let s3 = server.s3().await;
    (server, s3)
}

async fn bucket(s3: &Client, name: &str) {
    s3.create_bucket().bucket(name).send().await.expect("create bucket");
}

async fn put(s3: &Client, bucket: &str, key: &str, body: Vec<u8>) -> String {
    let out = s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send().await.expect("put");
    out.e_tag().unwrap_or_default().to_owned()
}

async fn get(s3: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.expect("get");
    out.body.collect().await.expect("body").into_bytes().to_vec()
}

/// The AWS error code of a failed SDK call.
fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().map(str::to_owned).unwrap_or_else(|| format!("{e:?}")),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

/// Sends a signed raw request; returns (status, body).
async fn raw(server: &TestServer, method: &str, path: &str, query: &str, body: Vec<u8>) -> (u16, String) {
    let endpoint = server.endpoint();
    let host = endpoint.trim_start_matches("http://").to_owned();
    let url = if query.is_empty() { format!("{endpoint}{path}") } else { format!("{endpoint}{path}?{query}") };
    let mut req = reqwest::Client::new().request(method.parse().expect("method"), url);
    for (k, v) in sign::headers(method, &host, path, query, &body, time::OffsetDateTime::now_utc()) {
        req = req.header(k, v);
    }
    let resp = req.body(body).send().await.expect("send");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn bucket_lifecycle_and_errors() {
    let (server, s3) = start().await;
    bucket(&s3, "alpha").await;
    // us-east-1 keeps AWS's legacy answer to creating a bucket you own: 200.
    s3.create_bucket().bucket("alpha").send().await.expect("re-create in us-east-1");
    s3.head_bucket().bucket("alpha").send().await.expect("head");
    let names: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .expect("list")
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, vec!["alpha"]);
    let loc = s3.get_bucket_location().bucket("alpha").send().await.expect("location");
    assert!(loc.location_constraint().is_none_or(|c| c.as_str().is_empty()));
    put(&s3, "alpha", "k", b"v".to_vec()).await;
    assert_eq!(code(s3.delete_bucket().bucket("alpha").send().await), "BucketNotEmpty");
    s3.delete_object().bucket("alpha").key("k").send().await.expect("delete object");
    s3.delete_bucket().bucket("alpha").send().await.expect("delete bucket");
    assert!(s3.head_bucket().bucket("alpha").send().await.is_err());
    assert_eq!(code(s3.list_objects_v2().bucket("alpha").send().await), "NoSuchBucket");
    assert_eq!(code(s3.delete_bucket().bucket("alpha").send().await), "NoSuchBucket");
    assert_eq!(code(s3.create_bucket().bucket("Bad_Name").send().await), "InvalidBucketName");
    assert_eq!(code(s3.create_bucket().bucket("ab").send().await), "InvalidBucketName");
    server.shutdown().await;
}

#[tokio::test]
async fn objects_roundtrip_with_metadata() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    for (key, len) in [("small", 10), ("empty", 0), ("inline-edge", 64 * 1024), ("file", 3 * MIB + 7)] {
        let data = pattern(len, 7);
        let etag = put(&s3, "bkt", key, data.clone()).await;
        assert_eq!(etag, format!("\"{}\"", md5_hex(&data)), "{key}");
        assert_eq!(get(&s3, "bkt", key).await, data, "{key}");
    }
    s3.put_object()
        .bucket("bkt")
        .key("meta")
        .body(ByteStream::from_static(b"{}"))
        .content_type("application/json")
        .cache_control("max-age=60")
        .content_disposition("inline")
        .metadata("owner", "alice")
        .send()
        .await
        .expect("put with metadata");
    let head = s3.head_object().bucket("bkt").key("meta").send().await.expect("head");
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(head.cache_control(), Some("max-age=60"));
    assert_eq!(head.content_disposition(), Some("inline"));
    assert_eq!(head.content_length(), Some(2));
    assert_eq!(head.metadata().and_then(|m| m.get("owner")).map(String::as_str), Some("alice"));
    assert!(head.last_modified().is_some());
    // Overwrite replaces bytes and metadata.
    put(&s3, "bkt", "meta", b"new".to_vec()).await;
    let head = s3.head_object().bucket("bkt").key("meta").send().await.expect("head");
    assert!(head.metadata().is_none_or(|m| m.is_empty()));
    assert_eq!(get(&s3, "bkt", "meta").await, b"new");

    assert_eq!(code(s3.get_object().bucket("bkt").key("missing").send().await), "NoSuchKey");
    assert_eq!(code(s3.get_object().bucket("nope").key("k").send().await), "NoSuchBucket");
    assert_eq!(
        code(s3.put_object().bucket("nope").key("k").body(ByteStream::from_static(b"x")).send().await),
        "NoSuchBucket"
    );
    s3.delete_object().bucket("bkt").key("file").send().await.expect("delete");
    s3.delete_object().bucket("bkt").key("file").send().await.expect("delete is idempotent");
    assert_eq!(code(s3.get_object().bucket("bkt").key("file").send().await), "NoSuchKey");
    server.shutdown().await;
}

#[tokio::test]
async fn keys_are_opaque_data() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    let long = "k".repeat(1024);
    let unicode = "é".repeat(512); // 1024 bytes of UTF-8
    let keys =
        ["../../etc/passwd", "a%2Fb", "a/b", "/leading", "dir/", "spaces and +plus", "tab\there", &long, &unicode];
    for (i, key) in keys.iter().enumerate() {
        put(&s3, "bkt", key, vec![i as u8; 3]).await;
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(get(&s3, "bkt", key).await, vec![i as u8; 3], "{key}");
    }
    let listed: Vec<String> = s3
        .list_objects_v2()
        .bucket("bkt")
        .send()
        .await
        .expect("list")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(!server.dir.path().join("etc").exists());
    let too_long = "k".repeat(1025);
    assert_eq!(
        code(s3.put_object().bucket("bkt").key(too_long).body(ByteStream::from_static(b"x")).send().await),
        "KeyTooLongError"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ranges_and_conditional_reads() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    for (key, len) in [("small", 1000), ("big", 5 * MIB)] {
        let data = pattern(len, 3);
        let etag = put(&s3, "bkt", key, data.clone()).await;
        let out = s3.get_object().bucket("bkt").key(key).range("bytes=10-19").send().await.expect("range");
        assert_eq!(out.content_range(), Some(format!("bytes 10-19/{len}").as_str()));
        assert_eq!(out.body.collect().await.unwrap().into_bytes().as_ref(), &data[10..20]);
        let out = s3.get_object().bucket("bkt").key(key).range("bytes=-5").send().await.expect("suffix");
        assert_eq!(out.body.collect().await.unwrap().into_bytes().as_ref(), &data[len - 5..]);
        let out = s3.get_object().bucket("bkt").key(key).range("bytes=100-").send().await.expect("open range");
        assert_eq!(out.body.collect().await.unwrap().into_bytes().as_ref(), &data[100..]);
        let bad = format!("bytes={len}-");
        assert_eq!(code(s3.get_object().bucket("bkt").key(key).range(bad).send().await), "InvalidRange");

        let ok = s3.get_object().bucket("bkt").key(key).if_match(&etag).send().await;
        assert!(ok.is_ok());
        assert_eq!(
            code(s3.get_object().bucket("bkt").key(key).if_match("\"nope\"").send().await),
            "PreconditionFailed"
        );
        let not_modified = s3.get_object().bucket("bkt").key(key).if_none_match(&etag).send().await;
        let status = not_modified.expect_err("304").raw_response().map(|r| r.status().as_u16());
        assert_eq!(status, Some(304));
        let future = aws_smithy_types::DateTime::from_secs(time::OffsetDateTime::now_utc().unix_timestamp() + 3600);
        let past = aws_smithy_types::DateTime::from_secs(1_000_000_000);
        let r = s3.head_object().bucket("bkt").key(key).if_modified_since(future).send().await;
        assert_eq!(r.expect_err("304").raw_response().map(|r| r.status().as_u16()), Some(304));
        assert!(s3.get_object().bucket("bkt").key(key).if_modified_since(past).send().await.is_ok());
        let r = s3.get_object().bucket("bkt").key(key).if_unmodified_since(past).send().await;
        assert_eq!(code(r), "PreconditionFailed");
    }
    // Conditional writes.
    let r =
        s3.put_object().bucket("bkt").key("small").if_none_match("*").body(ByteStream::from_static(b"x")).send().await;
    assert_eq!(code(r), "PreconditionFailed");
    s3.put_object()
        .bucket("bkt")
        .key("fresh")
        .if_none_match("*")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("create-only put");
    let r = s3
        .put_object()
        .bucket("bkt")
        .key("fresh")
        .if_match("\"other\"")
        .body(ByteStream::from_static(b"y"))
        .send()
        .await;
    assert_eq!(code(r), "PreconditionFailed");
    assert_eq!(get(&s3, "bkt", "fresh").await, b"x");
    // If-Match on a key that does not exist: AWS's NoSuchKey, nothing stored.
    let r = s3.put_object().bucket("bkt").key("absent").if_match("*").body(ByteStream::from_static(b"z")).send().await;
    assert_eq!(code(r), "NoSuchKey");
    assert_eq!(code(s3.head_object().bucket("bkt").key("absent").send().await), "NotFound");
    server.shutdown().await;
}

#[tokio::test]
async fn digests_are_verified() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    let r = s3
        .put_object()
        .bucket("bkt")
        .key("k")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await;
    assert_eq!(code(r), "BadDigest");
    let r = s3
        .put_object()
        .bucket("bkt")
        .key("k")
        .content_md5("XUFAKrxLKna5cZ2REBfFkg==")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await;
    assert!(r.is_ok(), "{r:?}");
    let r = s3
        .put_object()
        .bucket("bkt")
        .key("c")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await;
    assert_eq!(code(r), "BadDigest");
    let r = s3
        .put_object()
        .bucket("bkt")
        .key("c")
        .checksum_sha256("LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(code(s3.get_object().bucket("bkt").key("c-failed").send().await), "NoSuchKey");
    // A rejected big upload leaves no blob behind.
    let r = s3
        .put_object()
        .bucket("bkt")
        .key("big")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from(pattern(2 * MIB, 1)))
        .send()
        .await;
    assert_eq!(code(r), "BadDigest");
    let blobs = walk_files(&server.dir.path().join("s3").join("blobs"));
    assert_eq!(blobs, 0, "only inline objects exist, so no blob files");
    server.shutdown().await;
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| if e.path().is_dir() { walk_files(&e.path()) } else { 1 }).sum())
        .unwrap_or(0)
}

#[tokio::test]
async fn delete_objects_and_malformed_xml() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    for k in ["x", "y", "z"] {
        put(&s3, "bkt", k, b"1".to_vec()).await;
    }
    let ids = ["x", "y", "never"].map(|k| ObjectIdentifier::builder().key(k).build().unwrap());
    let out = s3
        .delete_objects()
        .bucket("bkt")
        .delete(Delete::builder().set_objects(Some(ids.to_vec())).build().unwrap())
        .send()
        .await
        .expect("delete objects");
    assert_eq!(out.deleted().len(), 3);
    let left: Vec<_> = s3
        .list_objects_v2()
        .bucket("bkt")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(left, vec!["z"]);

    let too_many: Vec<_> =
        (0..1001).map(|i| ObjectIdentifier::builder().key(format!("k{i}")).build().unwrap()).collect();
    let r = s3
        .delete_objects()
        .bucket("bkt")
        .delete(Delete::builder().set_objects(Some(too_many)).build().unwrap())
        .send()
        .await;
    assert_eq!(code(r), "MalformedXML");

    let (status, body) = raw(&server, "POST", "/bkt", "delete=", b"<Delete><Object><Key>z</Key>".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MalformedXML"), "{body}");
    let (status, body) = raw(&server, "POST", "/bkt", "delete=", b"not xml at all".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    // Oversized XML bodies are refused without being buffered whole.
    let huge = vec![b'a'; 21 * MIB];
    let (status, body) = raw(&server, "POST", "/bkt", "delete=", huge).await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(get(&s3, "bkt", "z").await, b"1");
    server.shutdown().await;
}

#[tokio::test]
async fn copy_object() {
    let (server, s3) = start().await;
    bucket(&s3, "src").await;
    bucket(&s3, "dst").await;
    let big = pattern(2 * MIB, 9);
    s3.put_object()
        .bucket("src")
        .key("big")
        .body(ByteStream::from(big.clone()))
        .metadata("a", "1")
        .content_type("text/plain")
        .send()
        .await
        .unwrap();
    put(&s3, "src", "small", b"tiny".to_vec()).await;
    let out = s3.copy_object().bucket("dst").key("copy").copy_source("src/big").send().await.expect("copy");
    assert_eq!(out.copy_object_result().and_then(|r| r.e_tag()), Some(format!("\"{}\"", md5_hex(&big)).as_str()));
    let head = s3.head_object().bucket("dst").key("copy").send().await.unwrap();
    assert_eq!(head.metadata().and_then(|m| m.get("a")).map(String::as_str), Some("1"));
    assert_eq!(head.content_type(), Some("text/plain"));
    s3.copy_object()
        .bucket("dst")
        .key("replaced")
        .copy_source("src/small")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("b", "2")
        .send()
        .await
        .expect("copy replace");
    let head = s3.head_object().bucket("dst").key("replaced").send().await.unwrap();
    assert_eq!(head.metadata().and_then(|m| m.get("b")).map(String::as_str), Some("2"));
    // The copy survives the source's deletion (blobs are shared, not moved).
    s3.delete_object().bucket("src").key("big").send().await.unwrap();
    assert_eq!(get(&s3, "dst", "copy").await, big);
    assert_eq!(get(&s3, "dst", "replaced").await, b"tiny");
    assert_eq!(code(s3.copy_object().bucket("dst").key("x").copy_source("src/missing").send().await), "NoSuchKey");
    assert_eq!(
        code(s3.copy_object().bucket("src").key("small").copy_source("src/small").send().await),
        "InvalidRequest"
    );
    let r =
        s3.copy_object().bucket("dst").key("x").copy_source("src/small").copy_source_if_match("\"nope\"").send().await;
    assert_eq!(code(r), "PreconditionFailed");
    server.shutdown().await;
}

#[tokio::test]
async fn listing_v1_v2_and_versions() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    let keys = ["a/1", "a/2", "a/b/3", "b/1", "c", "d"];
    for k in keys {
        put(&s3, "bkt", k, b"x".to_vec()).await;
    }
    let out = s3.list_objects_v2().bucket("bkt").delimiter("/").send().await.unwrap();
    let prefixes: Vec<_> = out.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    let objects: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(prefixes, vec!["a/", "b/"]);
    assert_eq!(objects, vec!["c", "d"]);
    let out = s3.list_objects_v2().bucket("bkt").prefix("a/").delimiter("/").send().await.unwrap();
    assert_eq!(out.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(), vec!["a/1", "a/2"]);
    assert_eq!(out.common_prefixes().iter().filter_map(|p| p.prefix()).collect::<Vec<_>>(), vec!["a/b/"]);

    // Page through with max-keys 1, with and without a delimiter.
    for delimiter in [None, Some("/")] {
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let out = s3
                .list_objects_v2()
                .bucket("bkt")
                .max_keys(1)
                .set_delimiter(delimiter.map(str::to_owned))
                .set_continuation_token(token.clone())
                .send()
                .await
                .unwrap();
            seen.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            seen.extend(out.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)));
            if out.is_truncated() != Some(true) {
                break;
            }
            token = out.next_continuation_token().map(str::to_owned);
        }
        let expected: Vec<String> = match delimiter {
            None => keys.iter().map(|k| k.to_string()).collect(),
            Some(_) => ["a/", "b/", "c", "d"].iter().map(|k| k.to_string()).collect(),
        };
        assert_eq!(seen, expected, "{delimiter:?}");
    }
    let out = s3.list_objects_v2().bucket("bkt").start_after("b/1").send().await.unwrap();
    assert_eq!(out.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(), vec!["c", "d"]);
    let r = s3.list_objects_v2().bucket("bkt").continuation_token("!!not-a-token!!").send().await;
    assert_eq!(code(r), "InvalidArgument");

    let out = s3.list_objects().bucket("bkt").marker("a/b/3").max_keys(2).send().await.unwrap();
    assert_eq!(out.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(), vec!["b/1", "c"]);
    assert_eq!(out.is_truncated(), Some(true));

    let out = s3.list_object_versions().bucket("bkt").prefix("a/").send().await.unwrap();
    let versions = out.versions();
    assert_eq!(versions.len(), 3);
    assert!(versions.iter().all(|v| v.version_id() == Some("null") && v.is_latest() == Some(true)));
    server.shutdown().await;
}

#[tokio::test]
async fn multipart_upload() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    let part1 = pattern(5 * MIB, 1);
    let part2 = pattern(1234, 2);
    let id = s3
        .create_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .content_type("video/mp4")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let up = |n: i32, data: Vec<u8>| {
        s3.upload_part().bucket("bkt").key("mp").upload_id(&id).part_number(n).body(ByteStream::from(data)).send()
    };
    let e1 = up(1, part1.clone()).await.unwrap().e_tag().unwrap().to_owned();
    let e2 = up(2, part2.clone()).await.unwrap().e_tag().unwrap().to_owned();
    let parts = s3.list_parts().bucket("bkt").key("mp").upload_id(&id).send().await.unwrap();
    assert_eq!(parts.parts().iter().map(|p| p.size().unwrap_or(0)).collect::<Vec<_>>(), vec![5 * MIB as i64, 1234]);
    let uploads = s3.list_multipart_uploads().bucket("bkt").send().await.unwrap();
    assert_eq!(uploads.uploads().iter().filter_map(|u| u.upload_id()).collect::<Vec<_>>(), vec![id.as_str()]);

    let completed = |list: &[(i32, &str)]| {
        CompletedMultipartUpload::builder()
            .set_parts(Some(
                list.iter().map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build()).collect(),
            ))
            .build()
    };
    let complete = |list: CompletedMultipartUpload| {
        s3.complete_multipart_upload().bucket("bkt").key("mp").upload_id(&id).multipart_upload(list).send()
    };
    assert_eq!(code(complete(completed(&[(2, &e2), (1, &e1)])).await), "InvalidPartOrder");
    assert_eq!(code(complete(completed(&[(1, "\"bogus\""), (2, &e2)])).await), "InvalidPart");
    assert_eq!(code(complete(completed(&[(1, &e1), (3, &e2)])).await), "InvalidPart");
    let out = complete(completed(&[(1, &e1), (2, &e2)])).await.expect("complete");
    assert!(out.e_tag().is_some_and(|e| e.ends_with("-2\"")), "{:?}", out.e_tag());
    let mut whole = part1.clone();
    whole.extend_from_slice(&part2);
    assert_eq!(get(&s3, "bkt", "mp").await, whole);
    let head = s3.head_object().bucket("bkt").key("mp").send().await.unwrap();
    assert_eq!(head.content_type(), Some("video/mp4"));
    // partNumber reads one part (206), as part-wise downloaders do.
    let second = s3.get_object().bucket("bkt").key("mp").part_number(2).send().await.expect("part 2");
    assert_eq!(second.content_length(), Some(1234));
    assert_eq!(second.parts_count(), Some(2));
    let total = whole.len();
    assert_eq!(second.content_range(), Some(format!("bytes {}-{}/{total}", 5 * MIB, total - 1).as_str()));
    assert_eq!(second.body.collect().await.expect("body").into_bytes().as_ref(), &part2[..]);
    let first = s3.head_object().bucket("bkt").key("mp").part_number(1).send().await.expect("head part 1");
    assert_eq!(first.content_length(), Some(5 * MIB as i64));
    assert_eq!(code(s3.get_object().bucket("bkt").key("mp").part_number(3).send().await), "InvalidPartNumber");
    let both = s3.get_object().bucket("bkt").key("mp").part_number(1).range("bytes=0-1").send().await;
    assert_eq!(code(both), "InvalidRequest");
    // An object stored without a type reads as AWS's binary/octet-stream.
    let (status, _) = raw(&server, "PUT", "/bkt/untyped", "", b"bytes".to_vec()).await;
    assert_eq!(status, 200);
    let untyped = s3.head_object().bucket("bkt").key("untyped").send().await.unwrap();
    assert_eq!(untyped.content_type(), Some("binary/octet-stream"));
    assert_eq!(code(s3.list_parts().bucket("bkt").key("mp").upload_id(&id).send().await), "NoSuchUpload");
    assert!(s3.list_multipart_uploads().bucket("bkt").send().await.unwrap().uploads().is_empty());

    // Too-small parts, abort, unknown uploads, upload-part-copy.
    let id2 =
        s3.create_multipart_upload().bucket("bkt").key("small").send().await.unwrap().upload_id().unwrap().to_owned();
    let up2 = |n: i32, data: Vec<u8>| {
        s3.upload_part().bucket("bkt").key("small").upload_id(&id2).part_number(n).body(ByteStream::from(data)).send()
    };
    let a = up2(1, vec![1; 100]).await.unwrap().e_tag().unwrap().to_owned();
    let b = up2(2, vec![2; 100]).await.unwrap().e_tag().unwrap().to_owned();
    let r = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("small")
        .upload_id(&id2)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(a).build())
                .parts(CompletedPart::builder().part_number(2).e_tag(b).build())
                .build(),
        )
        .send()
        .await;
    assert_eq!(code(r), "EntityTooSmall");
    let r = s3
        .upload_part()
        .bucket("bkt")
        .key("small")
        .upload_id(&id2)
        .part_number(10001)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(code(r), "InvalidArgument");
    let copied = s3
        .upload_part_copy()
        .bucket("bkt")
        .key("small")
        .upload_id(&id2)
        .part_number(3)
        .copy_source("bkt/mp")
        .copy_source_range("bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(
        copied.copy_part_result().and_then(|r| r.e_tag()),
        Some(format!("\"{}\"", md5_hex(&whole[..10])).as_str())
    );
    s3.abort_multipart_upload().bucket("bkt").key("small").upload_id(&id2).send().await.expect("abort");
    assert_eq!(
        code(s3.abort_multipart_upload().bucket("bkt").key("small").upload_id(&id2).send().await),
        "NoSuchUpload"
    );
    let r = s3
        .upload_part()
        .bucket("bkt")
        .key("small")
        .upload_id("deadbeef")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(code(r), "NoSuchUpload");
    server.shutdown().await;
}

#[tokio::test]
async fn complete_multipart_rejects_malformed_xml() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    let id = s3.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap().upload_id().unwrap().to_owned();
    let query = format!("uploadId={id}");
    let (status, body) = raw(&server, "POST", "/bkt/k", &query, b"<CompleteMultipartUpload><Part>".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MalformedXML"), "{body}");
    let (status, body) =
        raw(&server, "POST", "/bkt/k", &query, b"<CompleteMultipartUpload></CompleteMultipartUpload>".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    // The upload is still there after the bad requests.
    assert!(s3.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn authentication_and_anonymous_reads() {
    let (server, s3) = start().await;
    let public = server.config.buckets.public.clone();
    let private = server.config.buckets.private.clone();
    bucket(&s3, &public).await;
    bucket(&s3, &private).await;
    put(&s3, &public, "avatar", b"public bytes".to_vec()).await;
    put(&s3, &private, "orig", b"secret bytes".to_vec()).await;

    let wrong_secret = common::s3_client(&server.endpoint(), ACCESS_KEY, "not-the-secret").await;
    assert_eq!(code(wrong_secret.list_buckets().send().await), "SignatureDoesNotMatch");
    let unknown = common::s3_client(&server.endpoint(), "nobody", SECRET_KEY).await;
    assert_eq!(code(unknown.list_buckets().send().await), "InvalidAccessKeyId");

    let http = reqwest::Client::new();
    let ep = server.endpoint();
    let r = http.get(format!("{ep}/{public}/avatar")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"public bytes");
    assert_eq!(http.head(format!("{ep}/{public}/avatar")).send().await.unwrap().status(), 200);
    let r = http.get(format!("{ep}/{private}/orig")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("AccessDenied"));
    assert_eq!(http.put(format!("{ep}/{public}/evil")).body("x").send().await.unwrap().status(), 403);
    assert_eq!(http.delete(format!("{ep}/{public}/avatar")).send().await.unwrap().status(), 403);
    assert_eq!(http.get(format!("{ep}/{public}")).send().await.unwrap().status(), 403);
    assert_eq!(http.get(format!("{ep}/")).send().await.unwrap().status(), 403);
    // An anonymous link may not ask for other response headers (text/html).
    let r = http.get(format!("{ep}/{public}/avatar?response-content-type=text%2Fhtml")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("<Code>InvalidRequest</Code>"));

    // Presigned URLs work for GET and PUT, and a tampered one does not.
    let presign = PresigningConfig::expires_in(std::time::Duration::from_secs(300)).unwrap();
    let url = s3.get_object().bucket(&private).key("orig").presigned(presign.clone()).await.unwrap().uri().to_owned();
    assert_eq!(http.get(&url).send().await.unwrap().bytes().await.unwrap().as_ref(), b"secret bytes");
    let tampered = url.replace("orig", "orig2");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    let put_url = s3.put_object().bucket(&private).key("via-url").presigned(presign).await.unwrap().uri().to_owned();
    assert_eq!(http.put(&put_url).body("presigned!").send().await.unwrap().status(), 200);
    assert_eq!(get(&s3, &private, "via-url").await, b"presigned!");
    server.shutdown().await;
}

#[tokio::test]
async fn virtual_host_style() {
    let (server, s3) = start().await;
    let public = server.config.buckets.public.clone();
    bucket(&s3, &public).await;
    bucket(&s3, "vhost").await;
    put(&s3, &public, "pic", b"vh public".to_vec()).await;
    put(&s3, "vhost", "doc", b"vh private".to_vec()).await;
    let ep = server.endpoint();
    let port = ep.rsplit(':').next().unwrap().to_owned();
    let http = reqwest::Client::new();
    let r = http.get(format!("{ep}/pic")).header("host", format!("{public}.localhost:{port}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"vh public");
    // Signed virtual-host request for a private bucket.
    let host = format!("vhost.localhost:{port}");
    let mut req = http.get(format!("{ep}/doc"));
    for (k, v) in sign::headers("GET", &host, "/doc", "", b"", time::OffsetDateTime::now_utc()) {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"vh private");
    server.shutdown().await;
}

#[tokio::test]
async fn restart_keeps_every_acknowledged_object() {
    let mut server = TestServer::start(&[Role::S3]).await;
    let s3 = server.s3().await;
    bucket(&s3, "bkt").await;
    let small = pattern(100, 1);
    let big = pattern(2 * MIB, 2);
    put(&s3, "bkt", "small", small.clone()).await;
    put(&s3, "bkt", "big", big.clone()).await;
    put(&s3, "bkt", "gone", b"x".to_vec()).await;
    s3.delete_object().bucket("bkt").key("gone").send().await.unwrap();
    let id = s3.create_multipart_upload().bucket("bkt").key("mp").send().await.unwrap().upload_id().unwrap().to_owned();
    s3.upload_part()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .unwrap();
    server.restart().await;
    let s3 = server.s3().await;
    assert_eq!(get(&s3, "bkt", "small").await, small);
    assert_eq!(get(&s3, "bkt", "big").await, big);
    assert_eq!(code(s3.get_object().bucket("bkt").key("gone").send().await), "NoSuchKey");
    let parts = s3.list_parts().bucket("bkt").key("mp").upload_id(&id).send().await.unwrap();
    assert_eq!(parts.parts().len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn start_sweeps_crash_leftovers() {
    let server = TestServer::start(&[Role::S3]).await;
    let s3 = server.s3().await;
    bucket(&s3, "bkt").await;
    let big = pattern(MIB, 4);
    put(&s3, "bkt", "keep", big.clone()).await;
    let TestServer { app, config, dir, roles } = server;
    if let Some(app) = app {
        app.shutdown().await;
    }
    // What a crash mid-upload leaves: a temp file and a blob no record names.
    let root = dir.path().join("s3");
    std::fs::write(root.join("tmp").join("partial"), b"half an upload").unwrap();
    let orphan = root.join("blobs").join("ab").join("ab000000000000000000000000000000");
    std::fs::write(&orphan, b"renamed but never recorded").unwrap();
    let server = TestServer::start_with(config, dir, &roles).await;
    assert!(!orphan.exists());
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    let s3 = server.s3().await;
    assert_eq!(get(&s3, "bkt", "keep").await, big);
    server.shutdown().await;
}

/// UploadPartCopy streams its range from the source file (in chunks, never
/// whole in memory): ranges across chunk boundaries and whole objects come
/// out byte for byte, with each part's MD5 as its ETag.
#[tokio::test]
async fn upload_part_copy_streams_ranges_and_whole_objects() {
    let (server, s3) = start().await;
    bucket(&s3, "bkt").await;
    let source: Vec<u8> =
        (0..6 * 1024 * 1024 + 321).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    put(&s3, "bkt", "src", source.clone()).await;
    let id =
        s3.create_multipart_upload().bucket("bkt").key("dst").send().await.unwrap().upload_id().unwrap().to_owned();
    let (first, last) = (100_000usize, 5 * 1024 * 1024 + 100_000);
    let mut etags = Vec::new();
    for (n, range) in [(1, Some(format!("bytes={first}-{last}"))), (2, None)] {
        let out = s3
            .upload_part_copy()
            .bucket("bkt")
            .key("dst")
            .upload_id(&id)
            .part_number(n)
            .copy_source("bkt/src")
            .set_copy_source_range(range)
            .send()
            .await
            .expect("part copy");
        etags.push(out.copy_part_result().and_then(|r| r.e_tag()).expect("etag").to_owned());
    }
    assert_eq!(etags[0], format!("\"{}\"", md5_hex(&source[first..=last])));
    assert_eq!(etags[1], format!("\"{}\"", md5_hex(&source)));
    let parts = [(1, etags[0].as_str()), (2, etags[1].as_str())];
    s3.complete_multipart_upload()
        .bucket("bkt")
        .key("dst")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(
                    parts.iter().map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build()).collect(),
                ))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    let mut want = source[first..=last].to_vec();
    want.extend_from_slice(&source);
    assert_eq!(get(&s3, "bkt", "dst").await, want);
    // A range past the end of the source is refused, not truncated.
    let r = s3
        .upload_part_copy()
        .bucket("bkt")
        .key("dst2")
        .upload_id(&id)
        .part_number(3)
        .copy_source("bkt/src")
        .copy_source_range(format!("bytes=0-{}", source.len()))
        .send()
        .await;
    assert!(r.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn delete_bucket_aborts_its_incomplete_uploads() {
    let (server, s3) = start().await;
    bucket(&s3, "mpu").await;
    let up = s3.create_multipart_upload().bucket("mpu").key("big").send().await.expect("create");
    let id = up.upload_id().expect("id").to_owned();
    s3.upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(pattern(MIB, 1)))
        .send()
        .await
        .expect("part");
    s3.delete_bucket().bucket("mpu").send().await.expect("delete bucket with an incomplete upload");
    assert_eq!(code(s3.list_multipart_uploads().bucket("mpu").send().await), "NoSuchBucket");
    bucket(&s3, "mpu").await;
    let uploads = s3.list_multipart_uploads().bucket("mpu").send().await.expect("list");
    assert!(uploads.uploads().is_empty(), "the upload went with its bucket");
    let parts = s3.list_parts().bucket("mpu").key("big").upload_id(&id).send().await;
    assert_eq!(code(parts), "NoSuchUpload");
    server.shutdown().await;
}

#[tokio::test]
async fn listing_edge_cases_match_aws() {
    let (server, s3) = start().await;
    bucket(&s3, "lst").await;
    for key in ["a/1", "a/2", "b", "line\nbreak"] {
        put(&s3, "lst", key, b"x".to_vec()).await;
    }
    let zero = s3.list_objects_v2().bucket("lst").max_keys(0).send().await.expect("max-keys 0");
    assert!(zero.contents().is_empty() && zero.common_prefixes().is_empty());
    assert_eq!(zero.is_truncated(), Some(false));
    let v1 = s3.list_objects().bucket("lst").delimiter("").send().await.expect("empty delimiter");
    assert_eq!(v1.delimiter(), None, "an empty delimiter is no delimiter");
    assert_eq!(v1.contents().len(), 4);
    assert_eq!(v1.marker(), Some(""), "v1 echoes an empty marker");
    let (_, xml) = raw(&server, "GET", "/lst", "list-type=2", Vec::new()).await;
    assert!(!xml.contains("<Owner>"), "v2 names owners only with fetch-owner: {xml}");
    let (_, xml) = raw(&server, "GET", "/lst", "fetch-owner=true&list-type=2", Vec::new()).await;
    assert!(xml.contains("<Owner>"), "{xml}");
    let plain = s3.list_objects_v2().bucket("lst").prefix("line").send().await.expect("plain keys");
    assert_eq!(plain.contents()[0].key(), Some("line\nbreak"));
    let (_, xml) = raw(&server, "GET", "/lst", "encoding-type=url&list-type=2&prefix=line", Vec::new()).await;
    assert!(xml.contains("<Key>line%0Abreak</Key>"), "{xml}");
    server.shutdown().await;
}

#[tokio::test]
async fn aws_chunked_is_not_kept_as_a_content_encoding() {
    let (server, s3) = start().await;
    bucket(&s3, "enc").await;
    s3.put_object()
        .bucket("enc")
        .key("z")
        .content_encoding("gzip, aws-chunked")
        .body(ByteStream::from_static(b"gz"))
        .send()
        .await
        .expect("put");
    let head = s3.head_object().bucket("enc").key("z").send().await.expect("head");
    assert_eq!(head.content_encoding(), Some("gzip"));
    server.shutdown().await;
}

/// A PUT in `Transfer-Encoding: chunked` with no Content-Length, over a raw
/// socket (reqwest and the SDK always send a length): the signature signs
/// `signed_body`'s hash; `chunks` are sent as HTTP chunks, and the
/// terminating zero chunk only when `complete`. Returns (status, response).
async fn chunked_put(
    server: &TestServer,
    path: &str,
    signed_body: &[u8],
    chunks: &[&[u8]],
    complete: bool,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = server.endpoint().trim_start_matches("http://").to_owned();
    let mut req = format!("PUT {path} HTTP/1.1\r\n");
    for (k, v) in sign::headers("PUT", &host, path, "", signed_body, time::OffsetDateTime::now_utc()) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    let mut sock = tokio::net::TcpStream::connect(&host).await.expect("connect");
    sock.write_all(req.as_bytes()).await.expect("head");
    for chunk in chunks {
        sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.expect("size");
        sock.write_all(chunk).await.expect("chunk");
        sock.write_all(b"\r\n").await.expect("crlf");
    }
    if complete {
        sock.write_all(b"0\r\n\r\n").await.expect("last chunk");
    } else {
        sock.write_all(b"4000\r\npartial").await.expect("cut chunk");
        sock.shutdown().await.expect("half-close");
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), sock.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    (text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), text)
}

#[tokio::test]
async fn chunked_put_without_content_length_is_stored() {
    let (server, s3) = start().await;
    bucket(&s3, "chunky").await;
    // Small (inline) and large (a blob, many chunks) bodies.
    for (key, body) in [("small", pattern(1000, 1)), ("large", pattern(3 * MIB + 17, 2))] {
        let chunks: Vec<&[u8]> = body.chunks(40_000).collect();
        let (status, resp) = chunked_put(&server, &format!("/chunky/{key}"), &body, &chunks, true).await;
        assert_eq!(status, 200, "{resp}");
        assert!(resp.contains(&format!("\"{}\"", md5_hex(&body))), "ETag is the body's MD5: {resp}");
        assert_eq!(get(&s3, "chunky", key).await, body);
        let head = s3.head_object().bucket("chunky").key(key).send().await.expect("head");
        assert_eq!(head.content_length(), Some(body.len() as i64));
    }
    // The signature still binds the body: other bytes than the signed ones are refused.
    let (status, resp) = chunked_put(&server, "/chunky/forged", b"signed", &[b"other"], true).await;
    assert_eq!(status, 400, "{resp}");
    assert!(resp.contains("<Code>XAmzContentSHA256Mismatch</Code>"), "{resp}");
    // A body cut off before its last chunk stores nothing.
    let (status, _) = chunked_put(&server, "/chunky/cut", b"whatever", &[b"first"], false).await;
    assert_ne!(status, 200);
    for key in ["forged", "cut"] {
        assert_eq!(code(s3.head_object().bucket("chunky").key(key).send().await), "NotFound", "{key}");
    }
    // Nothing spooled is left in the store's temp dir.
    let tmp = server.config.data_dir.join("s3").join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("tmp dir").collect();
    assert!(left.is_empty(), "spool files left: {left:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn object_and_bucket_tagging() {
    use aws_sdk_s3::types::{Tag, Tagging};
    let (server, s3) = start().await;
    bucket(&s3, "tags").await;
    s3.put_object()
        .bucket("tags")
        .key("k")
        .tagging("team=avatars&env=dev%20box")
        .body(ByteStream::from_static(b"v"))
        .send()
        .await
        .expect("put with tags");
    let got = s3.get_object_tagging().bucket("tags").key("k").send().await.expect("get tags");
    let pairs: Vec<(&str, &str)> = got.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(pairs, [("team", "avatars"), ("env", "dev box")]);
    let obj = s3.get_object().bucket("tags").key("k").send().await.expect("get");
    assert_eq!(obj.tag_count(), Some(2));
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().expect("tag");
    let one = Tagging::builder().tag_set(tag("only", "one")).build().expect("tagging");
    s3.put_object_tagging().bucket("tags").key("k").tagging(one).send().await.expect("put tags");
    s3.copy_object().bucket("tags").key("copy").copy_source("tags/k").send().await.expect("copy");
    let copied = s3.get_object_tagging().bucket("tags").key("copy").send().await.expect("copy tags");
    assert_eq!(copied.tag_set().len(), 1, "CopyObject copies tags by default");
    // Tags change the record, never the bytes.
    assert_eq!(get(&s3, "tags", "k").await, b"v");
    s3.delete_object_tagging().bucket("tags").key("k").send().await.expect("delete tags");
    assert!(s3.get_object_tagging().bucket("tags").key("k").send().await.expect("get").tag_set().is_empty());
    let eleven = Tagging::builder().set_tag_set(Some((0..11).map(|i| tag(&format!("k{i}"), "v")).collect())).build();
    let r = s3.put_object_tagging().bucket("tags").key("k").tagging(eleven.expect("tagging")).send().await;
    assert_eq!(code(r), "InvalidTag");
    let dup = Tagging::builder().tag_set(tag("a", "1")).tag_set(tag("a", "2")).build().expect("tagging");
    assert_eq!(code(s3.put_object_tagging().bucket("tags").key("k").tagging(dup).send().await), "InvalidTag");
    let none = s3.get_object_tagging().bucket("tags").key("missing").send().await;
    assert_eq!(code(none), "NoSuchKey");

    assert_eq!(code(s3.get_bucket_tagging().bucket("tags").send().await), "NoSuchTagSet");
    let bt = Tagging::builder().tag_set(tag("cost", "center")).build().expect("tagging");
    s3.put_bucket_tagging().bucket("tags").tagging(bt).send().await.expect("put bucket tags");
    let got = s3.get_bucket_tagging().bucket("tags").send().await.expect("bucket tags");
    assert_eq!(got.tag_set()[0].key(), "cost");
    s3.delete_bucket_tagging().bucket("tags").send().await.expect("delete bucket tags");
    assert_eq!(code(s3.get_bucket_tagging().bucket("tags").send().await), "NoSuchTagSet");
    assert_eq!(code(s3.get_bucket_tagging().bucket("nope").send().await), "NoSuchBucket");
    // Bad XML is refused, not half-applied.
    let (status, body) = raw(&server, "PUT", "/tags/k", "tagging=", b"<Tagging><TagSet>".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn unconfigured_bucket_subresources_answer_as_aws() {
    let (server, s3) = start().await;
    bucket(&s3, "sub").await;
    put(&s3, "sub", "k", b"v".to_vec()).await;
    let v = s3.get_bucket_versioning().bucket("sub").send().await.expect("versioning");
    assert!(v.status().is_none());
    let acl = s3.get_bucket_acl().bucket("sub").send().await.expect("acl");
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(acl.grants()[0].permission().map(|p| p.as_str()), Some("FULL_CONTROL"));
    let oacl = s3.get_object_acl().bucket("sub").key("k").send().await.expect("object acl");
    assert_eq!(oacl.owner().and_then(|o| o.id()), acl.owner().and_then(|o| o.id()));
    use aws_sdk_s3::types::{BucketCannedAcl, ObjectCannedAcl};
    s3.put_bucket_acl().bucket("sub").acl(BucketCannedAcl::Private).send().await.expect("private bucket acl");
    s3.put_object_acl().bucket("sub").key("k").acl(ObjectCannedAcl::Private).send().await.expect("private acl");
    let public = s3.put_bucket_acl().bucket("sub").acl(BucketCannedAcl::PublicRead).send().await;
    assert_eq!(code(public), "NotImplemented");
    assert_eq!(code(s3.get_bucket_policy().bucket("sub").send().await), "NoSuchBucketPolicy");
    assert_eq!(
        code(s3.get_bucket_encryption().bucket("sub").send().await),
        "ServerSideEncryptionConfigurationNotFoundError"
    );
    assert_eq!(
        code(s3.get_bucket_lifecycle_configuration().bucket("sub").send().await),
        "NoSuchLifecycleConfiguration"
    );
    assert_eq!(code(s3.get_bucket_website().bucket("sub").send().await), "NoSuchWebsiteConfiguration");
    assert_eq!(
        code(s3.get_object_lock_configuration().bucket("sub").send().await),
        "ObjectLockConfigurationNotFoundError"
    );
    assert_eq!(code(s3.get_public_access_block().bucket("sub").send().await), "NoSuchPublicAccessBlockConfiguration");
    assert_eq!(code(s3.get_bucket_ownership_controls().bucket("sub").send().await), "OwnershipControlsNotFoundError");
    assert_eq!(code(s3.get_bucket_replication().bucket("sub").send().await), "ReplicationConfigurationNotFoundError");
    assert!(s3.get_bucket_logging().bucket("sub").send().await.expect("logging").logging_enabled().is_none());
    s3.get_bucket_accelerate_configuration().bucket("sub").send().await.expect("accelerate");
    let pay = s3.get_bucket_request_payment().bucket("sub").send().await.expect("request payment");
    assert_eq!(pay.payer().map(|p| p.as_str()), Some("BucketOwner"));
    assert_eq!(code(s3.get_bucket_versioning().bucket("nope").send().await), "NoSuchBucket");
    assert_eq!(code(s3.get_bucket_policy().bucket("nope").send().await), "NoSuchBucket");
    server.shutdown().await;
}

#[tokio::test]
async fn get_object_attributes() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectAttributes};
    let (server, s3) = start().await;
    bucket(&s3, "attr").await;
    s3.put_object()
        .bucket("attr")
        .key("one")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .expect("put");
    let a = s3
        .get_object_attributes()
        .bucket("attr")
        .key("one")
        .object_attributes(ObjectAttributes::ObjectSize)
        .object_attributes(ObjectAttributes::Etag)
        .object_attributes(ObjectAttributes::Checksum)
        .send()
        .await
        .expect("attributes");
    assert_eq!(a.object_size(), Some(5));
    assert_eq!(a.e_tag().map(|e| e.trim_matches('"')), Some(md5_hex(b"hello").as_str()));
    assert!(a.checksum().and_then(|c| c.checksum_sha256()).is_some());
    assert!(a.object_parts().is_none() && a.storage_class().is_none(), "only what was asked for");
    let up = s3.create_multipart_upload().bucket("attr").key("mp").send().await.expect("create");
    let id = up.upload_id().expect("id").to_owned();
    let mut done = Vec::new();
    for (n, len) in [(1, 5 * MIB), (2, 1000)] {
        let p = s3
            .upload_part()
            .bucket("attr")
            .key("mp")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(pattern(len, n as u8)))
            .send()
            .await
            .expect("part");
        done.push(CompletedPart::builder().part_number(n).e_tag(p.e_tag().unwrap_or_default()).build());
    }
    let parts = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
    s3.complete_multipart_upload()
        .bucket("attr")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(parts)
        .send()
        .await
        .expect("complete");
    let a = s3
        .get_object_attributes()
        .bucket("attr")
        .key("mp")
        .object_attributes(ObjectAttributes::ObjectParts)
        .max_parts(1)
        .send()
        .await
        .expect("parts");
    let p = a.object_parts().expect("parts of a multipart object");
    assert_eq!(p.total_parts_count(), Some(2));
    assert_eq!(p.is_truncated(), Some(true));
    assert_eq!(p.parts()[0].size(), Some(5 * MIB as i64));
    let missing =
        s3.get_object_attributes().bucket("attr").key("nope").object_attributes(ObjectAttributes::Etag).send().await;
    assert_eq!(code(missing), "NoSuchKey");
    server.shutdown().await;
}

#[tokio::test]
async fn cors_rules_answer_preflights_and_decorate_responses() {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let (server, s3) = start().await;
    bucket(&s3, "web").await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str, method: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}/web/avatar.png", server.endpoint()))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let before = preflight("https://app.example", "PUT").await.expect("preflight");
    assert_eq!(before.status(), 403, "no rules, no CORS");
    assert_eq!(code(s3.get_bucket_cors().bucket("web").send().await), "NoSuchCORSConfiguration");
    let rule = CorsRule::builder()
        .allowed_origins("https://app.example")
        .allowed_methods("PUT")
        .allowed_methods("GET")
        .allowed_headers("content-*")
        .expose_headers("ETag")
        .max_age_seconds(600)
        .build()
        .expect("rule");
    let config = CorsConfiguration::builder().cors_rules(rule).build().expect("config");
    s3.put_bucket_cors().bucket("web").cors_configuration(config).send().await.expect("put cors");
    let got = s3.get_bucket_cors().bucket("web").send().await.expect("get cors");
    assert_eq!(got.cors_rules()[0].allowed_methods(), ["PUT", "GET"]);
    let ok = preflight("https://app.example", "PUT").await.expect("preflight");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(ok.headers()["access-control-allow-headers"], "content-type");
    assert_eq!(ok.headers()["access-control-max-age"], "600");
    assert_eq!(preflight("https://evil.example", "PUT").await.expect("preflight").status(), 403);
    assert_eq!(preflight("https://app.example", "DELETE").await.expect("preflight").status(), 403);
    let no_origin = http.request(reqwest::Method::OPTIONS, format!("{}/web/x", server.endpoint())).send().await;
    assert_eq!(no_origin.expect("options").status(), 400);
    // An actual (signed) request from an allowed origin gets the headers; others do not.
    put(&s3, "web", "k", b"v".to_vec()).await;
    let url = s3
        .get_object()
        .bucket("web")
        .key("k")
        .presigned(PresigningConfig::expires_in(std::time::Duration::from_secs(60)).expect("presign"))
        .await
        .expect("presigned");
    let resp = http.get(url.uri()).header("origin", "https://app.example").send().await.expect("get");
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(resp.headers()["access-control-expose-headers"], "ETag");
    let resp = http.get(url.uri()).header("origin", "https://evil.example").send().await.expect("get");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let bad = CorsRule::builder().allowed_origins("*").allowed_methods("PATCH").build().expect("rule");
    let r = s3
        .put_bucket_cors()
        .bucket("web")
        .cors_configuration(CorsConfiguration::builder().cors_rules(bad).build().expect("config"))
        .send()
        .await;
    assert_eq!(code(r), "InvalidRequest");
    s3.delete_bucket_cors().bucket("web").send().await.expect("delete cors");
    assert_eq!(preflight("https://app.example", "PUT").await.expect("preflight").status(), 403);
    server.shutdown().await;
}
