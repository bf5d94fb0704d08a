//! Helpers for tests of the web role's routes: uploads, SPEC's JSON errors,
//! and a reader of the status event stream.

use std::io::Cursor;
use std::time::Duration;

use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;

pub const TOKEN: &str = "dev-token";
/// Bounds a hang; it does not measure speed (the CPU is shared).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// An opaque gradient JPEG.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = ImageBuffer::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 99]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img).write_to(&mut out, ImageFormat::Jpeg).expect("encode");
    out.into_inner()
}

/// Uploads `body` and returns the new id.
pub async fn upload_id(web: &str, content_type: &str, body: Vec<u8>) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{web}/v1/avatar/upload"))
        .bearer_auth(TOKEN)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("upload request");
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned()
}

/// Checks SPEC's `{code, errno, error, message}` body; returns the errno.
pub async fn expect_error(resp: reqwest::Response, code: StatusCode) -> u64 {
    assert_eq!(resp.status(), code);
    let json: Value = resp.json().await.expect("error json");
    assert_eq!(json["code"], code.as_u16(), "{json}");
    assert_eq!(json["error"], code.canonical_reason().expect("reason"), "{json}");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
    json["errno"].as_u64().expect("errno")
}

/// `GET /v1/avatar/{id}/events`, read one event at a time.
pub struct Events {
    resp: reqwest::Response,
    text: String,
}

impl Events {
    /// Opens the stream; it must be a 200 `text/event-stream`.
    pub async fn open(web: &str, id: &str) -> Self {
        let resp = reqwest::get(format!("{web}/v1/avatar/{id}/events")).await.expect("events request");
        assert_eq!(resp.status(), StatusCode::OK);
        let kind = resp.headers().get(header::CONTENT_TYPE).expect("content-type");
        assert!(kind.as_bytes().starts_with(b"text/event-stream"), "{kind:?}");
        Events { resp, text: String::new() }
    }

    /// The next event's name and JSON data; `None` once the server ended
    /// the stream. Keep-alive comments are skipped.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let (mut name, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).expect("event data is JSON"));
                    }
                }
                match (name, data) {
                    (Some(name), Some(data)) => return Some((name, data)),
                    (None, None) => continue,
                    other => panic!("half an event: {other:?} in {block:?}"),
                }
            }
            let chunk = tokio::time::timeout(DEADLINE, self.resp.chunk()).await.expect("an event or the end in time");
            match chunk.expect("stream readable") {
                Some(bytes) => self.text.push_str(std::str::from_utf8(&bytes).expect("utf-8")),
                None => {
                    assert!(self.text.trim().is_empty(), "the stream ended inside an event: {:?}", self.text);
                    return None;
                }
            }
        }
    }

    /// The next event, which must be a `status` event; returns its JSON.
    pub async fn status(&mut self) -> Value {
        let (name, data) = self.next().await.expect("another event");
        assert_eq!(name, "status", "{data}");
        data
    }
}
