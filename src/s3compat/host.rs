//! Which bucket a `Host` header names. `bucket.<domain>[:port]` is
//! virtual-host style; anything else (the bare domain, an IP address, a
//! container name) is path style. s3s's own `SingleDomain` would read
//! `127.0.0.1:4566` as a bucket, which breaks every path-style client.

use std::borrow::Cow;

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

#[derive(Clone)]
pub struct Hosts {
    domain: String,
}

impl Hosts {
    pub fn new(domain: &str) -> Self {
        Self { domain: domain.to_ascii_lowercase() }
    }

    /// The bucket named by `host`, if it is virtual-host style.
    pub fn bucket_of(&self, host: &str) -> Option<String> {
        let name = strip_port(host).to_ascii_lowercase();
        let bucket = name.strip_suffix(self.domain.as_str())?.strip_suffix('.')?;
        (!bucket.is_empty()).then(|| bucket.to_owned())
    }
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let vh = VirtualHost::new(Cow::Borrowed(self.domain.as_str()));
        Ok(match self.bucket_of(host) {
            Some(bucket) => vh.with_bucket(bucket),
            None => vh,
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_and_path_style() {
        let h = Hosts::new("localhost");
        assert_eq!(h.bucket_of("photos.localhost:4566").as_deref(), Some("photos"));
        assert_eq!(h.bucket_of("Photos.LOCALHOST").as_deref(), Some("photos"));
        assert_eq!(h.bucket_of("localhost:4566"), None);
        assert_eq!(h.bucket_of("127.0.0.1:4566"), None);
        assert_eq!(h.bucket_of("[::1]:4566"), None);
        assert_eq!(h.bucket_of("crunchbox:4566"), None);
        assert_eq!(h.bucket_of("evillocalhost"), None);
    }
}
