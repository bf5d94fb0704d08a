//! `GET`/`HEAD /a/{id}`: the WebP twin or the JPEG/PNG by `Accept` (SPEC
//! "Content negotiation and readiness push"). The twins are written to the
//! public bucket through the real S3 endpoint, under the keys the worker
//! uses, so they test serving alone; the last test has the worker make them.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::TestServer;
use common::web::{Events, TOKEN, expect_error, jpeg, upload_id};
use crunchbox::cli::Role;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

/// Chromium's `Accept` for `<img>`.
const CHROMIUM_IMG: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
/// Stands in for a twin: serving never decodes what it serves, and these
/// bytes cannot be mistaken for the JPEG.
const WEBP: &[u8] = b"RIFF\x14\x00\x00\x00WEBPVP8L stand-in twin";

/// A server without a worker, and an id whose default variant has a twin
/// and whose small variant has none (crunched before twins existed).
async fn published() -> (TestServer, String, Vec<u8>) {
    let server = TestServer::start(&[Role::S3, Role::Sqs, Role::Web]).await;
    let id = "0123456789abcdef0123456789abcdef".to_owned();
    let s3 = server.s3().await;
    let bucket = &server.config.buckets.public;
    let original = jpeg(40, 30);
    for (key, kind, body) in [
        (id.clone(), "image/jpeg", original.clone()),
        (format!("{id}.webp"), "image/webp", WEBP.to_vec()),
        (format!("{id}_small"), "image/jpeg", jpeg(20, 15)),
    ] {
        let put = s3.put_object().bucket(bucket).key(key).content_type(kind).body(ByteStream::from(body));
        put.send().await.expect("put");
    }
    (server, id, original)
}

async fn get(server: &TestServer, key: &str, accept: Option<&str>, etag: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}/a/{key}", server.web_url()));
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT, accept);
    }
    if let Some(etag) = etag {
        req = req.header(header::IF_NONE_MATCH, etag);
    }
    req.send().await.expect("request")
}

fn check_headers(h: &HeaderMap, content_type: &str) -> String {
    assert_eq!(h[header::CONTENT_TYPE], content_type);
    assert_eq!(h[header::VARY], "Accept");
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    h[header::ETAG].to_str().expect("etag").to_owned()
}

#[tokio::test]
async fn accept_picks_the_representation_each_with_its_etag() {
    let (server, id, original) = published().await;

    let resp = get(&server, &id, Some(CHROMIUM_IMG), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let webp_etag = check_headers(resp.headers(), "image/webp");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), WEBP);

    // curl's `*/*`, no Accept at all, an explicit refusal, a wildcard.
    for accept in [Some("*/*"), None, Some("image/webp;q=0, */*"), Some("image/*")] {
        let resp = get(&server, &id, accept, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{accept:?}");
        let jpeg_etag = check_headers(resp.headers(), "image/jpeg");
        assert_ne!(jpeg_etag, webp_etag);
        assert_eq!(resp.bytes().await.expect("body"), original, "{accept:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn if_none_match_is_per_representation_and_head_agrees() {
    let (server, id, original) = published().await;
    let webp_etag = get(&server, &id, Some(CHROMIUM_IMG), None).await.headers()[header::ETAG].clone();
    let jpeg_etag = get(&server, &id, Some("*/*"), None).await.headers()[header::ETAG].clone();
    let (webp_etag, jpeg_etag) = (webp_etag.to_str().unwrap(), jpeg_etag.to_str().unwrap());

    for (accept, etag, expect, kind) in [
        (CHROMIUM_IMG, webp_etag, StatusCode::NOT_MODIFIED, None),
        (CHROMIUM_IMG, jpeg_etag, StatusCode::OK, Some("image/webp")),
        ("*/*", jpeg_etag, StatusCode::NOT_MODIFIED, None),
        ("*/*", webp_etag, StatusCode::OK, Some("image/jpeg")),
    ] {
        let resp = get(&server, &id, Some(accept), Some(etag)).await;
        assert_eq!(resp.status(), expect, "{accept} {etag}");
        assert_eq!(resp.headers()[header::VARY], "Accept");
        match kind {
            Some(kind) => assert_eq!(resp.headers()[header::CONTENT_TYPE], kind),
            None => {
                assert_eq!(resp.headers()[header::ETAG], etag);
                assert!(resp.bytes().await.expect("body").is_empty());
            }
        }
    }

    let http = reqwest::Client::new();
    let representations =
        [(CHROMIUM_IMG, "image/webp", webp_etag, WEBP.len()), ("*/*", "image/jpeg", jpeg_etag, original.len())];
    for (accept, kind, etag, len) in representations {
        let head = http.head(format!("{}/a/{id}", server.web_url())).header(header::ACCEPT, accept).send().await;
        let head = head.expect("head");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(check_headers(head.headers(), kind), etag);
        assert_eq!(head.headers()[header::CONTENT_LENGTH], len.to_string().as_str());
        let cached = http
            .head(format!("{}/a/{id}", server.web_url()))
            .header(header::ACCEPT, accept)
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .expect("head");
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_variant_without_a_twin_serves_its_jpeg_to_webp_clients() {
    let (server, id, _) = published().await;
    let resp = get(&server, &format!("{id}_small"), Some(CHROMIUM_IMG), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    check_headers(resp.headers(), "image/jpeg");
    assert!(image::load_from_memory(&resp.bytes().await.expect("body")).is_ok());
    // Missing in both forms: 404, also saying it varies.
    let resp = get(&server, &format!("{id}_large"), Some(CHROMIUM_IMG), None).await;
    assert_eq!(resp.headers()[header::VARY], "Accept");
    expect_error(resp, StatusCode::NOT_FOUND).await;
    // The twin has no URL of its own.
    expect_error(get(&server, &format!("{id}.webp"), Some(CHROMIUM_IMG), None).await, StatusCode::NOT_FOUND).await;
    server.shutdown().await;
}

#[tokio::test]
async fn delete_removes_the_twins() {
    let (server, id, _) = published().await;
    let web = server.web_url();
    let resp = reqwest::Client::new().delete(format!("{web}/v1/avatar/{id}")).bearer_auth(TOKEN).send().await;
    assert_eq!(resp.expect("delete").status(), StatusCode::OK);
    expect_error(get(&server, &id, Some(CHROMIUM_IMG), None).await, StatusCode::NOT_FOUND).await;
    let s3 = server.s3().await;
    let left = s3.list_objects_v2().bucket(&server.config.buckets.public).prefix(&id).send().await.expect("list");
    let keys: Vec<_> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert!(keys.is_empty(), "left behind: {keys:?}");
    server.shutdown().await;
}

/// The real worker makes the twins: a photo serves WebP to a browser and
/// JPEG to curl, and a transparent PNG keeps its transparency in its WebP.
#[tokio::test]
async fn the_worker_makes_twins_that_keep_alpha() {
    let server = TestServer::start(&common::ALL_ROLES).await;
    let web = server.web_url();
    let photo = upload_id(&web, "image/jpeg", jpeg(320, 240)).await;
    // Left half fully transparent, right half opaque blue.
    let img = image::ImageBuffer::from_fn(300, 200, |x, _| image::Rgba([0u8, 0, 255, if x < 150 { 0 } else { 255 }]));
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img).write_to(&mut png, image::ImageFormat::Png).expect("png");
    let clear = upload_id(&web, "image/png", png.into_inner()).await;
    for id in [&photo, &clear] {
        let mut events = Events::open(&web, id).await;
        while let Some((_, status)) = events.next().await {
            assert_ne!(status["status"], "failed", "{status}");
        }
    }

    for (accept, kind) in [(Some(CHROMIUM_IMG), "image/webp"), (Some("*/*"), "image/jpeg"), (None, "image/jpeg")] {
        let resp = get(&server, &photo, accept, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        check_headers(resp.headers(), kind);
        let bytes = resp.bytes().await.expect("body");
        let format = image::guess_format(&bytes).expect("an image");
        assert_eq!(format.to_mime_type(), kind, "{accept:?}");
    }

    let resp = get(&server, &format!("{clear}_large"), Some("image/webp;q=0, image/png"), None).await;
    check_headers(resp.headers(), "image/png");
    let resp = get(&server, &format!("{clear}_large"), Some(CHROMIUM_IMG), None).await;
    check_headers(resp.headers(), "image/webp");
    let bytes = resp.bytes().await.expect("body");
    let webp = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP).expect("decodes").to_rgba8();
    assert_eq!(webp.dimensions(), (300, 200));
    assert_eq!(webp.get_pixel(20, 100).0[3], 0, "the transparent half stayed transparent");
    let opaque = webp.get_pixel(280, 100).0;
    assert!(opaque[3] == 255 && opaque[2] > 200, "{opaque:?}");
    server.shutdown().await;
}
