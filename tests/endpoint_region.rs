//! Requests signed for another region than `aws.region`, as AWS answers
//! them: S3 with 400 `AuthorizationHeaderMalformed` (or, presigned,
//! `AuthorizationQueryParametersError`) naming the right region in
//! `<Region>`, which clients follow (s3cmd signs for `US` by default). SQS
//! and STS answer any region, as LocalStack does.

mod common;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use common::{ACCESS_KEY, SECRET_KEY, TestServer};
use crunchbox::cli::Role;

async fn sdk_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .endpoint_url(endpoint)
        .load()
        .await
}

async fn s3_in(endpoint: &str, region: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&sdk_config(endpoint, region).await).force_path_style(true).build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test]
async fn s3_names_the_region_to_sign_for() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let endpoint = server.endpoint();
    server.s3().await.create_bucket().bucket("here").send().await.expect("create");

    let err = s3_in(&endpoint, "US").await.list_buckets().send().await.expect_err("wrong region");
    assert_eq!(err.code(), Some("AuthorizationHeaderMalformed"));
    assert_eq!(
        err.message(),
        Some("The authorization header is malformed; the region 'US' is wrong; expecting 'us-east-1'")
    );
    let raw = err.raw_response().expect("an answer");
    assert_eq!(raw.status().as_u16(), 400);
    let body = std::str::from_utf8(raw.body().bytes().expect("body")).unwrap().to_owned();
    assert!(body.contains("<Region>us-east-1</Region>"), "{body}");

    // A presigned URL for the wrong region says so in its own words.
    let presigned = s3_in(&endpoint, "eu-west-1")
        .await
        .get_object()
        .bucket("here")
        .key("k")
        .presigned(PresigningConfig::expires_in(std::time::Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let resp = reqwest::get(presigned.uri()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Code>AuthorizationQueryParametersError</Code>"), "{body}");
    assert!(body.contains("the region 'eu-west-1' is wrong; expecting 'us-east-1'"), "{body}");
    assert!(body.contains("<Region>us-east-1</Region>"), "{body}");

    // Signed for the right region, everything is as before.
    let listed = server.s3().await.list_buckets().send().await.expect("right region");
    assert!(listed.buckets().iter().any(|b| b.name() == Some("here")));
    server.shutdown().await;
}

/// SQS (like STS) keeps one namespace whatever region a request is signed for
/// (LocalStack's users and moto's SQS suite sign for several); only S3,
/// whose clients follow `<Region>`, holds them to `aws.region`.
#[tokio::test]
async fn sqs_answers_any_region() {
    let server = TestServer::start(&[Role::S3, Role::Sqs]).await;
    let endpoint = server.endpoint();
    let elsewhere = sdk_config(&endpoint, "eu-west-1").await;

    let sqs = aws_sdk_sqs::Client::new(&elsewhere);
    let made = sqs.create_queue().queue_name("anywhere").send().await.expect("SQS in another region");
    let url = made.queue_url().unwrap_or_default().to_owned();
    let listed = server.sqs().await.list_queues().send().await.expect("SQS in aws.region");
    assert!(listed.queue_urls().contains(&url), "one namespace: {listed:?}");

    // S3 from the same client configuration is told where to sign.
    let err = aws_sdk_s3::Client::new(&elsewhere).list_buckets().send().await.expect_err("wrong region");
    assert_eq!(err.code(), Some("AuthorizationHeaderMalformed"));
    server.shutdown().await;
}
