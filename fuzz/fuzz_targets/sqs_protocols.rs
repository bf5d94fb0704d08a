//! The SQS wire protocols: a request head and body from fuzz bytes through
//! the JSON and Query parsers, the actions' typed reads and both renderers.
//! Input layout: `method-byte | uri \n header-lines \n\n body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let method = ["POST", "GET", "PUT"][usize::from(m) % 3];
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let uri = lines.next().and_then(|u| std::str::from_utf8(u).ok()).unwrap_or("/");
    let mut req = http::Request::builder().method(method);
    req = if uri.starts_with('/') { req.uri(uri) } else { req.uri("/") };
    for line in lines {
        if let Some(i) = line.iter().position(|&b| b == b':') {
            if let (Ok(k), Ok(v)) =
                (http::HeaderName::from_bytes(&line[..i]), http::HeaderValue::from_bytes(line[i + 1..].trim_ascii()))
            {
                req = req.header(k, v);
            }
        }
    }
    let Ok(req) = req.body(()) else { return };
    let (parts, ()) = req.into_parts();
    crunchbox::queue::QueueService::fuzz_protocols(&parts, body);
});
