//! The web role's routes (SPEC "The web role"), through a real crunchbox
//! started in-process: real sockets, the real worker, the embedded S3 and
//! SQS. Images are made by the tests; nothing is downloaded.

mod common;

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use common::{ALL_ROLES, TestServer, test_config};
use crunchbox::cli::Role;
use crunchbox::crunch::fit;
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb, Rgba};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "dev-token";
const PUBLIC_URL: &str = "https://avatars.example.test";
/// Small, so the oversize tests move little data.
const MAX_UPLOAD: u64 = 256 * 1024;
/// How long the pipeline may take before a test gives up (generous: the CPU
/// is shared; this bounds a hang, it does not measure speed).
const DEADLINE: Duration = Duration::from_secs(120);
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

async fn start() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    // A trailing slash must not double up in the URLs handed out.
    config.web.public_url = format!("{PUBLIC_URL}/");
    config.web.max_upload_bytes = MAX_UPLOAD;
    TestServer::start_with(config, dir, &ALL_ROLES).await
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

// ---------------------------------------------------------------------------
// Images.

/// An opaque photo-like JPEG: a gradient with a red block top-left.
fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = ImageBuffer::from_fn(w, h, |x, y| {
        if x < w / 4 && y < h / 4 { Rgb([255, 0, 0]) } else { Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128]) }
    });
    encode(&DynamicImage::ImageRgb8(img), ImageFormat::Jpeg)
}

/// A PNG with real transparency (left half see-through).
fn png_alpha(w: u32, h: u32) -> Vec<u8> {
    let img = ImageBuffer::from_fn(w, h, |x, _| Rgba([0, 0, 255, if x < w / 2 { 0 } else { 255 }]));
    encode(&DynamicImage::ImageRgba8(img), ImageFormat::Png)
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A JPEG whose EXIF says "rotate 90° clockwise" (orientation 6).
fn jpeg_rotated(w: u16, h: u16) -> Vec<u8> {
    let pixels: Vec<u8> = (0..u32::from(w) * u32::from(h)).flat_map(|i| [(i % 251) as u8, 90, 200]).collect();
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&6u16.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.add_exif_metadata(&tiff).expect("exif");
    enc.encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb).expect("jpeg");
    out
}

// ---------------------------------------------------------------------------
// Requests.

async fn upload(server: &TestServer, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    http()
        .post(format!("{}/v1/avatar/upload", server.web_url()))
        .bearer_auth(TOKEN)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("upload request")
}

/// Uploads and returns the new id, checking the 201 shape on the way.
async fn upload_ok(server: &TestServer, content_type: &str, body: Vec<u8>) -> String {
    let resp = upload(server, content_type, body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let json: Value = resp.json().await.expect("json");
    let id = json["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32, "{json}");
    assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{json}");
    assert_eq!(json["url"], format!("{PUBLIC_URL}/a/{id}"));
    assert_eq!(json["status"], "pending");
    id
}

async fn status(server: &TestServer, id: &str) -> (StatusCode, Value) {
    let resp = http().get(format!("{}/v1/avatar/{id}", server.web_url())).send().await.expect("status request");
    let code = resp.status();
    (code, resp.json().await.expect("status json"))
}

/// Polls until the upload is no longer pending.
async fn settled(server: &TestServer, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (code, json) = status(server, id).await;
        assert_eq!(code, StatusCode::OK, "{json}");
        if json["status"] != "pending" {
            return json;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id} still pending after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks `{code, errno, error, message}` and returns the errno.
async fn expect_error(resp: reqwest::Response, code: StatusCode) -> u64 {
    assert_eq!(resp.status(), code);
    assert!(
        resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json")),
        "{:?}",
        resp.headers()
    );
    let json: Value = resp.json().await.expect("error json");
    check_error_shape(&json, code)
}

fn check_error_shape(json: &Value, code: StatusCode) -> u64 {
    assert_eq!(json["code"], code.as_u16(), "{json}");
    assert_eq!(json["error"], code.canonical_reason().expect("reason"), "{json}");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
    json["errno"].as_u64().expect("errno")
}

/// One HTTP/1.1 exchange on a raw socket, for what reqwest will not send: a
/// lying `Content-Length`, a chunked body, a body that stops early. `head`
/// is sent, then `body` concurrently with reading the answer (the server may
/// answer and close before the body is through); `close_write` half-closes
/// once the body is written. Returns the status (`None` if the server
/// closed without answering) and the response body.
async fn raw_exchange(addr: SocketAddr, head: String, body: Vec<Vec<u8>>, close_write: bool) -> (Option<u16>, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(head.as_bytes()).await.expect("write head");
    let writer = tokio::spawn(async move {
        for chunk in body {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        if close_write {
            let _ = wr.shutdown().await;
        }
        // Keep the write half open until the reader is done otherwise.
        tokio::time::sleep(DEADLINE).await;
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut chunk = [0u8; 8192];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A reset after the answer arrived (the server closed with
                // our unread body in its buffer) still leaves the answer.
                Err(_) => break,
            }
        }
    })
    .await;
    writer.abort();
    assert!(read.is_ok(), "no answer within {DEADLINE:?}; got {:?}", String::from_utf8_lossy(&buf));
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok());
    let body_at = buf.windows(4).position(|w| w == b"\r\n\r\n").map_or(buf.len(), |p| p + 4);
    (status, buf[body_at..].to_vec())
}

/// The head of a PNG upload whose body comes in chunks, without a length.
fn chunked_png_upload() -> String {
    format!(
        "POST /v1/avatar/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

fn web_addr(server: &TestServer) -> SocketAddr {
    server.app().web_addr.expect("web role")
}

async fn private_originals(server: &TestServer) -> Vec<String> {
    let out = server
        .s3()
        .await
        .list_objects_v2()
        .bucket(&server.config.buckets.private)
        .send()
        .await
        .expect("list private bucket");
    out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
}

// ---------------------------------------------------------------------------
// Upload.

#[tokio::test]
async fn upload_answers_201_with_id_url_and_pending() {
    let server = start().await;
    let id = upload_ok(&server, "image/jpeg", jpeg(64, 48)).await;
    // The original is in the private bucket under its id.
    assert!(private_originals(&server).await.contains(&format!("originals/{id}")));
    // Content-Type parameters and case are tolerated.
    upload_ok(&server, "Image/PNG; charset=binary", png_alpha(8, 8)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn upload_needs_a_known_bearer_token() {
    let server = start().await;
    let url = format!("{}/v1/avatar/upload", server.web_url());
    let body = jpeg(16, 16);

    let resp = http().post(&url).header(header::CONTENT_TYPE, "image/jpeg").body(body.clone()).send().await.unwrap();
    assert_eq!(resp.headers().get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
    let errno_401 = expect_error(resp, StatusCode::UNAUTHORIZED).await;

    let resp = http()
        .post(&url)
        .header(header::AUTHORIZATION, "Basic ZGV2LXRva2Vu")
        .header(header::CONTENT_TYPE, "image/jpeg")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED).await;

    let resp = http()
        .post(&url)
        .bearer_auth("not-a-token")
        .header(header::CONTENT_TYPE, "image/jpeg")
        .body(body)
        .send()
        .await
        .unwrap();
    let errno_403 = expect_error(resp, StatusCode::FORBIDDEN).await;
    assert_ne!(errno_401, errno_403);
    assert!(private_originals(&server).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn upload_refuses_other_content_types_and_mismatched_magic() {
    let server = start().await;
    let url = format!("{}/v1/avatar/upload", server.web_url());
    let png = png_alpha(8, 8);

    let missing = http().post(&url).bearer_auth(TOKEN).body(png.clone()).send().await.unwrap();
    let errno_type = expect_error(missing, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    for declared in ["text/plain", "image/svg+xml", "image/tiff", "application/octet-stream"] {
        expect_error(upload(&server, declared, png.clone()).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    // PNG bytes declared as JPEG, and so on.
    let resp = upload(&server, "image/jpeg", png.clone()).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let message = resp.json::<Value>().await.unwrap()["message"].as_str().unwrap().to_owned();
    assert_eq!(message, "the body is not an image/jpeg (its magic bytes do not match)");
    let errno_magic =
        expect_error(upload(&server, "image/jpeg", png.clone()).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_ne!(errno_type, errno_magic);
    expect_error(upload(&server, "image/png", jpeg(8, 8)).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    expect_error(
        upload(&server, "image/gif", b"not a gif at all, really".to_vec()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    expect_error(
        upload(&server, "image/webp", b"RIFF\0\0\0\0WAVEfmt ".to_vec()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    // An empty body is no image either.
    expect_error(upload(&server, "image/png", Vec::new()).await, StatusCode::BAD_REQUEST).await;
    assert!(private_originals(&server).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn upload_over_the_limit_by_content_length_is_refused_unread() {
    let server = start().await;
    // Announce a body over the limit and send none of it: the answer must
    // come from the header alone (a server that read the body would wait).
    let head = format!(
        "POST /v1/avatar/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        MAX_UPLOAD + 1
    );
    let (code, body) = raw_exchange(web_addr(&server), head, Vec::new(), false).await;
    assert_eq!(code, Some(413));
    check_error_shape(&serde_json::from_slice(&body).expect("json"), StatusCode::PAYLOAD_TOO_LARGE);

    assert!(private_originals(&server).await.is_empty());
    // Exactly at the limit is fine (a PNG followed by zeros, which its
    // decoder never reaches).
    let mut at_limit = png_alpha(8, 8);
    at_limit.resize(MAX_UPLOAD as usize, 0);
    upload_ok(&server, "image/png", at_limit).await;
    assert_eq!(private_originals(&server).await.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn upload_over_the_limit_while_streaming_chunked_stores_nothing() {
    let server = start().await;
    let head = chunked_png_upload();
    let mut first = png_alpha(8, 8);
    first.resize(8 * 1024, 0);
    let mut chunks = vec![first];
    // Four times the limit, in 8 KiB chunks.
    chunks.extend((1..(4 * MAX_UPLOAD / 8192)).map(|_| vec![0u8; 8192]));
    let mut wire: Vec<Vec<u8>> = chunks
        .into_iter()
        .map(|c| {
            let mut framed = format!("{:x}\r\n", c.len()).into_bytes();
            framed.extend_from_slice(&c);
            framed.extend_from_slice(b"\r\n");
            framed
        })
        .collect();
    wire.push(b"0\r\n\r\n".to_vec());
    let (code, body) = raw_exchange(web_addr(&server), head.clone(), wire, false).await;
    assert_eq!(code, Some(413), "{}", String::from_utf8_lossy(&body));
    check_error_shape(&serde_json::from_slice(&body).expect("json"), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(private_originals(&server).await.is_empty());

    // A chunked body under the limit is accepted and stored whole.
    let small = png_alpha(8, 8);
    let mut framed = format!("{:x}\r\n", small.len()).into_bytes();
    framed.extend_from_slice(&small);
    framed.extend_from_slice(b"\r\n0\r\n\r\n");
    let (code, body) = raw_exchange(web_addr(&server), head, vec![framed], false).await;
    assert_eq!(code, Some(201), "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<Value>(&body).expect("json")["id"].as_str().expect("id").to_owned();
    let stored = server
        .s3()
        .await
        .head_object()
        .bucket(&server.config.buckets.private)
        .key(format!("originals/{id}"))
        .send()
        .await
        .expect("original stored");
    assert_eq!(stored.content_length(), Some(small.len() as i64));
    server.shutdown().await;
}

/// Without `Content-Length` a body must be held to be measured, so only a
/// small one is taken (from a shared budget); a larger one is told to say
/// its length (411), without being read whole.
#[tokio::test]
async fn upload_without_length_over_the_held_limit_gets_411() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.web.max_upload_bytes = 8 * 1024 * 1024;
    config.web.public_url = PUBLIC_URL.into();
    let server = TestServer::start_with(config, dir, &[Role::S3, Role::Sqs, Role::Web]).await;
    let head = chunked_png_upload();
    let mut first = png_alpha(8, 8);
    first.resize(64 * 1024, 0);
    // 2 MiB in 64 KiB chunks: over the 1 MiB held limit, under max_upload_bytes.
    let mut wire: Vec<Vec<u8>> = std::iter::once(first)
        .chain((1..32).map(|_| vec![0u8; 64 * 1024]))
        .map(|c| [format!("{:x}\r\n", c.len()).into_bytes(), c, b"\r\n".to_vec()].concat())
        .collect();
    wire.push(b"0\r\n\r\n".to_vec());
    let (code, body) = raw_exchange(web_addr(&server), head, wire, false).await;
    assert_eq!(code, Some(411), "{}", String::from_utf8_lossy(&body));
    let json: Value = serde_json::from_slice(&body).expect("json");
    check_error_shape(&json, StatusCode::LENGTH_REQUIRED);
    assert!(json["message"].as_str().is_some_and(|m| m.contains("Content-Length")), "{json}");
    assert!(private_originals(&server).await.is_empty());
    // The same bytes with a length stream through.
    let mut whole = png_alpha(8, 8);
    whole.resize(2 * 1024 * 1024, 0);
    upload_ok(&server, "image/png", whole).await;
    server.shutdown().await;
}

/// A body held whole (no `Content-Length`) must keep coming: one that
/// stalls would hold its share of the budget every such upload draws on.
#[tokio::test]
async fn upload_without_length_that_stalls_gets_408() {
    let server = start().await;
    let head = chunked_png_upload();
    let first = png_alpha(8, 8);
    // One chunk, then nothing: the body never ends.
    let framed = [format!("{:x}\r\n", first.len()).into_bytes(), first, b"\r\n".to_vec()].concat();
    let (code, body) = raw_exchange(web_addr(&server), head, vec![framed], false).await;
    assert_eq!(code, Some(408), "{}", String::from_utf8_lossy(&body));
    let json: Value = serde_json::from_slice(&body).expect("json");
    check_error_shape(&json, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(json["errno"], 134);
    assert!(private_originals(&server).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn upload_whose_body_ends_early_stores_nothing() {
    let server = start().await;
    let mut part = png_alpha(8, 8);
    part.resize(4096, 0);
    let head = format!(
        "POST /v1/avatar/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
    );
    // 4 KiB of a promised 100000 bytes, then the client stops sending.
    // The server may answer 400 or just close (hyper drops half-closed
    // connections); either way the PUT it had started must not leave a
    // partial object behind.
    let (code, body) = raw_exchange(web_addr(&server), head, vec![part], true).await;
    if let Some(code) = code {
        assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
        check_error_shape(&serde_json::from_slice(&body).expect("json"), StatusCode::BAD_REQUEST);
    }
    // The aborted PUT settles asynchronously; give it a moment, then look.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(private_originals(&server).await.is_empty());
    // The server is none the worse for it.
    upload_ok(&server, "image/png", png_alpha(8, 8)).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Status, serving, delete.

#[tokio::test]
async fn status_of_unknown_or_malformed_ids_is_404() {
    let server = start().await;
    for id in ["0123456789abcdef0123456789abcdef", "nope", "0123456789ABCDEF0123456789ABCDEF", "..%2f..%2fetc"] {
        let resp = http().get(format!("{}/v1/avatar/{id}", server.web_url())).send().await.unwrap();
        expect_error(resp, StatusCode::NOT_FOUND).await;
    }
    for path in ["/a/0123456789abcdef0123456789abcdef", "/a/0123456789abcdef0123456789abcdef_huge", "/a/x", "/nowhere"]
    {
        let resp = http().get(format!("{}{path}", server.web_url())).send().await.unwrap();
        expect_error(resp, StatusCode::NOT_FOUND).await;
    }
    // A route with the wrong method: 405, in JSON like every other error.
    let resp = http().get(format!("{}/v1/avatar/upload", server.web_url())).send().await.unwrap();
    assert_eq!(resp.headers().get(header::ALLOW).map(|v| v.to_str().unwrap()), Some("POST"));
    expect_error(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    server.shutdown().await;
}

/// Fetches a variant and checks every header SPEC promises; returns the
/// decoded image and the response headers.
async fn fetch_variant(server: &TestServer, key: &str, content_type: &str) -> (DynamicImage, HeaderMap) {
    let resp = http().get(format!("{}/a/{key}", server.web_url())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{key}");
    let headers = resp.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], content_type, "{key}");
    assert_eq!(headers[header::CACHE_CONTROL], CACHE_CONTROL, "{key}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{key}");
    assert!(headers.get(header::ETAG).is_some_and(|e| !e.is_empty()), "{key}");
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(headers[header::CONTENT_LENGTH], bytes.len().to_string().as_str(), "{key}");
    let format = if content_type == "image/png" { ImageFormat::Png } else { ImageFormat::Jpeg };
    let img = image::load_from_memory_with_format(&bytes, format).unwrap_or_else(|e| panic!("{key}: {e}"));
    if format == ImageFormat::Jpeg {
        // No APP1 (EXIF/XMP) or other metadata segments survive.
        assert!(!bytes.windows(4).any(|w| w == b"Exif"), "{key} carries EXIF");
    }
    (img, headers)
}

/// Each variant's size is the source fitted in its box, within a pixel
/// (the small variants are made from the large one, which can round once
/// more).
fn assert_fits(img: &DynamicImage, src: (u32, u32), side: u32, what: &str) {
    let (w, h) = fit(src.0, src.1, side);
    let (gw, gh) = (img.width(), img.height());
    assert!(gw <= side && gh <= side, "{what}: {gw}x{gh} exceeds {side}");
    assert!(gw <= src.0 && gh <= src.1, "{what}: {gw}x{gh} upscaled from {src:?}");
    assert!(gw.abs_diff(w) <= 1 && gh.abs_diff(h) <= 1, "{what}: {gw}x{gh}, expected {w}x{h}");
}

#[tokio::test]
async fn upload_becomes_ready_and_variants_are_served() {
    let server = start().await;
    let id = upload_ok(&server, "image/jpeg", jpeg(900, 600)).await;

    // Before the worker is done the variants are 404, after that 200.
    let json = settled(&server, &id).await;
    assert_eq!(json["status"], "ready", "{json}");
    assert_eq!(json["id"], id);
    assert_eq!(json["url"], format!("{PUBLIC_URL}/a/{id}"));
    assert_eq!(json["variants"]["default"], format!("{PUBLIC_URL}/a/{id}"));
    assert_eq!(json["variants"]["small"], format!("{PUBLIC_URL}/a/{id}_small"));
    assert_eq!(json["variants"]["large"], format!("{PUBLIC_URL}/a/{id}_large"));
    assert!(json.get("error").is_none(), "{json}");

    let (img, headers) = fetch_variant(&server, &id, "image/jpeg").await;
    assert_fits(&img, (900, 600), 200, "default");
    let (small, _) = fetch_variant(&server, &format!("{id}_small"), "image/jpeg").await;
    assert_fits(&small, (900, 600), 100, "small");
    let (large, _) = fetch_variant(&server, &format!("{id}_large"), "image/jpeg").await;
    assert_eq!((large.width(), large.height()), (600, 400));
    // The red block stayed top-left (no accidental flip).
    let px = large.to_rgb8().get_pixel(20, 20).0;
    assert!(px[0] > 200 && px[1] < 60 && px[2] < 60, "{px:?}");

    // HEAD: the same headers, no body.
    let head = http().head(format!("{}/a/{id}", server.web_url())).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ETAG, header::CACHE_CONTROL] {
        assert_eq!(head.headers().get(&name), headers.get(&name), "HEAD {name}");
    }
    assert!(head.bytes().await.unwrap().is_empty());

    // A matching If-None-Match is a 304 without a body; another ETag is a 200.
    let etag = headers[header::ETAG].clone();
    let resp =
        http().get(format!("{}/a/{id}", server.web_url())).header(header::IF_NONE_MATCH, etag.clone()).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = http().head(format!("{}/a/{id}", server.web_url())).header(header::IF_NONE_MATCH, etag).send().await;
    assert_eq!(resp.unwrap().status(), StatusCode::NOT_MODIFIED);
    let resp = http()
        .get(format!("{}/a/{id}", server.web_url()))
        .header(header::IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn transparency_orientation_and_small_inputs() {
    let server = start().await;
    // Transparent PNG smaller than the large box: PNG out, never upscaled.
    let png = upload_ok(&server, "image/png", png_alpha(150, 80)).await;
    // EXIF orientation 6: stored 300x200, shown 200x300.
    let rotated = upload_ok(&server, "image/jpeg", jpeg_rotated(300, 200)).await;

    assert_eq!(settled(&server, &png).await["status"], "ready");
    let (large, _) = fetch_variant(&server, &format!("{png}_large"), "image/png").await;
    assert_eq!((large.width(), large.height()), (150, 80));
    assert!(large.color().has_alpha());
    assert_eq!(large.to_rgba8().get_pixel(0, 40).0[3], 0, "left half stays transparent");
    let (default, _) = fetch_variant(&server, &png, "image/png").await;
    assert_eq!((default.width(), default.height()), (150, 80));
    let (small, _) = fetch_variant(&server, &format!("{png}_small"), "image/png").await;
    assert_fits(&small, (150, 80), 100, "small png");

    assert_eq!(settled(&server, &rotated).await["status"], "ready");
    let (large, _) = fetch_variant(&server, &format!("{rotated}_large"), "image/jpeg").await;
    assert_eq!((large.width(), large.height()), (200, 300));
    let (default, _) = fetch_variant(&server, &rotated, "image/jpeg").await;
    assert_fits(&default, (200, 300), 200, "rotated default");
    server.shutdown().await;
}

#[tokio::test]
async fn gif_first_frame_and_webp_inputs() {
    let server = start().await;
    // Two frames: red, then blue. Only the first one is used.
    let mut gif = Vec::new();
    {
        let red = ImageBuffer::from_pixel(240, 160, Rgba([255, 0, 0, 255]));
        let blue = ImageBuffer::from_pixel(240, 160, Rgba([0, 0, 255, 255]));
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        enc.encode_frames([image::Frame::new(red), image::Frame::new(blue)]).expect("gif");
    }
    let mut webp = Vec::new();
    let green = ImageBuffer::from_pixel(700, 350, Rgb([0u8, 200, 0]));
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .encode(green.as_raw(), 700, 350, image::ExtendedColorType::Rgb8)
        .expect("webp");

    let gif_id = upload_ok(&server, "image/gif", gif).await;
    let webp_id = upload_ok(&server, "image/webp", webp).await;

    assert_eq!(settled(&server, &gif_id).await["status"], "ready");
    let (large, _) = fetch_variant(&server, &format!("{gif_id}_large"), "image/jpeg").await;
    assert_eq!((large.width(), large.height()), (240, 160));
    let px = large.to_rgb8().get_pixel(120, 80).0;
    assert!(px[0] > 200 && px[2] < 60, "first frame is red, got {px:?}");

    assert_eq!(settled(&server, &webp_id).await["status"], "ready");
    let (large, _) = fetch_variant(&server, &format!("{webp_id}_large"), "image/jpeg").await;
    assert_eq!((large.width(), large.height()), (600, 300));
    let (small, _) = fetch_variant(&server, &format!("{webp_id}_small"), "image/jpeg").await;
    assert_eq!((small.width(), small.height()), (100, 50));
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_behind_valid_magic_ends_failed_with_a_reason() {
    let server = start().await;
    let whole = jpeg(400, 300);
    let truncated = whole[..whole.len() / 2].to_vec();
    let id = upload_ok(&server, "image/jpeg", truncated).await;
    let mut noise = b"\x89PNG\r\n\x1a\n".to_vec();
    noise.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let noisy = upload_ok(&server, "image/png", noise).await;

    let json = settled(&server, &id).await;
    assert_eq!(json["status"], "failed", "{json}");
    assert_eq!(json["reason"], "truncated", "{json}");
    assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{json}");
    // No variant will ever exist, so none is listed.
    assert!(json.get("variants").is_none(), "{json}");
    let json = settled(&server, &noisy).await;
    assert_eq!(json["status"], "failed", "{json}");
    assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{json}");
    // No variant was published.
    let resp = http().get(format!("{}/a/{id}", server.web_url())).send().await.unwrap();
    expect_error(resp, StatusCode::NOT_FOUND).await;
    server.shutdown().await;
}

#[tokio::test]
async fn delete_needs_auth_and_removes_everything() {
    let server = start().await;
    let id = upload_ok(&server, "image/jpeg", jpeg(320, 240)).await;
    assert_eq!(settled(&server, &id).await["status"], "ready");
    let url = format!("{}/v1/avatar/{id}", server.web_url());

    expect_error(http().delete(&url).send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    expect_error(http().delete(&url).bearer_auth("wrong").send().await.unwrap(), StatusCode::FORBIDDEN).await;
    let unknown = format!("{}/v1/avatar/{}", server.web_url(), "f".repeat(32));
    expect_error(http().delete(&unknown).bearer_auth(TOKEN).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    assert_eq!(status(&server, &id).await.1["status"], "ready", "refused deletes changed nothing");

    let resp = http().delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), serde_json::json!({}));

    expect_error(http().get(&url).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    for suffix in ["", "_small", "_large"] {
        let resp = http().get(format!("{}/a/{id}{suffix}", server.web_url())).send().await.unwrap();
        expect_error(resp, StatusCode::NOT_FOUND).await;
    }
    expect_error(http().delete(&url).bearer_auth(TOKEN).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    let s3 = server.s3().await;
    for bucket in [&server.config.buckets.private, &server.config.buckets.public] {
        let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
        // Only the (empty) tombstone that keeps a racing worker's writes
        // from ever being served.
        let tombstone = format!("deleted/{id}");
        assert!(keys.iter().all(|k| !k.contains(&id) || *k == tombstone), "{bucket} still holds {keys:?}");
    }
    let tombstone = s3.head_object().bucket(&server.config.buckets.private).key(format!("deleted/{id}")).send();
    assert_eq!(tombstone.await.expect("tombstone").content_length(), Some(0));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Operations.

#[tokio::test]
async fn heartbeats_version_and_metrics() {
    let server = start().await;
    let web = server.web_url();
    assert_eq!(http().get(format!("{web}/__lbheartbeat__")).send().await.unwrap().status(), StatusCode::OK);
    let resp = http().get(format!("{web}/__heartbeat__")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["checks"]["s3"], "ok", "{json}");
    assert_eq!(json["checks"]["sqs"], "ok", "{json}");

    let version: Value = http().get(format!("{web}/__version__")).send().await.unwrap().json().await.unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(version["commit"].as_str().is_some_and(|c| !c.is_empty()), "{version}");

    // One upload of each outcome, so every family has samples.
    let ok = upload_ok(&server, "image/jpeg", jpeg(64, 64)).await;
    let whole = jpeg(200, 200);
    let bad = upload_ok(&server, "image/jpeg", whole[..whole.len() / 2].to_vec()).await;
    expect_error(upload(&server, "text/plain", jpeg(8, 8)).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(settled(&server, &ok).await["status"], "ready");
    assert_eq!(settled(&server, &bad).await["status"], "failed");

    let resp = http().get(format!("{web}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for needle in [
        "crunchbox_uploads_total{outcome=\"accepted\"}",
        "crunchbox_uploads_total{outcome=\"rejected\"}",
        "crunchbox_crunch_duration_seconds_bucket{le=",
        "crunchbox_crunch_duration_seconds_count",
        "crunchbox_queue_depth{state=\"visible\"}",
        "crunchbox_queue_depth{state=\"in_flight\"}",
        "crunchbox_crunch_failures_total{reason=\"truncated\"}",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    server.shutdown().await;
}
