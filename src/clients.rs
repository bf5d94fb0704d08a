//! Builds the S3 and SQS clients: the only place the driver matters.
//!
//! Embedded mode points the official SDK at this process's own loopback
//! endpoint (or, for `crunchbox provision`, a running crunchbox's
//! `aws.listen`) with the configured static key pair. Aws mode uses the SDK's
//! default credential chain and region, optionally with another endpoint
//! (moto, MinIO, another crunchbox); the SDK also reads its own settings
//! there, e.g. `AWS_REQUEST_CHECKSUM_CALCULATION=when_required` for stores
//! that reject aws-chunked uploads with trailing checksums.

use std::borrow::Cow;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::retry::{RetryPartition, TokenBucket};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_types::timeout::TimeoutConfig;

use crate::config::{Config, Driver};

/// Idle connections the SDK keeps to the embedded endpoint. That listener
/// admits `aws.max_connections` at once, and an idle pooled connection holds
/// one of those slots until the SDK drops it (90 s) or the server's stall
/// timer does (60 s). A burst used to leave them all open: 1,000 event
/// streams opening at once took the web tier's pool to 870 connections,
/// leaving the worker (same endpoint) 154 of 1,024. Past this many, a
/// connection closes when it comes back to the pool. One such client
/// serves S3 and SQS, web and worker alike, so this is the process's cap.
pub const EMBEDDED_IDLE_CONNECTIONS: usize = 64;

/// The two SDK clients web and worker use; cheap to clone.
#[derive(Clone, Debug)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Where the clients point, phrased for error messages.
    pub target: String,
}

impl Clients {
    /// `embedded_endpoint` is the URL of the embedded listener; it is used
    /// only with the embedded driver.
    pub async fn new(config: &Config, embedded_endpoint: &str) -> Self {
        let (shared, target) = match config.driver {
            Driver::Embedded => {
                let creds = Credentials::new(
                    config.aws.access_key_id.clone(),
                    config.aws.secret_access_key.clone(),
                    None,
                    None,
                    "crunchbox-config",
                );
                // The SDK's default client but for the idle cap, and with no
                // proxy from the environment: this endpoint is crunchbox's own.
                let http = aws_smithy_http_client::Builder::new()
                    .pool_max_idle_per_host(EMBEDDED_IDLE_CONNECTIONS)
                    .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                    .build_https();
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .region(aws_config::Region::new(config.aws.region.clone()))
                    .credentials_provider(creds)
                    .http_client(http)
                    .endpoint_url(embedded_endpoint)
                    .load()
                    .await;
                (shared, format!("the crunchbox endpoint at {embedded_endpoint} (aws.listen)"))
            }
            Driver::Aws => {
                // The SDK's chain (AWS_REGION, profile, IMDS) decides; the
                // configured `aws.region` only fills in when it finds nothing.
                let region =
                    RegionProviderChain::default_provider().or_else(aws_config::Region::new(config.aws.region.clone()));
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
                if let Some(url) = &config.aws.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let shared = loader.load().await;
                let region = shared.region().map(|r| r.to_string()).unwrap_or_else(|| "?".into());
                let target = match &config.aws.endpoint_url {
                    Some(url) => format!("{url} (aws.endpoint_url, region {region})"),
                    None => format!("AWS (region {region})"),
                };
                (shared, target)
            }
        };
        // Path-style whenever the endpoint is not AWS's own: local emulators
        // rarely resolve `bucket.host` names.
        let path_style = config.driver == Driver::Embedded || config.aws.endpoint_url.is_some();
        let s3_conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style).build();
        Self { s3: aws_sdk_s3::Client::from_conf(s3_conf), sqs: aws_sdk_sqs::Client::new(&shared), target }
    }

    /// The same clients (credentials, connection pool, settings), with a
    /// retry budget of their own for `role`. The SDK's default is one token
    /// bucket per service and region for the whole process, and every retry
    /// (twice that for a timed-out attempt) takes from it: a web tier
    /// retrying through an S3 brownout would drain it and leave the
    /// worker's jobs no retry at all, each transient error then failing a
    /// job. A custom partition owns its bucket, even under a shared name.
    pub fn with_own_retries(&self, role: &'static str) -> Self {
        let partition = |service: &str| {
            RetryPartition::custom(format!("crunchbox-{role}-{service}")).token_bucket(TokenBucket::default()).build()
        };
        let s3 = self.s3.config().to_builder().retry_partition(partition("s3")).build();
        let sqs = self.sqs.config().to_builder().retry_partition(partition("sqs")).build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            target: self.target.clone(),
        }
    }

    /// The same clients (credentials, connection pool), with each attempt of
    /// every call given at most `timeout` to answer. The SDK sets no such
    /// bound: a request sent down a connection that died silently (a NAT
    /// or load balancer dropping it, a half-open socket) waits forever. A
    /// timed-out attempt is retried like any transient error. The bound
    /// covers sending the request body and, but for streamed outputs
    /// (GetObject's body), reading the answer; a streamed body is under the
    /// SDK's stalled-stream protection instead.
    pub fn with_attempt_timeout(&self, timeout: Duration) -> Self {
        // The config builders lay a new timeout config over the one they
        // hold, so the rest of it (the 3.1 s connect timeout) stays.
        let bounded = TimeoutConfig::builder().operation_attempt_timeout(timeout).build();
        let s3 = self.s3.config().to_builder().timeout_config(bounded.clone()).build();
        let sqs = self.sqs.config().to_builder().timeout_config(bounded).build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            target: self.target.clone(),
        }
    }

    /// The region the clients sign for (bucket creation needs it).
    pub fn region(&self) -> Option<String> {
        self.s3.config().region().map(|r| r.to_string())
    }
}

/// A failed S3 or SQS call: what was being done, with the SDK's error as
/// its source. Its `Display` is only the `what`, fit for a client; the
/// endpoint URLs and connector errors of the chain go to the logs and to
/// operators, through [`CallError::detail`].
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct CallError {
    what: Cow<'static, str>,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl CallError {
    pub fn new(what: impl Into<Cow<'static, str>>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { what: what.into(), source: Box::new(source) }
    }

    /// For `map_err`: `.map_err(CallError::on("fetching the original"))`.
    pub fn on<E: std::error::Error + Send + Sync + 'static>(what: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::new(what, e)
    }

    /// What was being done, as a client may be told.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// `what: cause: cause…`, the whole chain on one line, for logs.
    pub fn detail(&self) -> String {
        cause_chain(self)
    }
}

/// `a: b: c` from an error and its sources, without the Debug dumps that
/// `DisplayErrorContext` appends; repeated texts are said once.
pub fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if parts.last().is_none_or(|last| *last != text) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}
