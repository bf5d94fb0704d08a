//! Hardening (issue 7): a bad-input corpus made by the test itself (header
//! bombs, a decompression bomb, truncations, polyglots, hostile EXIF, lying
//! lengths, slowloris clients) thrown at the crunch library and at a real
//! crunchbox started in-process. Every input must get a clear error, and
//! nothing half-written may be left in either bucket.

mod common;

use std::collections::BTreeSet;
use std::io::{Cursor, Write};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use common::{ALL_ROLES, TestServer};
use crunchbox::crunch::{self, CrunchError, Limits};
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb, Rgba};
use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "dev-token";
/// Bounds a hang, does not measure speed: the CPU is shared.
const DEADLINE: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------
// The corpus.

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn photo(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 5) as u8, 128])))
}

fn jpeg() -> Vec<u8> {
    encode(&photo(64, 48), ImageFormat::Jpeg)
}

fn png() -> Vec<u8> {
    encode(&photo(64, 48), ImageFormat::Png)
}

fn png_alpha() -> Vec<u8> {
    let img = ImageBuffer::from_fn(40, 40, |x, _| Rgba([0, 0, 255, if x < 20 { 0 } else { 255 }]));
    encode(&DynamicImage::ImageRgba8(img), ImageFormat::Png)
}

fn gif() -> Vec<u8> {
    encode(&DynamicImage::ImageRgba8(photo(64, 48).to_rgba8()), ImageFormat::Gif)
}

fn webp() -> Vec<u8> {
    encode(&DynamicImage::ImageRgba8(photo(64, 48).to_rgba8()), ImageFormat::WebP)
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A PNG with the given header and IDAT payload (already zlib-compressed).
fn png_with(width: u32, height: u32, color_type: u8, idat: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, color_type, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn zlib_zeros(n: u64) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let take = left.min(block.len() as u64) as usize;
        enc.write_all(&block[..take]).expect("deflate");
        left -= take as u64;
    }
    enc.finish().expect("deflate")
}

/// 100 000 × 100 000 declared, a few bytes of data.
fn png_header_bomb() -> Vec<u8> {
    png_with(100_000, 100_000, 2, &zlib_zeros(64))
}

/// A real 20 000 × 20 000 grey PNG (400 MP, every row filter 0 and black),
/// whose zeros compress to a few hundred KB. Built once per test binary.
fn png_400mp() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| png_with(20_000, 20_000, 0, &zlib_zeros(20_001 * 20_000)))
}

/// SOI, a baseline SOF declaring 65 535 × 65 535, EOI.
fn jpeg_header_bomb() -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    out.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01, 0x11, 0x00]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// A one-colour GIF whose screen and frame both claim 65 535 × 65 535.
fn gif_header_bomb() -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    out.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]);
    out.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00, 0x3B]);
    out
}

fn riff_webp(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (kind, data) in chunks {
        body.extend_from_slice(*kind);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// An extended WebP whose canvas is 16 777 216 × 16 777 216.
fn webp_vp8x_bomb() -> Vec<u8> {
    let vp8x = vec![0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    riff_webp(&[(b"VP8X", vp8x), (b"VP8L", vec![0x2F, 0, 0, 0, 0, 0, 0, 0])])
}

/// A lossless WebP whose header says `side` × `side`.
fn webp_vp8l_bomb(side: u32) -> Vec<u8> {
    // Signature, then 14 bits width-1, 14 bits height-1, alpha, version 0.
    let bits: u32 = (side - 1) | ((side - 1) << 14);
    let mut data = vec![0x2F];
    data.extend_from_slice(&bits.to_le_bytes());
    data.extend_from_slice(&[0; 16]);
    riff_webp(&[(b"VP8L", data)])
}

/// A JPEG carrying `tiff` as its EXIF segment.
fn jpeg_with_exif(tiff: &[u8]) -> Vec<u8> {
    let (w, h) = (32u16, 24u16);
    let pixels: Vec<u8> = (0..u32::from(w) * u32::from(h)).flat_map(|i| [(i % 251) as u8, 90, 200]).collect();
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.add_exif_metadata(tiff).expect("exif");
    enc.encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb).expect("jpeg");
    out
}

/// IFD0 claims 65 535 entries; the segment holds one.
fn exif_huge_ifd() -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&0xFFFFu16.to_le_bytes());
    t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
    jpeg_with_exif(&t)
}

/// Orientation with a count of 2^32-1 and an offset past the end.
fn exif_huge_count() -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&[0x12, 0x01, 3, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0, 0xFF, 0xFF, 0x7F]);
    t.extend_from_slice(&0u32.to_le_bytes());
    jpeg_with_exif(&t)
}

/// IFD0 links to itself as its next IFD and as its EXIF sub-IFD.
fn exif_cyclic() -> Vec<u8> {
    let mut t = b"MM\0*".to_vec();
    t.extend_from_slice(&8u32.to_be_bytes());
    t.extend_from_slice(&2u16.to_be_bytes());
    t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    t.extend_from_slice(&[0x87, 0x69, 0, 4, 0, 0, 0, 1, 0, 0, 0, 8]);
    t.extend_from_slice(&8u32.to_be_bytes());
    jpeg_with_exif(&t)
}

/// A valid JPEG with an HTML page in an APP segment and after EOI.
fn polyglot_jpeg_html() -> Vec<u8> {
    let html = b"<html><body><script>alert('jpeg-polyglot')</script></body></html>";
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.add_app_segment(15, html.to_vec()).expect("app segment");
    let pixels = vec![200u8; 16 * 16 * 3];
    enc.encode(&pixels, 16, 16, jpeg_encoder::ColorType::Rgb).expect("jpeg");
    out.extend_from_slice(html);
    out
}

/// The classic GIF/JavaScript polyglot: the screen width's bytes open a
/// comment (`/*`), the script follows the trailer.
fn polyglot_gif_js() -> Vec<u8> {
    let mut out = b"GIF89a/*".to_vec();
    out.extend_from_slice(&[0x01, 0x00, 0x80, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    out.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
    out.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00, 0x3B]);
    out.extend_from_slice(b"*/=1;alert('gif-polyglot');//");
    out
}

const SVG: &[u8] = b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">\
<script>alert('svg')</script><rect width=\"10\" height=\"10\"/></svg>";
const HTML: &[u8] = b"<!doctype html><html><script>alert('html')</script></html>";

/// Cuts at a few places: just past the magic, mid-header, mid-data (all
/// must fail), and inside the trailer, where every pixel is present and a
/// decoder may rightly succeed.
fn truncations(name: &str, whole: &[u8]) -> Vec<(String, Vec<u8>, Expect)> {
    [(12, Expect::Fails), (30, Expect::Fails), (whole.len() / 2, Expect::Fails), (whole.len() - 3, Expect::Either)]
        .into_iter()
        .filter(|&(n, _)| n > 0 && n < whole.len())
        .map(|(n, e)| (format!("{name} cut at {n} of {}", whole.len()), whole[..n].to_vec(), e))
        .collect()
}

/// What an input must come to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Refused from the header: `too_many_pixels`.
    TooBig,
    /// Any permanent failure with a reason.
    Fails,
    /// Either crunched or failed with a reason, never a crash.
    Either,
    /// Crunched.
    Ready,
}

/// Inputs that pass the web role's magic check, with their declared type.
fn accepted_corpus() -> Vec<(String, &'static str, Vec<u8>, Expect)> {
    let mut v: Vec<(String, &'static str, Vec<u8>, Expect)> = vec![
        ("png header bomb".into(), "image/png", png_header_bomb(), Expect::TooBig),
        ("png 400 MP of zeros".into(), "image/png", png_400mp().to_vec(), Expect::TooBig),
        ("jpeg header bomb".into(), "image/jpeg", jpeg_header_bomb(), Expect::TooBig),
        ("gif header bomb".into(), "image/gif", gif_header_bomb(), Expect::TooBig),
        // image-webp refuses a canvas this size itself ("Image too large").
        ("webp vp8x bomb".into(), "image/webp", webp_vp8x_bomb(), Expect::Fails),
        ("webp vp8l bomb".into(), "image/webp", webp_vp8l_bomb(16_383), Expect::TooBig),
        // image-webp 0.2.4 reads the largest lossless size, 16 384, as 0
        // (`(1 + header) & 0x3FFF`): refused as zero-size, still an error.
        ("webp vp8l 16384 bomb".into(), "image/webp", webp_vp8l_bomb(16_384), Expect::Fails),
        ("exif huge ifd".into(), "image/jpeg", exif_huge_ifd(), Expect::Ready),
        ("exif huge count".into(), "image/jpeg", exif_huge_count(), Expect::Ready),
        ("exif cyclic".into(), "image/jpeg", exif_cyclic(), Expect::Ready),
        ("jpeg+html polyglot".into(), "image/jpeg", polyglot_jpeg_html(), Expect::Ready),
        ("gif+js polyglot".into(), "image/gif", polyglot_gif_js(), Expect::Either),
        ("jpeg magic alone".into(), "image/jpeg", vec![0xFF, 0xD8, 0xFF], Expect::Fails),
        ("png signature alone".into(), "image/png", b"\x89PNG\r\n\x1a\n".to_vec(), Expect::Fails),
    ];
    for (name, mime, whole) in [
        ("jpeg", "image/jpeg", jpeg()),
        ("png", "image/png", png()),
        ("gif", "image/gif", gif()),
        ("webp", "image/webp", webp()),
    ] {
        for (what, bytes, expect) in truncations(name, &whole) {
            v.push((what, mime, bytes, expect));
        }
    }
    v
}

// ---------------------------------------------------------------------------
// The crunch library, called directly.

#[test]
fn crunch_library_gives_every_bad_input_a_typed_error() {
    let limits = Limits::default();
    for (name, _, bytes, expect) in accepted_corpus() {
        let got = crunch::crunch(&bytes, &limits);
        match (&got, expect) {
            (Err(CrunchError::TooManyPixels { .. } | CrunchError::TooLarge { .. }), Expect::TooBig) => {}
            (Err(CrunchError::DecoderPanicked(_)), _) => panic!("{name}: a decoder panicked: {got:?}"),
            (Err(_), Expect::Fails | Expect::Either) | (Ok(_), Expect::Ready | Expect::Either) => {}
            _ => panic!("{name}: expected {expect:?}, got {:?}", got.map(|v| v.len())),
        }
        if let Ok(variants) = got {
            for v in variants {
                assert!(matches!(v.content_type, "image/jpeg" | "image/png"), "{name}");
                assert!(!contains(&v.bytes, b"alert"), "{name}: script bytes survived re-encoding");
            }
        }
    }
    for (name, bytes) in [("empty", &b""[..]), ("svg", SVG), ("html", HTML)] {
        let got = crunch::crunch(bytes, &limits);
        assert!(matches!(got, Err(CrunchError::Empty | CrunchError::UnsupportedFormat)), "{name}: {got:?}");
    }
    // The 400 MP bomb stays refused even under a limit that admits its
    // header only just (decoding it would need 400 MB).
    let got = crunch::crunch(png_400mp(), &Limits { max_pixels: 399_999_999 });
    assert!(matches!(got, Err(CrunchError::TooManyPixels { pixels: 400_000_000, .. })), "{got:?}");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Through the server.

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(DEADLINE).build().expect("client")
}

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

async fn status(server: &TestServer, id: &str) -> Value {
    let resp = http().get(format!("{}/v1/avatar/{id}", server.web_url())).send().await.expect("status");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("status json")
}

async fn settled(server: &TestServer, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let json = status(server, id).await;
        if json["status"] != "pending" {
            return json;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id} still pending after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 4xx with SPEC's JSON error shape.
async fn expect_json_error(resp: reqwest::Response, what: &str) -> StatusCode {
    let code = resp.status();
    assert!(code.is_client_error(), "{what}: {code}");
    let json: Value = resp.json().await.unwrap_or_else(|e| panic!("{what}: error body is not JSON: {e}"));
    assert_eq!(json["code"], code.as_u16(), "{what}: {json}");
    assert!(json["errno"].as_u64().is_some(), "{what}: {json}");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {json}");
    code
}

async fn keys(server: &TestServer, bucket: &str) -> BTreeSet<String> {
    let s3 = server.s3().await;
    let mut out = BTreeSet::new();
    let mut token = None;
    loop {
        let page =
            s3.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await.expect("list objects");
        out.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn bad_uploads_end_failed_with_a_reason_and_publish_nothing() {
    let server = TestServer::start(&ALL_ROLES).await;
    let mut uploaded = Vec::new();
    for (name, mime, bytes, expect) in accepted_corpus() {
        let resp = upload(&server, mime, bytes).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{name}");
        let json: Value = resp.json().await.expect("json");
        uploaded.push((name, json["id"].as_str().expect("id").to_owned(), expect));
    }
    let (mut ready, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for (name, id, expect) in &uploaded {
        let json = settled(&server, id).await;
        let reason = json["reason"].as_str().unwrap_or_default().to_owned();
        match json["status"].as_str() {
            Some("failed") => {
                assert!(matches!(expect, Expect::TooBig | Expect::Fails | Expect::Either), "{name}: {json}");
                assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {json}");
                assert_ne!(reason, "decoder_panicked", "{name}: {json}");
                if *expect == Expect::TooBig {
                    assert_eq!(reason, "too_many_pixels", "{name}: {json}");
                }
                failed.insert(id.clone());
            }
            Some("ready") => {
                assert!(matches!(expect, Expect::Ready | Expect::Either), "{name}: {json}");
                ready.insert(id.clone());
            }
            other => panic!("{name}: unexpected status {other:?}: {json}"),
        }
    }
    // Ready uploads serve crunchbox's re-encoded bytes, never the input's
    // scripts, with crunchbox's own type.
    for id in &ready {
        for suffix in ["", "_small", "_large"] {
            let resp = http().get(format!("{}/a/{id}{suffix}", server.web_url())).send().await.expect("get");
            assert_eq!(resp.status(), StatusCode::OK);
            let ct = resp.headers()[header::CONTENT_TYPE].to_str().expect("ascii").to_owned();
            assert!(ct == "image/jpeg" || ct == "image/png", "{ct}");
            assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
            let body = resp.bytes().await.expect("body");
            assert!(!contains(&body, b"alert") && !contains(&body, b"<html"), "{id}{suffix}");
        }
    }
    // Nothing half-written: the public bucket holds exactly the variants of
    // the ready uploads and their WebP twins; the private one the originals
    // and failure records.
    let public = keys(&server, &server.config.buckets.public).await;
    let expected: BTreeSet<String> = ready
        .iter()
        .flat_map(|id| ["", "_small", "_large"].map(|s| format!("{id}{s}")))
        .flat_map(|key| [format!("{key}.webp"), key])
        .collect();
    assert_eq!(public, expected);
    let private = keys(&server, &server.config.buckets.private).await;
    let expected: BTreeSet<String> = uploaded
        .iter()
        .map(|(_, id, _)| format!("originals/{id}"))
        .chain(failed.iter().map(|id| format!("failed/{id}")))
        .collect();
    assert_eq!(private, expected);
    server.shutdown().await;
}

#[tokio::test]
async fn refused_uploads_get_json_errors_and_store_nothing() {
    let server = TestServer::start(&ALL_ROLES).await;
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode)> = vec![
        ("svg as svg", "image/svg+xml", SVG.to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("svg as png", "image/png", SVG.to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("html as png", "image/png", HTML.to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("html as html", "text/html", HTML.to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("jpeg as png", "image/png", jpeg(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("gif+js as javascript", "application/javascript", polyglot_gif_js(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("empty png", "image/png", Vec::new(), StatusCode::BAD_REQUEST),
    ];
    for (what, mime, body, code) in cases {
        let resp = upload(&server, mime, body).await;
        assert_eq!(expect_json_error(resp, what).await, code, "{what}");
    }
    assert!(keys(&server, &server.config.buckets.private).await.is_empty());
    assert!(keys(&server, &server.config.buckets.public).await.is_empty());
    server.shutdown().await;
}

/// What a raw exchange saw: the status line's code, if any, and whether the
/// server closed the connection.
struct Raw {
    status: Option<u16>,
    closed: bool,
    text: String,
}

/// Sends `head` and `body` as they are, then reads until the server closes
/// or `linger` passes after the first bytes of an answer.
async fn raw(addr: SocketAddr, head: &str, body: &[u8], half_close: bool) -> Raw {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    // The server may answer and close before taking it all.
    let _ = stream.write_all(body).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    read_answer(&mut stream, Duration::from_secs(2)).await
}

async fn read_answer(stream: &mut TcpStream, linger: Duration) -> Raw {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let overall = tokio::time::Instant::now() + DEADLINE;
    let mut closed = false;
    loop {
        let until = if buf.is_empty() { overall } else { tokio::time::Instant::now() + linger };
        match tokio::time::timeout_at(until.min(overall), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                assert!(!buf.is_empty(), "no answer and no close within {DEADLINE:?}");
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok());
    Raw { status, closed, text }
}

fn upload_head(addr: SocketAddr, content_type: &str, length: usize) -> String {
    format!(
        "POST /v1/avatar/upload HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_lying_content_length_gets_a_clear_answer() {
    let server = TestServer::start(&ALL_ROLES).await;
    let addr = server.app().web_addr.expect("web");
    let image = jpeg();

    // Longer than the body: the body ends early, nothing is stored.
    let got = raw(addr, &upload_head(addr, "image/jpeg", image.len() + 500), &image, true).await;
    assert_eq!(got.status, Some(400), "{}", got.text);
    assert!(got.text.contains("\"errno\""), "{}", got.text);
    assert!(keys(&server, &server.config.buckets.private).await.is_empty());

    // Shorter than the body: the declared bytes are the upload (a cut
    // JPEG, so it ends failed); the rest is not a request.
    let declared = image.len() / 2;
    let got = raw(addr, &upload_head(addr, "image/jpeg", declared), &image, true).await;
    assert_eq!(got.status, Some(201), "{}", got.text);
    let body_at = got.text.find("\r\n\r\n").expect("head end") + 4;
    let json: Value = serde_json::Deserializer::from_str(&got.text[body_at..])
        .into_iter()
        .next()
        .expect("a json body")
        .expect("json");
    let id = json["id"].as_str().expect("id");
    let settled = settled(&server, id).await;
    assert_eq!(settled["status"], "failed", "{settled}");
    assert_eq!(settled["reason"], "truncated", "{settled}");
    let rest = &got.text[body_at..];
    assert!(rest.contains("HTTP/1.1 400") || got.closed, "the trailing bytes were not taken as a request: {rest}");
    assert!(keys(&server, &server.config.buckets.public).await.is_empty());

    // Not a number at all.
    let got = raw(addr, &upload_head(addr, "image/jpeg", 0).replace(": 0\r\n", ": 12abc\r\n"), &image, true).await;
    assert_eq!(got.status, Some(400), "{}", got.text);
    server.shutdown().await;
}

/// Sends `bytes` one at a time, `every` apart, until the server hangs up
/// (returns true) or `budget` passes (false).
async fn trickle(stream: &mut TcpStream, bytes: &[u8], every: Duration, budget: Duration) -> bool {
    let until = tokio::time::Instant::now() + budget;
    for b in bytes.iter().cycle() {
        if tokio::time::Instant::now() > until {
            return false;
        }
        if stream.write_all(&[*b]).await.is_err() {
            return true;
        }
        // A close shows up as a readable EOF (or a reset) on our side.
        let mut probe = [0u8; 512];
        match tokio::time::timeout(every, stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // an answer (e.g. 408/400): keep going until the close
            Err(_) => {}
        }
    }
    unreachable!("cycle never ends")
}

/// Other requests are answered while slow clients hold connections.
async fn others_are_served(server: &TestServer) {
    for _ in 0..5 {
        let resp = http().get(format!("{}/__lbheartbeat__", server.web_url())).send().await.expect("heartbeat");
        assert_eq!(resp.status(), StatusCode::OK);
        let listed = server.s3().await.list_buckets().send().await.expect("list buckets");
        assert!(!listed.buckets().is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn slowloris_headers_are_cut_off_while_others_are_served() {
    let server = TestServer::start(&ALL_ROLES).await;
    let web = server.app().web_addr.expect("web");
    let aws = server.app().aws_addr.expect("aws");
    let filler = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut clients = Vec::new();
    for addr in [web, web, aws, aws] {
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"POST /v1/avatar/upload HTTP/1.1\r\nHost: x\r\n").await.expect("write");
            trickle(&mut s, filler, Duration::from_millis(500), DEADLINE).await
        }));
    }
    others_are_served(&server).await;
    for c in clients {
        assert!(c.await.expect("client task"), "a slow-header client was never cut off");
    }
    // The slots are free again.
    others_are_served(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn slowloris_bodies_are_cut_off_and_store_nothing() {
    let server = TestServer::start(&ALL_ROLES).await;
    let web = server.app().web_addr.expect("web");
    let image = jpeg();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let head = upload_head(web, "image/jpeg", 100_000);
        let image = image.clone();
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(web).await.expect("connect");
            s.write_all(head.as_bytes()).await.expect("head");
            // The magic arrives promptly, so the upload starts; then a byte
            // a second.
            s.write_all(&image[..64]).await.expect("prefix");
            trickle(&mut s, &image[64..], Duration::from_secs(1), DEADLINE).await
        }));
    }
    // An unsigned S3 PUT whose body trickles is cut off as well (it may be
    // refused before the body matters, which also ends it).
    let aws = server.app().aws_addr.expect("aws");
    clients.push(tokio::spawn(async move {
        let mut s = TcpStream::connect(aws).await.expect("connect");
        let head =
            format!("PUT /{}/slow HTTP/1.1\r\nHost: {aws}\r\nContent-Length: 100000\r\n\r\n", "crunchbox-public");
        s.write_all(head.as_bytes()).await.expect("head");
        trickle(&mut s, b"slow", Duration::from_secs(1), DEADLINE).await
    }));
    others_are_served(&server).await;
    for c in clients {
        assert!(c.await.expect("client task"), "a slow-body client was never cut off");
    }
    others_are_served(&server).await;
    assert!(keys(&server, &server.config.buckets.private).await.is_empty());
    assert!(keys(&server, &server.config.buckets.public).await.is_empty());
    server.shutdown().await;
}

/// Each listener caps its open connections: with the cap taken by idle
/// keep-alive connections, a new one waits (it is not refused, and nothing
/// crashes) and is served as soon as one of them closes.
#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    use crunchbox::cli::Role;
    // The web role keeps pooled connections to the AWS listener, so each
    // listener is capped in a server of its own.
    for roles in [&[Role::S3, Role::Sqs][..], &ALL_ROLES[..]] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = common::test_config(dir.path());
        let web = roles.contains(&Role::Web);
        if web {
            config.web.max_connections = 3;
        } else {
            config.aws.max_connections = 3;
        }
        let server = TestServer::start_with(config, dir, roles).await;
        let addr = if web { server.app().web_addr.expect("web") } else { server.app().aws_addr.expect("aws") };
        let ask = format!("GET /__lbheartbeat__ HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        // Three connections that each got an answer and stay open.
        let mut idle = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(ask.as_bytes()).await.expect("ask");
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await.expect("answered").expect("read");
            assert!(n > 0);
            idle.push(s);
        }
        // A fourth is accepted by the kernel, but not served while the cap holds.
        let mut fourth = TcpStream::connect(addr).await.expect("the kernel queues it");
        fourth.write_all(ask.as_bytes()).await.expect("ask");
        let mut buf = [0u8; 512];
        assert!(
            tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buf)).await.is_err(),
            "{addr}: a connection beyond the cap was served"
        );
        drop(idle.pop());
        let n = tokio::time::timeout(DEADLINE, fourth.read(&mut buf)).await.expect("served once a slot frees");
        let text = String::from_utf8_lossy(&buf[..n.expect("read")]).into_owned();
        assert!(text.starts_with("HTTP/1.1 "), "{addr}: {text}");
        server.shutdown().await;
    }
}

// ---------------------------------------------------------------------------
// Security: content types and the private bucket.

#[tokio::test]
async fn served_variants_carry_crunchbox_types_never_the_uploaders() {
    let server = TestServer::start(&ALL_ROLES).await;
    // Declared type, bytes, and the type crunchbox must serve.
    let cases = [
        ("image/gif", gif(), "image/jpeg"),
        ("image/webp", webp(), "image/jpeg"),
        ("image/png", png(), "image/jpeg"),
        ("image/png; charset=\"<script>\"", png(), "image/jpeg"),
        ("IMAGE/PNG", png_alpha(), "image/png"),
    ];
    let mut ids = Vec::new();
    for (declared, bytes, _) in &cases {
        let resp = upload(&server, declared, bytes.clone()).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{declared}");
        let json: Value = resp.json().await.expect("json");
        ids.push(json["id"].as_str().expect("id").to_owned());
    }
    for ((declared, _, served), id) in cases.iter().zip(&ids) {
        let json = settled(&server, id).await;
        assert_eq!(json["status"], "ready", "{declared}: {json}");
        for suffix in ["", "_small", "_large"] {
            let url = format!("{}/a/{id}{suffix}", server.web_url());
            for resp in [http().get(&url).send().await.expect("get"), http().head(&url).send().await.expect("head")] {
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(resp.headers()[header::CONTENT_TYPE], *served, "{declared}{suffix}");
                assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
                assert!(resp.headers().get(header::CONTENT_DISPOSITION).is_none());
            }
        }
    }
    // Even an object planted in the public bucket with a hostile type is
    // served as one of crunchbox's two types.
    let planted = "0123456789abcdef0123456789abcdef";
    server
        .s3()
        .await
        .put_object()
        .bucket(&server.config.buckets.public)
        .key(planted)
        .content_type("text/html")
        .body(HTML.to_vec().into())
        .send()
        .await
        .expect("plant");
    let resp = http().get(format!("{}/a/{planted}", server.web_url())).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    server.shutdown().await;
}

#[tokio::test]
async fn no_path_leads_from_an_upload_to_anonymous_reads_of_the_private_bucket() {
    let server = TestServer::start(&ALL_ROLES).await;
    let good = upload(&server, "image/jpeg", jpeg()).await.json::<Value>().await.expect("json");
    let bad = upload(&server, "image/png", png_header_bomb()).await.json::<Value>().await.expect("json");
    let (good, bad) = (good["id"].as_str().expect("id").to_owned(), bad["id"].as_str().expect("id").to_owned());
    assert_eq!(settled(&server, &good).await["status"], "ready");
    assert_eq!(settled(&server, &bad).await["status"], "failed");

    let private = server.config.buckets.private.clone();
    let public = server.config.buckets.public.clone();
    let endpoint = server.endpoint();
    let port = server.app().aws_addr.expect("aws").port();
    let anon = http();
    // Control: anonymous reads of a public variant work.
    let resp = anon.get(format!("{endpoint}/{public}/{good}")).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::OK);

    for key in [format!("originals/{good}"), format!("originals/{bad}"), format!("failed/{bad}")] {
        for url in [
            format!("{endpoint}/{private}/{key}"),
            format!("{endpoint}/{private}/{}", key.replace('/', "%2F")),
            format!("{endpoint}/{public}/..%2F{private}%2F{}", key.replace('/', "%2F")),
            format!("{endpoint}/{public}/../{private}/{key}"),
        ] {
            for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
                let resp = anon.request(method.clone(), &url).send().await.expect("anonymous request");
                assert!(resp.status().is_client_error(), "{method} {url}: {}", resp.status());
            }
        }
        // Virtual-host style.
        let resp = anon
            .get(format!("http://127.0.0.1:{port}/{key}"))
            .header(header::HOST, format!("{private}.localhost:{port}"))
            .send()
            .await
            .expect("vhost");
        assert!(resp.status().is_client_error(), "vhost {key}: {}", resp.status());
        // Through the web role's serving route.
        for path in [
            format!("/a/{key}"),
            format!("/a/{}", key.replace('/', "%2F")),
            format!("/a/..%2F..%2F{private}%2F{}", key.replace('/', "%2F")),
            format!("/a/{}_small", key.replace('/', "%2F")),
        ] {
            let resp = anon.get(format!("{}{path}", server.web_url())).send().await.expect("web get");
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
    // Listing the private bucket anonymously is refused too.
    for url in [format!("{endpoint}/{private}"), format!("{endpoint}/{private}?list-type=2&prefix=originals/")] {
        let resp = anon.get(&url).send().await.expect("list");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{url}");
    }
    // The failed upload's original is not served under its id either.
    let resp = anon.get(format!("{}/a/{bad}", server.web_url())).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    server.shutdown().await;
}
