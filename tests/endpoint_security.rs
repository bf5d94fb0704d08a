//! The embedded AWS endpoint as an attacker on the network sees it: a
//! captured signed request replayed with another body, unsigned requests,
//! presigned URLs that live too long, receipt handles nobody was given.
//! Requests are signed with aws-sigv4 (what the SDKs use), then bent.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use common::{ACCESS_KEY, SECRET_KEY, TestServer};
use crunchbox::cli::Role;

/// A request as it goes on the wire.
struct Wire {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
}

/// Signs `method url` with `body` as an SDK would, with the payload hash
/// in `x-amz-content-sha256` (so the body can be swapped under it).
fn signed(method: &'static str, url: &str, headers: &[(&str, &str)], body: &[u8], service: &str) -> Wire {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    sign_with(method, url, headers, SignableBody::Bytes(body), service, settings)
}

fn sign_with(
    method: &'static str,
    url: &str,
    headers: &[(&str, &str)],
    body: SignableBody<'_>,
    service: &str,
    settings: SigningSettings,
) -> Wire {
    let identity = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(()).unwrap();
    let signable = SignableRequest::new(method, url, headers.iter().copied(), body).expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    instructions.apply_to_request_http1x(&mut req);
    Wire {
        method,
        url: req.uri().to_string(),
        headers: req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned())).collect(),
    }
}

/// Sends `wire` with `body` (not necessarily the one signed).
async fn send(wire: &Wire, body: Vec<u8>) -> (u16, http::HeaderMap, String) {
    let method = reqwest::Method::from_bytes(wire.method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new().request(method, &wire.url).body(body);
    for (k, v) in &wire.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let mut headers = http::HeaderMap::new();
    for (k, v) in resp.headers() {
        headers.insert(
            http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    (status, headers, resp.text().await.unwrap())
}

fn xml_code(xml: &str) -> Option<&str> {
    let start = xml.find("<Code>")? + "<Code>".len();
    Some(&xml[start..start + xml[start..].find("</Code>")?])
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[tokio::test]
async fn a_signed_sqs_request_cannot_carry_another_body() {
    let server = TestServer::start(&[Role::Sqs]).await;
    let sqs = server.sqs().await;
    let url = sqs.create_queue().queue_name("victim").send().await.unwrap().queue_url.unwrap();
    let ep = server.endpoint();

    // Query protocol: ListQueues signed, DeleteQueue sent.
    let list = b"Action=ListQueues&Version=2012-11-05".to_vec();
    let wire = signed("POST", &format!("{ep}/"), &[FORM], &list, "sqs");
    let evil = format!("Action=DeleteQueue&QueueUrl={}&Version=2012-11-05", urlencode(&url)).into_bytes();
    let (status, _, body) = send(&wire, evil).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(xml_code(&body), Some("SignatureDoesNotMatch"), "{body}");
    // The captured request itself still works: only the body was bent.
    let (status, _, body) = send(&wire, list).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/victim</QueueUrl>"), "the queue survived: {body}");

    // JSON protocol: SendMessage of one body signed, another sent.
    let target = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", "AmazonSQS.SendMessage")];
    let good = format!(r#"{{"QueueUrl":"{url}","MessageBody":"hello"}}"#).into_bytes();
    let bent = format!(r#"{{"QueueUrl":"{url}","MessageBody":"HACKED"}}"#).into_bytes();
    let wire = signed("POST", &format!("{ep}/"), &target, &good, "sqs");
    let (status, headers, body) = send(&wire, bent).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(headers["x-amzn-query-error"], "SignatureDoesNotMatch;Sender");
    let got = sqs.receive_message().queue_url(&url).wait_time_seconds(1).send().await.unwrap();
    assert!(got.messages().is_empty(), "nothing was enqueued: {:?}", got.messages());

    // A hash header that disagrees with the body is refused even when the
    // signature covers that header (UNSIGNED-PAYLOAD is not for SQS).
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let wire = sign_with("POST", &format!("{ep}/"), &target, SignableBody::Bytes(&good), "sqs", settings);
    let mut unsigned_payload = Wire { method: wire.method, url: wire.url.clone(), headers: wire.headers.clone() };
    for (k, v) in &mut unsigned_payload.headers {
        if k == "x-amz-content-sha256" {
            *v = "UNSIGNED-PAYLOAD".into();
        }
    }
    let (status, headers, _) = send(&unsigned_payload, good.clone()).await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-amzn-query-error"], "SignatureDoesNotMatch;Sender");
    let (status, _, body) = send(&wire, good).await;
    assert_eq!(status, 200, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_signed_sts_or_s3_request_cannot_carry_another_body() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let ep = server.endpoint();
    let body = b"Action=GetCallerIdentity&Version=2011-06-15".to_vec();
    let wire = signed("POST", &format!("{ep}/"), &[FORM], &body, "sts");
    let (status, _, text) = send(&wire, b"Action=GetCallerIdentity&Version=2011-06-16".to_vec()).await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(xml_code(&text), Some("SignatureDoesNotMatch"));
    let (status, _, text) = send(&wire, body).await;
    assert_eq!(status, 200, "{text}");

    // S3 (s3s) checks the payload hash of a PUT against the bytes.
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bodies").send().await.unwrap();
    let wire = signed("PUT", &format!("{ep}/bodies/key"), &[], b"the signed bytes", "s3");
    let (status, _, text) = send(&wire, b"other bytes, same!".to_vec()).await;
    assert!(status == 400 || status == 403, "{status} {text}");
    assert!(s3.head_object().bucket("bodies").key("key").send().await.is_err(), "nothing stored");
    let (status, _, text) = send(&wire, b"the signed bytes".to_vec()).await;
    assert_eq!(status, 200, "{text}");
    server.shutdown().await;
}

/// `wire` with one more header, added after signing.
fn with_header(wire: &Wire, name: &str, value: &str) -> Wire {
    let mut headers = wire.headers.clone();
    headers.push((name.to_owned(), value.to_owned()));
    Wire { method: wire.method, url: wire.url.clone(), headers }
}

#[tokio::test]
async fn x_amz_headers_added_after_signing_are_refused() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let ep = server.endpoint();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("private").send().await.unwrap();
    s3.put_object().bucket("private").key("secret").body(b"secret bytes".to_vec().into()).send().await.unwrap();
    s3.create_bucket().bucket("drop").send().await.unwrap();

    // A presigned PUT (what a browser upload is given) and a header-signed
    // PUT, each bent into a copy of the private object.
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(300));
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let url = format!("{ep}/drop/upload");
    let presigned = sign_with("PUT", &url, &[], SignableBody::UnsignedPayload, "s3", settings);
    let header_signed = signed("PUT", &url, &[], b"", "s3");
    for wire in [&presigned, &header_signed] {
        let (status, _, text) = send(&with_header(wire, "x-amz-copy-source", "private/secret"), vec![]).await;
        assert_eq!(status, 403, "{text}");
        assert_eq!(xml_code(&text), Some("AccessDenied"), "{text}");
        assert!(text.contains("<HeadersNotSigned>x-amz-copy-source</HeadersNotSigned>"), "{text}");
        assert!(s3.head_object().bucket("drop").key("upload").send().await.is_err(), "nothing was copied");
    }
    let (status, _, text) = send(&presigned, b"the upload".to_vec()).await;
    assert_eq!(status, 200, "the URL as given still works: {text}");

    // SQS JSON: a captured ReceiveMessage whose X-Amz-Target was left
    // unsigned, replayed as PurgeQueue.
    let sqs = server.sqs().await;
    let queue = sqs.create_queue().queue_name("kept").send().await.unwrap().queue_url.unwrap();
    sqs.send_message().queue_url(&queue).message_body("keep me").send().await.unwrap();
    let body = format!(r#"{{"QueueUrl":"{queue}"}}"#).into_bytes();
    let wire = signed("POST", &format!("{ep}/"), &[("content-type", "application/x-amz-json-1.0")], &body, "sqs");
    let (status, headers, text) = send(&with_header(&wire, "x-amz-target", "AmazonSQS.PurgeQueue"), body).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(headers["x-amzn-query-error"], "IncompleteSignature;Sender");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let left =
        attrs.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages));
    assert_eq!(left.map(String::as_str), Some("1"), "the queue was not purged");
    server.shutdown().await;
}

#[tokio::test]
async fn unsigned_requests_get_missing_authentication_token() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let ep = server.endpoint();
    let http = reqwest::Client::new();
    let query = http
        .post(format!("{ep}/"))
        .header(FORM.0, FORM.1)
        .body("Action=ListQueues&Version=2012-11-05")
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 403);
    let text = query.text().await.unwrap();
    assert_eq!(xml_code(&text), Some("MissingAuthenticationToken"), "{text}");
    assert!(text.starts_with("<?xml") || text.contains("<ErrorResponse"), "{text}");

    let get = http.get(format!("{ep}/?Action=ListQueues")).send().await.unwrap();
    assert_eq!(get.status(), 403);
    assert_eq!(xml_code(&get.text().await.unwrap()), Some("MissingAuthenticationToken"));

    let json = http
        .post(format!("{ep}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 403);
    assert_eq!(json.headers()["x-amzn-query-error"], "MissingAuthenticationToken;Sender");

    // S3 stays S3: an anonymous write is S3's AccessDenied.
    let put = http.put(format!("{ep}/crunchbox-public/x")).body("x").send().await.unwrap();
    assert_eq!(put.status(), 403);
    assert_eq!(xml_code(&put.text().await.unwrap()), Some("AccessDenied"));
    server.shutdown().await;
}

#[tokio::test]
async fn presigned_urls_live_at_most_seven_days() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let ep = server.endpoint();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("presign").send().await.unwrap();
    s3.put_object().bucket("presign").key("k").body(b"v".to_vec().into()).send().await.unwrap();
    let presigned = |url: String, service: &str, lifetime: Duration| {
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(lifetime);
        // S3 presigns with an unsigned payload and single-encoded paths.
        let body = if service == "s3" {
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(b"")
        };
        sign_with("GET", &url, &[], body, service, settings)
    };
    let week = Duration::from_secs(7 * 24 * 3600);
    for (url, service) in [(format!("{ep}/presign/k"), "s3"), (format!("{ep}/?Action=ListQueues"), "sqs")] {
        let (status, _, text) = send(&presigned(url.clone(), service, week + Duration::from_secs(1)), vec![]).await;
        assert_eq!(status, 400, "{service}: {text}");
        assert_eq!(xml_code(&text), Some("AuthorizationQueryParametersError"), "{service}: {text}");
        let (status, _, text) = send(&presigned(url, service, week), vec![]).await;
        assert_eq!(status, 200, "{service}: {text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn receipt_handles_that_were_never_issued_are_invalid() {
    let server = TestServer::start(&[Role::Sqs]).await;
    let sqs = server.sqs().await;
    let url = sqs.create_queue().queue_name("handles").send().await.unwrap().queue_url.unwrap();
    for body in ["first", "second"] {
        sqs.send_message().queue_url(&url).message_body(body).send().await.unwrap();
    }
    let got = sqs.receive_message().queue_url(&url).max_number_of_messages(1).send().await.unwrap();
    let issued = got.messages()[0].receipt_handle().unwrap().to_owned();

    // The issued handle bent to name the next message (sequence + 1), or a
    // later receive of the same one: never issued, so invalid.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut raw = b64.decode(&issued).expect("handles are base64url");
    for at in [15, 23] {
        let mut bent = raw.clone();
        bent[at] = bent[at].wrapping_add(1);
        let err = sqs.delete_message().queue_url(&url).receipt_handle(b64.encode(&bent)).send().await.unwrap_err();
        let err = err.into_service_error();
        assert_eq!(err.code(), Some("ReceiptHandleIsInvalid"), "{err:?}");
        let err = sqs
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(b64.encode(&bent))
            .visibility_timeout(0)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(err.code(), Some("ReceiptHandleIsInvalid"), "{err:?}");
    }
    raw.truncate(raw.len() - 1);
    let err = sqs.delete_message().queue_url(&url).receipt_handle(b64.encode(&raw)).send().await.unwrap_err();
    // AWS's service model answers this one with 404.
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));
    assert_eq!(err.into_service_error().code(), Some("ReceiptHandleIsInvalid"));

    // Nothing was deleted: the second message is still there, the first
    // still deletes with its real handle.
    let got = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(got.messages().iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), ["second"]);
    sqs.delete_message().queue_url(&url).receipt_handle(&issued).send().await.expect("the real handle deletes");

    // Handles survive a restart (the key is kept in the store).
    let mut server = server;
    let handle = got.messages()[0].receipt_handle().unwrap().to_owned();
    server.restart().await;
    let sqs = server.sqs().await;
    let url = sqs.get_queue_url().queue_name("handles").send().await.unwrap().queue_url.unwrap();
    sqs.delete_message().queue_url(&url).receipt_handle(&handle).send().await.expect("valid after a restart");
    let left = sqs.receive_message().queue_url(&url).visibility_timeout(0).send().await.unwrap();
    assert!(left.messages().is_empty(), "{:?}", left.messages());
    server.shutdown().await;
}

/// A query-protocol GET signed with one spelling of its parameters may not
/// be sent with another that reads differently: `+` (a space to the
/// service) for `%2B`, or a repeated parameter whose copies the signature
/// sorts but the service would take the last of.
#[tokio::test]
async fn a_signed_query_cannot_be_respelled_or_repeat_a_parameter() {
    let server = TestServer::start(&[Role::Sqs]).await;
    let sqs = server.sqs().await;
    let url = sqs.create_queue().queue_name("payments").send().await.unwrap().queue_url.unwrap();
    let ep = server.endpoint();
    let query = |body: &str| format!("{ep}/?Action=SendMessage&QueueUrl={}&{body}&Version=2012-11-05", urlencode(&url));

    let wire = signed("GET", &query("MessageBody=pay%2B100"), &[], b"", "sqs");
    let respelled = Wire { url: wire.url.replace("pay%2B100", "pay+100"), ..wire };
    assert!(respelled.url.contains("pay+100"), "{}", respelled.url);
    let (status, _, text) = send(&respelled, vec![]).await;
    assert_eq!((status, xml_code(&text)), (403, Some("SignatureDoesNotMatch")), "{text}");

    let wire = signed("GET", &query("MessageBody=first&MessageBody=second"), &[], b"", "sqs");
    let (status, _, text) = send(&wire, vec![]).await;
    assert_eq!((status, xml_code(&text)), (400, Some("InvalidParameterValue")), "{text}");

    let wire = signed("GET", &query("MessageBody=pay%2B100"), &[], b"", "sqs");
    let (status, _, text) = send(&wire, vec![]).await;
    assert_eq!(status, 200, "{text}");
    let got = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["pay+100"]);
    server.shutdown().await;
}

/// `Authorization: AWS key:signature` (Signature Version 2) over a request.
fn sigv2_header(method: &str, path: &str, date: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
    mac.update(format!("{method}\n\n\n{date}\n{path}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("AWS {ACCESS_KEY}:{signature}")
}

/// Signature Version 2 binds no body and, in a header, no time anyone
/// checks: such a request is refused (as AWS refuses it for buckets made
/// since 2020) and stores nothing. A V2 presigned URL (what botocore makes
/// by default) still works, for at most the week SigV4 allows.
#[tokio::test]
async fn signature_v2_headers_are_refused_and_v2_urls_live_at_most_a_week() {
    let server = TestServer::start(&[Role::S3]).await;
    let ep = server.endpoint();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("sigv2").send().await.unwrap();
    let http = reqwest::Client::new();
    let date = "Mon, 01 Jan 2001 00:00:00 GMT";
    let put = http
        .put(format!("{ep}/sigv2/key"))
        .header("date", date)
        .header("authorization", sigv2_header("PUT", "/sigv2/key", date))
        .body("signed in 2001")
        .send()
        .await
        .unwrap();
    let status = put.status().as_u16();
    let text = put.text().await.unwrap();
    assert_eq!((status, xml_code(&text)), (400, Some("InvalidRequest")), "{text}");
    assert!(s3.head_object().bucket("sigv2").key("key").send().await.is_err(), "nothing stored");

    s3.put_object().bucket("sigv2").key("key").body(b"v".to_vec().into()).send().await.unwrap();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let presigned = |expires: u64| {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
        mac.update(format!("GET\n\n\n{expires}\n/sigv2/key").as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        format!("{ep}/sigv2/key?AWSAccessKeyId={ACCESS_KEY}&Expires={expires}&Signature={}", urlencode(&signature))
    };
    let got = http.get(presigned(now + 3600)).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let far = http.get(presigned(now + 8 * 24 * 3600)).send().await.unwrap();
    assert_eq!(far.status(), 400);
    assert_eq!(xml_code(&far.text().await.unwrap()), Some("AuthorizationQueryParametersError"));
    server.shutdown().await;
}

/// An unsigned (or wrongly signed) PUT in `Transfer-Encoding: chunked`
/// with no length is refused at once, before its body is read: it must not
/// make the store spool up to 5 GiB to disk ahead of the signature check.
/// The client sends one chunk and waits: the answer comes without the rest.
#[tokio::test]
async fn a_chunked_put_without_a_valid_signature_is_refused_before_its_body() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start(&[Role::S3]).await;
    server.s3().await.create_bucket().bucket("spool").send().await.unwrap();
    let host = server.endpoint().trim_start_matches("http://").to_owned();
    let forged = format!(
        "Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}\r\nx-amz-date: 20260101T000000Z\r\n\
         x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n",
        "0".repeat(64)
    );
    for auth in [String::new(), forged] {
        let mut sock = tokio::net::TcpStream::connect(&host).await.unwrap();
        let head = format!("PUT /spool/big HTTP/1.1\r\nHost: {host}\r\n{auth}Transfer-Encoding: chunked\r\n\r\n");
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(format!("{:x}\r\n", 64 * 1024).as_bytes()).await.unwrap();
        sock.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
        sock.write_all(b"\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut buf))
            .await
            .expect("an answer before the body ends")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(text.starts_with("HTTP/1.1 403") || text.starts_with("HTTP/1.1 400"), "{text}");
        let spooled: Vec<_> = std::fs::read_dir(server.config.data_dir.join("s3").join("tmp")).unwrap().collect();
        assert!(spooled.is_empty(), "spooled: {spooled:?}");
    }
    server.shutdown().await;
}

/// An aws-chunked upload (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, as SDKs
/// send over TLS) is whole only with as many bytes as its signed
/// `x-amz-decoded-content-length` says and the checksum trailer its signed
/// `x-amz-trailer` announced, which is all that binds its body: a stream
/// cut after a chunk, or without its trailer, stores nothing.
#[tokio::test]
async fn an_aws_chunked_upload_cut_short_or_without_its_trailer_is_not_stored() {
    let server = TestServer::start(&[Role::S3]).await;
    let s3 = server.s3().await;
    s3.create_bucket().bucket("chunks").send().await.unwrap();
    let ep = server.endpoint();
    let data = vec![b'a'; 70_100];
    let crc = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(bytes).to_be_bytes());
    let framed = |chunks: &[&[u8]], trailer: Option<&str>| {
        let mut body = Vec::new();
        for c in chunks {
            body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            body.extend_from_slice(c);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        if let Some(t) = trailer {
            body.extend_from_slice(format!("x-amz-checksum-crc32:{t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body
    };
    let put = |key: &str, body: Vec<u8>| {
        let len = body.len().to_string();
        let decoded = data.len().to_string();
        let headers = [
            ("content-encoding", "aws-chunked"),
            ("content-length", len.as_str()),
            ("x-amz-decoded-content-length", decoded.as_str()),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
        ];
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        let payload = SignableBody::Precomputed("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into());
        let wire = sign_with("PUT", &format!("{ep}/chunks/{key}"), &headers, payload, "s3", settings);
        async move { send(&wire, body).await }
    };
    let (head, tail) = data.split_at(70_000);

    let (status, _, text) = put("cut", framed(&[head], Some(&crc(head)))).await;
    assert_eq!((status, xml_code(&text)), (400, Some("IncompleteBody")), "{text}");
    let (status, _, text) = put("untrailed", framed(&[head, tail], None)).await;
    assert_eq!((status, xml_code(&text)), (400, Some("IncompleteBody")), "{text}");
    for key in ["cut", "untrailed"] {
        assert!(s3.head_object().bucket("chunks").key(key).send().await.is_err(), "{key} was stored");
    }
    let (status, _, text) = put("whole", framed(&[head, tail], Some(&crc(&data)))).await;
    assert_eq!(status, 200, "{text}");
    let got = s3.get_object().bucket("chunks").key("whole").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), data);
    server.shutdown().await;
}

/// SQS must hold a body whole before it can check the signature over it,
/// so a request naming a known key id is given a share of the body budget
/// on its word. One that then trickles is cut as soon as it falls behind
/// the held-body pace (`budget::HELD_PACE`), rather than keeping its share
/// (and, twenty such, the whole budget) for as long as it keeps trickling.
#[tokio::test]
async fn a_body_sqs_must_hold_that_trickles_is_cut() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start(&[Role::Sqs]).await;
    let host = server.endpoint().trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Amz-Date: 20260101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential={ACCESS_KEY}/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, \
         Signature=00\r\nContent-Length: 3000000\r\n\r\nAction=ListQueues&Version=2012-11-05&Pad="
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = sock.split();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if writer.write_all(b"x").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let mut buf = vec![0u8; 4096];
    let n = tokio::select! {
        n = reader.read(&mut buf) => n.unwrap(),
        () = trickle => unreachable!(),
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("still reading the trickle after 30 s"),
    };
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("RequestTimeout"), "{answer}");
    server.shutdown().await;
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
