//! The startup banner: where everything is and how to point tools at it.
//!
//! It goes to stdout (logs go to stderr) so the `try:` line can be copied or
//! scraped as is: it is a complete POSIX shell command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::app::App;
use crate::cli::Role;
use crate::config::{AwsConfig, Config, WebConfig};

pub fn print(config: &Config, app: &App, ephemeral: bool) {
    if ephemeral {
        println!("crunchbox data (ephemeral, deleted at exit): {}", config.data_dir.display());
    }
    if let Some(addr) = app.web_addr {
        let public_url = config.public_url(Some(addr));
        println!(
            "crunchbox web:        {}  (upload page at /, images at {}/a/ID)",
            url(addr),
            public_url.trim_end_matches('/')
        );
    }
    if let Some(addr) = app.aws_addr {
        let aws = &config.aws;
        let s3 = app.roles.contains(&Role::S3);
        let services = match (s3, app.roles.contains(&Role::Sqs)) {
            (true, true) => "S3+SQS",
            (true, false) => "S3",
            _ => "SQS",
        };
        println!("crunchbox AWS ({services}): {}  region {}", url(addr), aws.region);
        println!("  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}", sh(&aws.access_key_id), sh(&aws.secret_access_key));
        println!("  try: {}", try_line(aws, addr, if s3 { "s3 ls" } else { "sqs list-queues" }));
    }
    warn_if_exposed(config, app);
    warn_if_elsewhere(config, app);
}

/// A copy-paste aws-cli command that lists the buckets (or the queues).
fn try_line(aws: &AwsConfig, addr: SocketAddr, command: &str) -> String {
    format!(
        "AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={} aws --endpoint-url {} {command}",
        sh(&aws.access_key_id),
        sh(&aws.secret_access_key),
        sh(&aws.region),
        url(addr)
    )
}

/// A `web.public_url` set to a loopback address other than the one the web
/// role listens on (say the listen port was changed and the URL was not)
/// hands out links that lead nowhere on this machine: say so once.
fn warn_if_elsewhere(config: &Config, app: &App) {
    let (Some(listening), false) = (app.web_addr, config.web.public_url.is_empty()) else { return };
    if let Some(named) = loopback_elsewhere(&config.web.public_url, listening) {
        tracing::warn!(
            public_url = %config.web.public_url,
            listen = %listening,
            "web.public_url points at {named} on this machine, but the web role listens on {listening}: the URLs \
             handed out lead elsewhere (unset web.public_url to derive it from web.listen)"
        );
    }
}

/// The `host:port` of `public_url` when both it and `listening` are on
/// loopback and they differ; `None` when they match or either is not local.
fn loopback_elsewhere(public_url: &str, listening: SocketAddr) -> Option<String> {
    if !listening.ip().is_loopback() {
        return None;
    }
    let (scheme, rest) = public_url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse::<u16>().ok()?),
        _ => (authority, if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let same_host = match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => ip == listening.ip(),
        Ok(_) => return None,
        Err(_) if host == "localhost" || host.ends_with(".localhost") => true,
        Err(_) => return None,
    };
    let named = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    (!same_host || port != listening.port()).then_some(named)
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
        let line = try_line(&AwsConfig::default(), "127.0.0.1:4566".parse().unwrap(), "s3 ls");
        assert_eq!(
            line,
            "AWS_ACCESS_KEY_ID=crunchbox AWS_SECRET_ACCESS_KEY=crunchbox-secret AWS_DEFAULT_REGION=us-east-1 \
             aws --endpoint-url http://127.0.0.1:4566 s3 ls"
        );
    }

    #[test]
    fn a_public_url_elsewhere_on_loopback_is_noticed() {
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        let listening = at("127.0.0.1:28080");
        assert_eq!(loopback_elsewhere("http://127.0.0.1:8080", listening).as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(loopback_elsewhere("http://localhost:8080/", listening).as_deref(), Some("localhost:8080"));
        assert_eq!(loopback_elsewhere("http://127.0.0.2:28080", listening).as_deref(), Some("127.0.0.2:28080"));
        assert_eq!(loopback_elsewhere("http://localhost", listening).as_deref(), Some("localhost:80"));
        assert_eq!(loopback_elsewhere("http://127.0.0.1:28080", listening), None);
        assert_eq!(loopback_elsewhere("http://localhost:28080/base", listening), None);
        // Not on loopback: a CDN, or a wildcard bind behind a published port.
        assert_eq!(loopback_elsewhere("https://avatars.example.com", listening), None);
        assert_eq!(loopback_elsewhere("http://10.0.0.1:8080", listening), None);
        assert_eq!(loopback_elsewhere("http://localhost:9000", at("0.0.0.0:8080")), None);
        assert_eq!(loopback_elsewhere("http://[::1]:8080", at("[::1]:8080")), None);
        assert_eq!(loopback_elsewhere("http://[::1]:8081", at("[::1]:8080")).as_deref(), Some("[::1]:8081"));
    }
}
