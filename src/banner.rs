//! The startup banner: where everything is and how to point tools at it.
//!
//! It goes to stdout (logs go to stderr) so the `try:` line can be copied or
//! scraped as is: it is a complete POSIX shell command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::app::App;
use crate::config::{AwsConfig, Config, WebConfig};

pub fn print(config: &Config, app: &App, ephemeral: bool) {
    if ephemeral {
        println!("crunchbox data (ephemeral, deleted at exit): {}", config.data_dir.display());
    }
    if let Some(addr) = app.web_addr {
        println!("crunchbox web:        {}  (upload page at /, images at {}/a/ID)", url(addr), config.web.public_url);
    }
    if let Some(addr) = app.aws_addr {
        let aws = &config.aws;
        println!("crunchbox AWS (S3+SQS): {}  region {}", url(addr), aws.region);
        println!("  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}", sh(&aws.access_key_id), sh(&aws.secret_access_key));
        println!("  try: {}", try_line(aws, addr));
    }
    warn_if_exposed(config, app);
}

/// A copy-paste aws-cli command that lists the buckets.
fn try_line(aws: &AwsConfig, addr: SocketAddr) -> String {
    format!(
        "AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={} aws --endpoint-url {} s3 ls",
        sh(&aws.access_key_id),
        sh(&aws.secret_access_key),
        sh(&aws.region),
        url(addr)
    )
}

/// A URL a local client can connect to: a wildcard bind (0.0.0.0, ::) is
/// reachable on loopback, while `http://0.0.0.0` is not a real destination.
pub fn url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Quotes a value for a POSIX shell unless it is plainly safe.
fn sh(value: &str) -> String {
    let safe = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if safe { value.to_owned() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}

/// Default secrets on a non-loopback address let anyone on the network in.
fn warn_if_exposed(config: &Config, app: &App) {
    let defaults_aws = AwsConfig::default();
    let defaults_web = WebConfig::default();
    // The access key id is public by design; the secret is what keeps people out.
    let aws_default = config.aws.secret_access_key == defaults_aws.secret_access_key;
    if app.aws_addr.is_some_and(|a| !a.ip().is_loopback()) && aws_default {
        tracing::warn!(
            listen = %config.aws.listen,
            "THE EMBEDDED AWS ENDPOINT LISTENS BEYOND LOOPBACK WITH THE DEFAULT CREDENTIALS: set aws.access_key_id / aws.secret_access_key"
        );
    }
    let web_default = config.web.upload_tokens.iter().any(|t| defaults_web.upload_tokens.contains(t));
    if app.web_addr.is_some_and(|a| !a.ip().is_loopback()) && web_default {
        tracing::warn!(
            listen = %config.web.listen,
            "THE WEB ROLE LISTENS BEYOND LOOPBACK WITH THE DEFAULT UPLOAD TOKEN: set web.upload_tokens"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_shown_as_loopback() {
        assert_eq!(url("0.0.0.0:4566".parse().unwrap()), "http://127.0.0.1:4566");
        assert_eq!(url("[::]:8080".parse().unwrap()), "http://[::1]:8080");
        assert_eq!(url("10.1.2.3:80".parse().unwrap()), "http://10.1.2.3:80");
    }

    #[test]
    fn values_are_quoted_for_the_shell_when_needed() {
        assert_eq!(sh("crunchbox-secret"), "crunchbox-secret");
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's$"), r"'it'\''s$'");
        assert_eq!(sh(""), "''");
    }

    #[test]
    fn try_line_is_a_complete_command() {
        let line = try_line(&AwsConfig::default(), "127.0.0.1:4566".parse().unwrap());
        assert_eq!(
            line,
            "AWS_ACCESS_KEY_ID=crunchbox AWS_SECRET_ACCESS_KEY=crunchbox-secret AWS_DEFAULT_REGION=us-east-1 \
             aws --endpoint-url http://127.0.0.1:4566 s3 ls"
        );
    }
}
