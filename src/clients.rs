//! Builds the S3 and SQS clients: the only place the driver matters.
//!
//! Embedded mode points the official SDK at this process's own loopback
//! endpoint with the configured static key pair; aws mode uses the SDK's
//! default credential chain and region, optionally with another endpoint.

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;

use crate::config::{Config, Driver};

/// The two SDK clients web and worker use; cheap to clone.
#[derive(Clone, Debug)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// `embedded_endpoint` is the URL of the embedded listener; it is used
    /// only with the embedded driver.
    pub async fn new(config: &Config, embedded_endpoint: &str) -> Self {
        let shared = match config.driver {
            Driver::Embedded => {
                let creds = Credentials::new(
                    config.aws.access_key_id.clone(),
                    config.aws.secret_access_key.clone(),
                    None,
                    None,
                    "crunchbox-config",
                );
                aws_config::defaults(BehaviorVersion::latest())
                    .region(aws_config::Region::new(config.aws.region.clone()))
                    .credentials_provider(creds)
                    .endpoint_url(embedded_endpoint)
                    .load()
                    .await
            }
            Driver::Aws => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(url) = &config.aws.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                loader.load().await
            }
        };
        // Path-style whenever the endpoint is not AWS's own: local emulators
        // rarely resolve `bucket.host` names.
        let path_style = config.driver == Driver::Embedded || config.aws.endpoint_url.is_some();
        let s3_conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style).build();
        Self { s3: aws_sdk_s3::Client::from_conf(s3_conf), sqs: aws_sdk_sqs::Client::new(&shared) }
    }
}
