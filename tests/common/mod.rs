//! Shared harness for the integration tests: a real crunchbox started
//! in-process on ephemeral loopback ports over a temporary data dir, and
//! official AWS SDK clients pointed at it.

#![allow(dead_code)]

pub mod sqs;
pub mod web;

use std::net::SocketAddr;
use std::path::Path;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use crunchbox::app::{self, App};
use crunchbox::cli::Role;
use crunchbox::config::Config;

pub const ACCESS_KEY: &str = "crunchbox";
pub const SECRET_KEY: &str = "crunchbox-secret";
pub const ALL_ROLES: [Role; 4] = [Role::S3, Role::Sqs, Role::Web, Role::Worker];

/// A running server and the temp dir holding its data.
pub struct TestServer {
    pub app: Option<App>,
    pub config: Config,
    pub dir: tempfile::TempDir,
    pub roles: Vec<Role>,
}

/// A configuration on ephemeral ports over `data_dir`.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config { data_dir: data_dir.to_owned(), ..Config::default() };
    config.aws.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.web.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.crunch.concurrency = 2;
    config
}

impl TestServer {
    pub async fn start(roles: &[Role]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path());
        Self::start_with(config, dir, roles).await
    }

    pub async fn start_with(config: Config, dir: tempfile::TempDir, roles: &[Role]) -> Self {
        let app = app::start(config.clone(), roles).await.expect("server starts");
        Self { app: Some(app), config, dir, roles: roles.to_vec() }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("server is running")
    }

    /// `http://127.0.0.1:PORT` of the embedded AWS endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.app().aws_addr.expect("aws roles run"))
    }

    /// `http://127.0.0.1:PORT` of the web role.
    pub fn web_url(&self) -> String {
        format!("http://{}", self.app().web_addr.expect("web role runs"))
    }

    /// Graceful stop, then start again on the same data dir (same ports
    /// are not guaranteed; fetch endpoint() again).
    pub async fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        let app = app::start(self.config.clone(), &self.roles).await.expect("server restarts");
        self.app = Some(app);
    }

    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config(&self.endpoint(), ACCESS_KEY, SECRET_KEY).await
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint(), ACCESS_KEY, SECRET_KEY).await
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }
}

pub async fn sdk_config(endpoint: &str, access: &str, secret: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access, secret, None, None, "test"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A path-style S3 client with the given key pair.
pub async fn s3_client(endpoint: &str, access: &str, secret: &str) -> aws_sdk_s3::Client {
    let shared = sdk_config(endpoint, access, secret).await;
    let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build();
    aws_sdk_s3::Client::from_conf(conf)
}
