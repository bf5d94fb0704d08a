//! Layered configuration: flags > `CRUNCHBOX_*` environment > TOML file > defaults.
//!
//! This is the one place that knows every key. Each key `section.name` has the
//! environment form `CRUNCHBOX_SECTION_NAME`; list-valued keys also accept a
//! comma-separated string so they can be set from the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize};

/// `aws.max_connections` and `web.max_connections` unless set.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Which S3/SQS the web and worker roles talk to. The pipeline code is the same
/// for both; only the client construction in [`crate::clients`] differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// The process's own embedded S3 + SQS on `aws.listen`.
    #[default]
    Embedded,
    /// Real AWS (or any S3/SQS-compatible endpoint via `aws.endpoint_url`).
    Aws,
}

/// Log output shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// Mozilla's mozlog JSON shape.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub driver: Driver,
    pub log_format: LogFormat,
    pub web: WebConfig,
    pub aws: AwsConfig,
    pub buckets: BucketsConfig,
    pub queue: QueueConfig,
    pub crunch: CrunchConfig,
    pub pipeline: PipelineConfig,
    /// LocalStack-style init hooks (`ready.d/`, `shutdown.d/`); none by default.
    pub init_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    #[serde(deserialize_with = "string_list")]
    pub upload_tokens: Vec<String>,
    pub max_upload_bytes: u64,
    /// Open connections at most; beyond it new ones wait to be accepted.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    pub listen: SocketAddr,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// More `ACCESS:SECRET` pairs accepted by the embedded endpoint.
    #[serde(deserialize_with = "string_list")]
    pub extra_credentials: Vec<String>,
    pub region: String,
    pub account_id: String,
    /// Base domain for virtual-host-style S3 addressing (`bucket.localhost`).
    pub domain: String,
    /// With `driver = "aws"`: an S3/SQS-compatible endpoint instead of AWS.
    pub endpoint_url: Option<String>,
    /// Open connections at most; beyond it new ones wait to be accepted.
    pub max_connections: usize,
    /// Serve the CI endpoints that reset state and peek at queues (on
    /// with `serve --ephemeral`); off, they answer 403.
    pub dev_endpoints: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BucketsConfig {
    pub private: String,
    pub public: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    pub dlq_name: String,
    pub max_receive_count: u32,
    /// Visibility timeout of the crunch queue, seconds.
    pub visibility_timeout: u32,
    /// Age after which an original that was never queued (no variant, no
    /// failure record, no tombstone) is removed, seconds; 0: the crunch queue's retention
    /// plus its visibility timeout, after which no message for it can exist.
    pub orphan_after_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrunchConfig {
    pub max_pixels: u64,
    /// Crunches at once; 0 means the number of cores.
    pub concurrency: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    pub trigger: Trigger,
}

/// What starts a crunch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The web role sends the id to the crunch queue after storing the original.
    #[default]
    Message,
    /// The private bucket's event notification to the crunch queue does;
    /// the web role only stores the original.
    S3Event,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./crunchbox-data"),
            driver: Driver::Embedded,
            log_format: LogFormat::Text,
            web: WebConfig::default(),
            aws: AwsConfig::default(),
            buckets: BucketsConfig::default(),
            queue: QueueConfig::default(),
            crunch: CrunchConfig::default(),
            pipeline: PipelineConfig::default(),
            init_dir: None,
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            upload_tokens: vec!["dev-token".into()],
            max_upload_bytes: 8 * 1024 * 1024,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4566)),
            access_key_id: "crunchbox".into(),
            secret_access_key: "crunchbox-secret".into(),
            extra_credentials: Vec::new(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            domain: "localhost".into(),
            endpoint_url: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            dev_endpoints: false,
        }
    }
}

impl Default for BucketsConfig {
    fn default() -> Self {
        Self { private: "crunchbox-uploads".into(), public: "crunchbox-public".into() }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            name: "crunchbox-crunch".into(),
            dlq_name: "crunchbox-crunch-dlq".into(),
            max_receive_count: 5,
            visibility_timeout: 60,
            orphan_after_secs: 0,
        }
    }
}

impl Default for CrunchConfig {
    fn default() -> Self {
        Self { max_pixels: 50_000_000, concurrency: 0 }
    }
}

/// A configuration error, phrased for a one-line message that names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Sections whose keys are spelled `section.key`; used to map
/// `CRUNCHBOX_WEB_PUBLIC_URL` to `web.public_url` (keys themselves hold `_`).
const SECTIONS: [&str; 6] = ["web", "aws", "buckets", "queue", "crunch", "pipeline"];

impl Config {
    /// Loads the layers below the flags. `overrides` holds the flags as a
    /// figment provider (only the ones the user set).
    pub fn load(file: Option<&Path>, overrides: Figment) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File { path: path.to_owned(), reason: "no such file".into() });
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(EnvText(env_provider())).merge(overrides);
        // Lossy: the environment gives text, so numeric and boolean keys are
        // read from it; string keys stay exactly what was set.
        let config: Config = fig.extract_lossy().map_err(|e| {
            let key = if e.path.is_empty() { "config".to_owned() } else { e.path.join(".") };
            ConfigError::Invalid { key, reason: e.kind.to_string() }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that serde's types cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid { key: key.into(), reason: reason.into() };
        if self.web.upload_tokens.iter().any(|t| t.is_empty()) {
            return Err(invalid("web.upload_tokens", "tokens must not be empty"));
        }
        if !(self.web.public_url.starts_with("http://") || self.web.public_url.starts_with("https://")) {
            return Err(invalid("web.public_url", "must start with http:// or https://"));
        }
        if self.web.max_upload_bytes == 0 {
            return Err(invalid("web.max_upload_bytes", "must be greater than 0"));
        }
        if self.aws.access_key_id.is_empty() || self.aws.secret_access_key.is_empty() {
            return Err(invalid("aws.access_key_id", "credentials must not be empty"));
        }
        if self.aws.extra_credentials.iter().any(|p| parse_pair(p).is_none()) {
            return Err(invalid("aws.extra_credentials", "expected ACCESS:SECRET pairs"));
        }
        if self.aws.account_id.len() != 12 || !self.aws.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("aws.account_id", "must be 12 digits"));
        }
        if !(1..=1000).contains(&self.queue.max_receive_count) {
            return Err(invalid("queue.max_receive_count", "must be between 1 and 1000"));
        }
        if self.queue.visibility_timeout > 43_200 {
            return Err(invalid("queue.visibility_timeout", "must be at most 43200 seconds"));
        }
        if self.crunch.max_pixels == 0 {
            return Err(invalid("crunch.max_pixels", "must be greater than 0"));
        }
        Ok(())
    }

    /// Every access key / secret pair the embedded endpoint accepts.
    pub fn credentials(&self) -> Vec<(String, String)> {
        let mut out = vec![(self.aws.access_key_id.clone(), self.aws.secret_access_key.clone())];
        out.extend(self.aws.extra_credentials.iter().filter_map(|p| parse_pair(p)));
        out
    }

    /// The number of concurrent crunches, resolving `0` to the core count.
    pub fn crunch_concurrency(&self) -> usize {
        if self.crunch.concurrency > 0 {
            self.crunch.concurrency
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }

    /// The URL clients in this process use to reach the embedded endpoint:
    /// an unspecified listen address (0.0.0.0) is reached over loopback.
    pub fn embedded_endpoint_url(&self) -> String {
        let mut addr = self.aws.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }
}

fn parse_pair(pair: &str) -> Option<(String, String)> {
    let (access, secret) = pair.split_once(':')?;
    (!access.is_empty() && !secret.is_empty()).then(|| (access.to_owned(), secret.to_owned()))
}

/// Keys outside any section.
const TOP_LEVEL: [&str; 4] = ["data_dir", "driver", "log_format", "init_dir"];

/// `CRUNCHBOX_*` variables that are config keys. Others (say a wrapper
/// script's `CRUNCHBOX_HOME`) are not ours to reject; a misspelt key inside a
/// section still is, so typos get a message naming them.
fn env_provider() -> Env {
    Env::prefixed("CRUNCHBOX_")
        .filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            TOP_LEVEL.contains(&key.as_str()) || SECTIONS.iter().any(|s| key.starts_with(&format!("{s}_")))
        })
        .map(|key| {
            let key = key.as_str().to_ascii_lowercase();
            for section in SECTIONS {
                if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
                    return format!("{section}.{rest}").into();
                }
            }
            key.into()
        })
}

/// The environment layer with every value kept as text. figment's own `Env`
/// guesses types, so `CRUNCHBOX_AWS_ACCOUNT_ID=123456789012` became a number
/// (and `000000000000` would become 0) and a string key refused it; numeric
/// and boolean keys are read from the text by `extract_lossy`.
struct EnvText(Env);

impl Provider for EnvText {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, text) in self.0.iter() {
            let value = Value::from(text.as_str());
            match key.as_str().split_once('.') {
                Some((section, name)) => {
                    let entry = dict.entry(section.to_owned()).or_insert_with(|| Dict::new().into());
                    if let Value::Dict(_, keys) = entry {
                        keys.insert(name.to_owned(), value);
                    }
                }
                None => {
                    dict.insert(key.as_str().to_owned(), value);
                }
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Accepts either a list or one comma-separated string.
fn string_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(de)? {
        // `[a,b]` (the list syntax figment's own Env parsed) is the list a, b.
        OneOrMany::One(s) => s
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(&s)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_sections() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CRUNCHBOX_WEB_PUBLIC_URL", "https://cdn.example");
            jail.set_env("CRUNCHBOX_WEB_UPLOAD_TOKENS", "a, b");
            jail.set_env("CRUNCHBOX_DATA_DIR", "/tmp/x");
            jail.set_env("CRUNCHBOX_HOME", "not a config key");
            let c = Config::load(None, Figment::new()).map_err(|e| e.to_string())?;
            assert_eq!(c.web.public_url, "https://cdn.example");
            assert_eq!(c.web.upload_tokens, vec!["a", "b"]);
            assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
            Ok(())
        });
    }

    /// Every string key, set through the environment to text that looks like
    /// a number or a boolean, comes back as exactly that text.
    #[test]
    fn string_keys_from_env_stay_text() {
        figment::Jail::expect_with(|jail| {
            let cases = [
                ("CRUNCHBOX_AWS_ACCOUNT_ID", "000000000000"),
                ("CRUNCHBOX_AWS_ACCESS_KEY_ID", "123"),
                ("CRUNCHBOX_AWS_SECRET_ACCESS_KEY", "true"),
                ("CRUNCHBOX_AWS_REGION", "1.5"),
                ("CRUNCHBOX_AWS_DOMAIN", "false"),
                ("CRUNCHBOX_AWS_ENDPOINT_URL", "8080"),
                ("CRUNCHBOX_AWS_EXTRA_CREDENTIALS", "1:2"),
                ("CRUNCHBOX_WEB_PUBLIC_URL", "http://1.2.3.4:5"),
                ("CRUNCHBOX_WEB_UPLOAD_TOKENS", "007"),
                ("CRUNCHBOX_BUCKETS_PRIVATE", "12345"),
                ("CRUNCHBOX_BUCKETS_PUBLIC", "yes"),
                ("CRUNCHBOX_QUEUE_NAME", "0x10"),
                ("CRUNCHBOX_QUEUE_DLQ_NAME", "1e3"),
                ("CRUNCHBOX_DATA_DIR", "42"),
            ];
            for (name, value) in cases {
                jail.set_env(name, value);
            }
            let c = Config::load(None, Figment::new()).map_err(|e| e.to_string())?;
            assert_eq!(c.aws.account_id, "000000000000");
            assert_eq!(c.aws.access_key_id, "123");
            assert_eq!(c.aws.secret_access_key, "true");
            assert_eq!(c.aws.region, "1.5");
            assert_eq!(c.aws.domain, "false");
            assert_eq!(c.aws.endpoint_url.as_deref(), Some("8080"));
            assert_eq!(c.aws.extra_credentials, vec!["1:2"]);
            assert_eq!(c.web.public_url, "http://1.2.3.4:5");
            assert_eq!(c.web.upload_tokens, vec!["007"]);
            assert_eq!(c.buckets.private, "12345");
            assert_eq!(c.buckets.public, "yes");
            assert_eq!(c.queue.name, "0x10");
            assert_eq!(c.queue.dlq_name, "1e3");
            assert_eq!(c.data_dir, PathBuf::from("42"));

            jail.set_env("CRUNCHBOX_AWS_ACCOUNT_ID", "123456789012");
            jail.set_env("CRUNCHBOX_WEB_UPLOAD_TOKENS", "[a, b]");
            let c = Config::load(None, Figment::new()).map_err(|e| e.to_string())?;
            assert_eq!(c.aws.account_id, "123456789012");
            assert_eq!(c.web.upload_tokens, vec!["a", "b"]);
            Ok(())
        });
    }

    /// Numeric keys still parse from environment text, and a bad one names
    /// its key.
    #[test]
    fn numeric_keys_from_env_parse() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CRUNCHBOX_QUEUE_MAX_RECEIVE_COUNT", "7");
            jail.set_env("CRUNCHBOX_WEB_MAX_UPLOAD_BYTES", "1024");
            jail.set_env("CRUNCHBOX_CRUNCH_CONCURRENCY", "3");
            let c = Config::load(None, Figment::new()).map_err(|e| e.to_string())?;
            assert_eq!(c.queue.max_receive_count, 7);
            assert_eq!(c.web.max_upload_bytes, 1024);
            assert_eq!(c.crunch.concurrency, 3);
            jail.set_env("CRUNCHBOX_CRUNCH_CONCURRENCY", "many");
            let err = Config::load(None, Figment::new()).expect_err("must fail").to_string();
            assert!(err.contains("crunch.concurrency"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn invalid_value_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CRUNCHBOX_WEB_LISTEN", "not-an-address");
            let err = Config::load(None, Figment::new()).expect_err("must fail").to_string();
            assert!(err.contains("web.listen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn toml_is_below_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[queue]\nname = \"from-file\"\nmax_receive_count = 3\n")?;
            jail.set_env("CRUNCHBOX_QUEUE_NAME", "from-env");
            let c = Config::load(Some(Path::new("c.toml")), Figment::new()).map_err(|e| e.to_string())?;
            assert_eq!(c.queue.name, "from-env");
            assert_eq!(c.queue.max_receive_count, 3);
            Ok(())
        });
    }
}
