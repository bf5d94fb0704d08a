//! The startup banner: where everything is and how to point tools at it.

use crate::app::App;
use crate::config::{AwsConfig, Config, WebConfig};

pub fn print(config: &Config, app: &App) {
    if let Some(addr) = app.web_addr {
        println!("crunchbox web:        http://{addr}  (upload page at /, images at {}/a/ID)", config.web.public_url);
    }
    if let Some(addr) = app.aws_addr {
        let url = format!("http://{addr}");
        println!("crunchbox AWS (S3+SQS): {url}  region {}", config.aws.region);
        println!(
            "  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
            config.aws.access_key_id, config.aws.secret_access_key
        );
        println!(
            "  try: AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={} aws --endpoint-url {url} s3 ls",
            config.aws.access_key_id, config.aws.secret_access_key, config.aws.region
        );
    }
    warn_if_exposed(config, app);
}

/// Default secrets on a non-loopback address let anyone on the network in.
fn warn_if_exposed(config: &Config, app: &App) {
    let defaults_aws = AwsConfig::default();
    let defaults_web = WebConfig::default();
    if app.aws_addr.is_some_and(|a| !a.ip().is_loopback())
        && config.aws.secret_access_key == defaults_aws.secret_access_key
    {
        tracing::warn!(
            listen = %config.aws.listen,
            "THE EMBEDDED AWS ENDPOINT LISTENS BEYOND LOOPBACK WITH THE DEFAULT CREDENTIALS: set aws.access_key_id / aws.secret_access_key"
        );
    }
    if app.web_addr.is_some_and(|a| !a.ip().is_loopback()) && config.web.upload_tokens == defaults_web.upload_tokens {
        tracing::warn!(
            listen = %config.web.listen,
            "THE WEB ROLE LISTENS BEYOND LOOPBACK WITH THE DEFAULT UPLOAD TOKEN: set web.upload_tokens"
        );
    }
}
