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

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
