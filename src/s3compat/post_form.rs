//! Presigned POST (an HTML form upload) gets from s3s everything but one
//! rule: AWS replaces `${filename}` in the form's `key` field with the name
//! of the uploaded file. AWS requires the file to be the form's last field,
//! so the head of the form, up to the file part's headers, is read first
//! (at most `HEAD_MAX`, which is what s3s itself holds for the fields), the
//! key rewritten there, and the file streamed on untouched. The fields of
//! the head are handed back too: the front checks the policy's signature
//! before the form may wait for one of the turns s3s's buffering needs.

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, StreamBody};

use super::front::xml_error;
use crate::budget::Pace;

/// Beyond this the head is passed on as it is; s3s refuses a form whose
/// fields exceed its own limit (`form_max_fields_size`) anyway.
const HEAD_MAX: usize = super::FORM_MAX_FIELDS + 64 * 1024;
const VARIABLE: &[u8] = b"${filename}";

/// The multipart boundary of a POST form upload to a bucket, if `req` is one.
pub fn boundary<B>(req: &Request<B>) -> Option<String> {
    if req.method() != http::Method::POST {
        return None;
    }
    let content_type = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The fields before the file part, by lowercased name.
pub type Fields = std::collections::HashMap<String, String>;

/// The head of a form came slower than its pace: it is held before any
/// signature is checked, so it must not be held at a trickle.
#[derive(Debug)]
pub struct TooSlow;

/// `req` with `${filename}` in its `key` field replaced, and the form's
/// fields. A body that ends or fails early is passed on as far as it got:
/// s3s answers that.
pub async fn read_head(
    req: Request<s3s::Body>,
    boundary: &str,
    pace: Pace,
) -> Result<(Request<s3s::Body>, Fields), TooSlow> {
    let (mut parts, mut body) = req.into_parts();
    let mut head = BytesMut::new();
    let mut scanner = Scanner::new(boundary.as_bytes());
    let mut failed = None;
    let start = tokio::time::Instant::now();
    while head.len() <= HEAD_MAX && scanner.out.file.is_none() {
        match tokio::time::timeout_at(pace.due(start, head.len()), body.frame()).await {
            Err(_) => return Err(TooSlow),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                    scanner.feed(&head);
                }
            }
            Ok(Some(Err(e))) => {
                failed = Some(e);
                break;
            }
            Ok(None) => break,
        }
    }
    let scan = scanner.out;
    let fields = scan
        .fields
        .iter()
        .map(|(name, (from, to))| (name.clone(), String::from_utf8_lossy(&head[*from..*to]).into_owned()))
        .collect();
    let head = match rewrite(&head, &scan) {
        Some(rewritten) => {
            let grown = rewritten.len() as i64 - head.len() as i64;
            adjust_length(&mut parts.headers, grown);
            rewritten
        }
        None => head.freeze(),
    };
    let first = futures_util::stream::iter([Ok(head)].into_iter().chain(failed.map(Err)));
    let frames = first.chain(body).map_ok(http_body::Frame::data);
    Ok((Request::from_parts(parts, s3s::Body::http_body(StreamBody::new(frames))), fields))
}

fn adjust_length(headers: &mut http::HeaderMap, grown: i64) {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
    if let Some(len) = declared {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from((len + grown).max(0)));
    }
}

/// Where the fields of interest sit in a form's head.
#[derive(Default, Debug, PartialEq)]
struct Scan {
    /// The `key` field's value (byte range).
    key: Option<(usize, usize)>,
    /// The file part's `filename`, once its headers are complete.
    file: Option<String>,
    /// Every complete field before the file part: name, value (byte range).
    fields: Vec<(String, (usize, usize))>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

#[cfg(test)]
fn scan(head: &[u8], boundary: &[u8]) -> Scan {
    let mut scanner = Scanner::new(boundary);
    scanner.feed(head);
    scanner.out
}

/// Reads a form's head as its bytes arrive, resuming where it stopped: a
/// head trickled a byte at a time is read once, not once per byte.
struct Scanner {
    delimiter: Vec<u8>,
    out: Scan,
    at: At,
}

/// Where a [`Scanner`] is; `from` is where its search goes on.
enum At {
    /// Before a part's delimiter.
    Delimiter { from: usize },
    /// In the headers of the part whose delimiter starts at `start`.
    Headers { start: usize, from: usize },
    /// In the value (from `value`) of the field `name`.
    Value { name: Option<String>, value: usize, from: usize },
    /// At the file part: the head is complete.
    File,
}

impl Scanner {
    fn new(boundary: &[u8]) -> Self {
        Self { delimiter: [b"--", boundary].concat(), out: Scan::default(), at: At::Delimiter { from: 0 } }
    }

    /// Reads `head` (what came so far, grown since the last call) on.
    fn feed(&mut self, head: &[u8]) {
        let d = self.delimiter.len();
        // A needle not found may still begin in the last bytes searched.
        let resume = |from: usize, needle: usize| head.len().saturating_sub(needle - 1).max(from);
        loop {
            self.at = match std::mem::replace(&mut self.at, At::File) {
                At::File => return,
                At::Delimiter { from } => match find(head, &self.delimiter, from) {
                    // The headers begin after the CRLF that ends the delimiter line.
                    Some(start) => At::Headers { start, from: start + d + 2 },
                    None => {
                        self.at = At::Delimiter { from: resume(from, d) };
                        return;
                    }
                },
                At::Headers { start, from } => match find(head, b"\r\n\r\n", from) {
                    Some(end) => {
                        let headers = String::from_utf8_lossy(&head[(start + d + 2).min(end)..end]);
                        match disposition(&headers) {
                            (Some(name), filename) if name == "file" => {
                                self.out.file = Some(filename.unwrap_or_default());
                                At::File
                            }
                            (name, _) => At::Value { name, value: end + 4, from: end + 4 },
                        }
                    }
                    None => {
                        self.at = At::Headers { start, from: resume(from, 4) };
                        return;
                    }
                },
                At::Value { name, value, from } => match find(head, &self.delimiter, from) {
                    Some(next) => {
                        if let Some(name) = name {
                            let range = (value, next.saturating_sub(2).max(value));
                            if name == "key" {
                                self.out.key = Some(range);
                            }
                            self.out.fields.push((name, range));
                        }
                        At::Headers { start: next, from: next + d + 2 }
                    }
                    None => {
                        self.at = At::Value { name, value, from: resume(from, d) };
                        return;
                    }
                },
            };
        }
    }
}

/// The `name` and `filename` of a part's `Content-Disposition`.
fn disposition(headers: &str) -> (Option<String>, Option<String>) {
    let Some(line) = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:")) else {
        return (None, None);
    };
    let param = |key: &str| {
        line.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    (param("name").map(|n| n.to_ascii_lowercase()), param("filename"))
}

/// The head with the key's `${filename}` replaced; `None` when there is
/// nothing to replace (no key, no variable, or no file part seen).
fn rewrite(head: &[u8], scan: &Scan) -> Option<Bytes> {
    let (from, to) = scan.key?;
    let filename = scan.file.as_ref()?;
    let key = &head[from..to];
    let at = find(key, VARIABLE, 0)?;
    let mut out = Vec::with_capacity(head.len() + filename.len());
    out.extend_from_slice(&head[..from + at]);
    out.extend_from_slice(filename.as_bytes());
    out.extend_from_slice(&head[from + at + VARIABLE.len()..]);
    Some(Bytes::from(out))
}

/// s3s answers a form that breaks its policy with 400 `InvalidPolicyDocument`
/// (or, for a field the policy does not name, its own wording); AWS answers
/// 403 `AccessDenied`, "Invalid according to Policy: ...". This turns the
/// former into the latter; every other response passes unchanged.
pub fn as_aws_policy_error(resp: Response<s3s::Body>) -> Response<s3s::Body> {
    if !matches!(resp.status(), StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN) {
        return resp;
    }
    let Some(body) = resp.body().bytes() else { return resp };
    let text = String::from_utf8_lossy(&body);
    let element = |name: &str| {
        let (_, rest) = text.split_once(&format!("<{name}>"))?;
        let (value, _) = rest.split_once(&format!("</{name}>"))?;
        quick_xml::escape::unescape(value).ok().map(|v| v.into_owned())
    };
    let (Some(code), Some(message)) = (element("Code"), element("Message")) else { return resp };
    match aws_policy_message(&code, &message) {
        Some(message) => xml_error(StatusCode::FORBIDDEN, "AccessDenied", &message),
        None => resp,
    }
}

/// AWS's message for the policy failure s3s described, if it is one.
fn aws_policy_message(code: &str, message: &str) -> Option<String> {
    if code == "AccessDenied" {
        let (_, rest) = message.split_once("must appear in the list of policy conditions. \"")?;
        let (field, _) = rest.split_once("\" not specified")?;
        return Some(format!("Invalid according to Policy: Extra input fields: {field}"));
    }
    if code != "InvalidPolicyDocument" {
        return None;
    }
    let rest = message.strip_prefix("Policy condition '")?;
    let (op, rest) = rest.split_once("' for field '")?;
    let (field, rest) = rest.split_once("' failed: expected ")?;
    let (expected, _) = rest.split_once("', got '")?; // the policy's own value comes first
    let expected = expected.strip_prefix("prefix ").unwrap_or(expected).strip_prefix('\'')?;
    let condition = serde_json::json!([op, format!("${field}"), expected]);
    let condition = condition.to_string().replace("\",\"", "\", \"");
    Some(format!("Invalid according to Policy: Policy Condition failed: {condition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)], filename: &str) -> Vec<u8> {
        let mut out = String::new();
        for (k, v) in fields {
            out.push_str(&format!("--XyZ\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
        }
        out.push_str(&format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: image/png\r\n\r\nPNGDATA\r\n--XyZ--\r\n"
        ));
        out.into_bytes()
    }

    #[test]
    fn the_key_variable_takes_the_file_name() {
        let body = form(&[("key", "u/${filename}"), ("policy", "abc")], "cat.png");
        let out = rewrite(&body, &scan(&body, b"XyZ")).expect("rewritten");
        let expected = form(&[("key", "u/cat.png"), ("policy", "abc")], "cat.png");
        assert_eq!(out, Bytes::from(expected));
    }

    #[test]
    fn the_fields_before_the_file_are_read() {
        let body = form(&[("Policy", "abc"), ("x-amz-signature", "00ff")], "cat.png");
        let fields: Vec<(String, &[u8])> =
            scan(&body, b"XyZ").fields.into_iter().map(|(n, (from, to))| (n, &body[from..to])).collect();
        assert_eq!(fields, [("policy".to_owned(), &b"abc"[..]), ("x-amz-signature".to_owned(), &b"00ff"[..])]);
    }

    #[test]
    fn only_the_key_field_changes() {
        let body = form(&[("key", "plain"), ("x-amz-meta-n", "${filename}")], "cat.png");
        assert_eq!(rewrite(&body, &scan(&body, b"XyZ")), None);
        assert_eq!(scan(&body, b"XyZ").file.as_deref(), Some("cat.png"));
    }

    #[test]
    fn an_incomplete_head_is_not_rewritten() {
        let body = form(&[("key", "u/${filename}")], "cat.png");
        let cut = &body[..body.len() - 40]; // inside the file part's headers
        assert_eq!(scan(cut, b"XyZ").file, None);
        assert_eq!(rewrite(cut, &scan(cut, b"XyZ")), None);
    }

    #[test]
    fn a_head_read_as_it_trickles_in_reads_as_a_whole_one() {
        let body = form(&[("key", "u/${filename}"), ("policy", "abc"), ("x-amz-meta-a", "--X")], "cat.png");
        let whole = scan(&body, b"XyZ");
        assert_eq!(whole.fields.len(), 3);
        for step in [1, 2, 3, 7] {
            let mut scanner = Scanner::new(b"XyZ");
            for end in (step..body.len()).step_by(step).chain([body.len()]) {
                scanner.feed(&body[..end]);
            }
            assert_eq!(scanner.out, whole, "{step} bytes at a time");
        }
    }

    /// A body of `head`, a byte every `gap`.
    fn trickled(head: Vec<u8>, gap: std::time::Duration) -> s3s::Body {
        let frames = futures_util::stream::iter(head).then(move |byte| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![byte])))
        });
        s3s::Body::http_body(StreamBody::new(Box::pin(frames)))
    }

    #[tokio::test]
    async fn a_head_must_keep_pace() {
        let body = form(&[("key", "k"), ("policy", "abc")], "cat.png");
        let ms = std::time::Duration::from_millis;
        let pace = Pace { grace: ms(300), rate: 1000 };
        let request = |gap| Request::post("/b").body(trickled(body.clone(), gap)).expect("request");
        assert!(read_head(request(ms(0)), "XyZ", pace).await.is_ok(), "at once");
        assert!(read_head(request(ms(50)), "XyZ", pace).await.is_err(), "twenty bytes a second fall behind");
    }

    #[test]
    fn policy_failures_read_as_aws_words_them() {
        let starts = "Policy condition 'starts-with' for field 'key' failed: expected prefix 'u/', got 'x/a'";
        assert_eq!(
            aws_policy_message("InvalidPolicyDocument", starts).as_deref(),
            Some("Invalid according to Policy: Policy Condition failed: [\"starts-with\", \"$key\", \"u/\"]")
        );
        let eq = "Policy condition 'eq' for field 'content-type' failed: expected 'image/png', got 'a', got 'b'";
        assert_eq!(
            aws_policy_message("InvalidPolicyDocument", eq).as_deref(),
            Some("Invalid according to Policy: Policy Condition failed: [\"eq\", \"$content-type\", \"image/png\"]")
        );
        let extra = "Each form field that you specify in a form must appear in the list of policy conditions. \
                     \"x-amz-meta-a\" not specified in the policy.";
        assert_eq!(
            aws_policy_message("AccessDenied", extra).as_deref(),
            Some("Invalid according to Policy: Extra input fields: x-amz-meta-a")
        );
        assert_eq!(aws_policy_message("InvalidPolicyDocument", "failed to parse POST policy"), None);
        assert_eq!(aws_policy_message("AccessDenied", "Access Denied"), None);
    }

    #[test]
    fn boundary_from_content_type() {
        let req = |ct: &str| Request::post("/b").header("content-type", ct).body(()).expect("request");
        assert_eq!(boundary(&req("multipart/form-data; boundary=----abc")).as_deref(), Some("----abc"));
        assert_eq!(boundary(&req("Multipart/Form-Data; boundary=\"q\"")).as_deref(), Some("q"));
        assert_eq!(boundary(&req("application/xml")), None);
    }
}
