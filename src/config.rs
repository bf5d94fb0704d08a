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
    /// Base of the URLs handed out. Empty (the default): `http://` and the
    /// address the web role listens on, a wildcard bind shown as loopback
    /// (resolved at start, once the port is known; see [`Config::public_url`]).
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
            public_url: String::new(),
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

/// A configuration error, phrased for a one-line message that names the key
/// (or the variable, or the file and line) and echoes what was given.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `origin` says where the value came from (` (CRUNCHBOX_WEB_LISTEN)`,
    /// ` (in crunchbox.toml)`), or is empty.
    #[error("invalid value for `{key}`{origin}: {reason}")]
    Invalid { key: String, origin: String, reason: String },
    #[error("config file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// A `CRUNCHBOX_SECTION_…` variable that is no key, named as it was typed.
    #[error("unknown variable {name}{}", suggest(suggestion))]
    UnknownVariable { name: String, suggestion: Option<String> },
    #[error("unknown key `{key}`{origin}{}", suggest(suggestion))]
    UnknownKey { key: String, origin: String, suggestion: Option<String> },
}

fn suggest(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default()
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
        let config: Config = fig.extract_lossy().map_err(|e| explain(&fig, file, e))?;
        config.validate().map_err(|e| with_origin(&fig, e))?;
        Ok(config)
    }

    /// Checks that serde's types cannot express. Each names what was given,
    /// except where that would print a secret.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &str, reason: String| ConfigError::Invalid { key: key.into(), origin: String::new(), reason };
        if self.web.upload_tokens.iter().any(|t| t.is_empty()) {
            return Err(invalid("web.upload_tokens", "tokens must not be empty".into()));
        }
        let url = &self.web.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("web.public_url", format!("{url:?} given, it must start with http:// or https://")));
        }
        if self.web.max_upload_bytes == 0 {
            return Err(invalid("web.max_upload_bytes", "0 given, it must be greater than 0".into()));
        }
        if self.aws.access_key_id.is_empty() {
            return Err(invalid("aws.access_key_id", "must not be empty".into()));
        }
        if self.aws.secret_access_key.is_empty() {
            return Err(invalid("aws.secret_access_key", "must not be empty".into()));
        }
        if let Some(n) = self.aws.extra_credentials.iter().position(|p| parse_pair(p).is_none()) {
            let reason = format!("entry {} is not an ACCESS:SECRET pair (not shown: it may hold a secret)", n + 1);
            return Err(invalid("aws.extra_credentials", reason));
        }
        let account = &self.aws.account_id;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("aws.account_id", format!("{account:?} given, it must be 12 digits")));
        }
        let receives = self.queue.max_receive_count;
        if !(1..=1000).contains(&receives) {
            return Err(invalid("queue.max_receive_count", format!("{receives} given, it must be between 1 and 1000")));
        }
        let visibility = self.queue.visibility_timeout;
        if visibility > 43_200 {
            let reason = format!("{visibility} given, it must be at most 43200 seconds");
            return Err(invalid("queue.visibility_timeout", reason));
        }
        if self.crunch.max_pixels == 0 {
            return Err(invalid("crunch.max_pixels", "0 given, it must be greater than 0".into()));
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

    /// `web.public_url`, or when it is not set, the URL of `listening`
    /// (where the web role is bound; `web.listen` before it is).
    pub fn public_url(&self, listening: Option<SocketAddr>) -> String {
        if self.web.public_url.is_empty() {
            crate::banner::url(listening.unwrap_or(self.web.listen))
        } else {
            self.web.public_url.clone()
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

/// The environment form of a key path: `["web", "listen"]` → `CRUNCHBOX_WEB_LISTEN`,
/// spelt as the variable was typed when one is set.
fn env_name(path: &[String]) -> String {
    let canonical = format!("CRUNCHBOX_{}", path.join("_")).to_ascii_uppercase();
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .find(|name| name.to_ascii_uppercase() == canonical)
        .unwrap_or(canonical)
}

/// Where the value at `path` came from, as ` (CRUNCHBOX_X)` or ` (in FILE)`;
/// empty for defaults and flags.
fn origin_of(metadata: Option<&Metadata>, path: &[String]) -> String {
    let Some(metadata) = metadata else { return String::new() };
    if metadata.name == ENV_LAYER {
        return format!(" ({})", env_name(path));
    }
    match &metadata.source {
        Some(figment::Source::File(file)) => format!(" (in {})", file.display()),
        _ => String::new(),
    }
}

/// Adds where the value came from to an error of [`Config::validate`].
fn with_origin(fig: &Figment, e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Invalid { key, origin, reason } if origin.is_empty() => {
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            ConfigError::Invalid { origin: origin_of(fig.find_metadata(&key), &path), key, reason }
        }
        other => other,
    }
}

/// figment's error, told in the user's words: the file and line of a TOML
/// syntax error, the variable as typed for an unknown key in the
/// environment, the value given for a bad one (never a secret's).
fn explain(fig: &Figment, file: Option<&Path>, e: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let path = e.path.clone();
    let key = path.join(".");
    if let Kind::Message(message) = &e.kind
        && let Some(position) = message.strip_prefix("TOML parse error at ")
    {
        let path = match (&e.metadata, file) {
            (Some(Metadata { source: Some(figment::Source::File(p)), .. }), _) => p.clone(),
            (_, Some(p)) => p.to_owned(),
            _ => PathBuf::from("(config)"),
        };
        return ConfigError::File { path, reason: toml_reason(position) };
    }
    let origin = origin_of(e.metadata.as_ref(), &path);
    if let Kind::UnknownField(field, expected) = &e.kind {
        let parent = &path[..path.len().saturating_sub(1)];
        let closest = closest(field, expected);
        if e.metadata.as_ref().is_some_and(|m| m.name == ENV_LAYER) {
            let with = |name: &str| env_name(&[parent, &[name.to_owned()]].concat());
            return ConfigError::UnknownVariable { name: with(field), suggestion: closest.map(with) };
        }
        let dotted = |name: &str| {
            [parent.join("."), name.to_owned()].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(".")
        };
        // ` (in FILE)` reads better here as ` in FILE`.
        let origin = origin.strip_prefix(" (").and_then(|o| o.strip_suffix(')')).map(|o| format!(" {o}"));
        return ConfigError::UnknownKey {
            key: dotted(field),
            origin: origin.unwrap_or_default(),
            suggestion: closest.map(|c| format!("`{}`", dotted(c))),
        };
    }
    let secret = ["secret", "token", "credential"].iter().any(|word| key.contains(word));
    let given = if secret { None } else { fig.find_value(&key).ok().map(|v| show_value(&v)) };
    let reason = match &e.kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let actual = if secret { "this value".to_owned() } else { show_actual(actual) };
            format!("{actual} given, expected {}", friendly_type(expected))
        }
        Kind::UnknownVariant(found, expected) => {
            let found = if secret { "this value".to_owned() } else { format!("{found:?}") };
            format!("{found} given, expected one of: {}", expected.join(", "))
        }
        Kind::Message(message) => {
            let hint = if key.ends_with("listen") { " (expected IP:PORT, e.g. 127.0.0.1:8080)" } else { "" };
            match given {
                Some(given) => format!("{given} given: {message}{hint}"),
                None => format!("{message}{hint}"),
            }
        }
        other => other.to_string(),
    };
    let key = if key.is_empty() { "config".to_owned() } else { key };
    ConfigError::Invalid { key, origin, reason }
}

/// `line 3, column 20\n  |\n3 | x = = 3\n  |     ^\ninvalid string\nexpected ...`
/// → `line 3, column 20: invalid string; expected ... (x = = 3)`.
fn toml_reason(text: &str) -> String {
    let mut lines = text.lines();
    let position = lines.next().unwrap_or("").trim().to_owned();
    let mut source = None;
    let mut what = Vec::new();
    for line in lines {
        let trimmed = line.trim();
        if let Some((number, code)) = trimmed.split_once(" | ")
            && number.trim().bytes().all(|b| b.is_ascii_digit())
        {
            source = Some(code.trim().to_owned());
        } else if !trimmed.is_empty() && !trimmed.starts_with('|') {
            what.push(trimmed.to_owned());
        }
    }
    let mut reason = format!("{position}: {}", what.join("; "));
    if let Some(code) = source.filter(|c| !c.is_empty()) {
        reason.push_str(&format!(" (at `{code}`)"));
    }
    reason
}

fn show_value(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{c:?}"),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match (n.to_u128(), n.to_i128(), n.to_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => format!("{n:?}"),
        },
        other => format!("{other:?}"),
    }
}

fn show_actual(actual: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        Actual::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// serde's names for what it expected, as a user would say them.
fn friendly_type(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other.replace('`', ""),
    }
}

/// The candidate nearest to `typed`, if it is a plausible typo of it.
fn closest<'a>(typed: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let typed = typed.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(&typed, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
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

/// The name of the environment layer's metadata, to tell its values apart.
const ENV_LAYER: &str = "`CRUNCHBOX_*` environment variables";

impl Provider for EnvText {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_LAYER)
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

    /// Each kind of mistake is told in the user's words: where the value
    /// came from, what was given, what would do, with no doubled quoting.
    #[test]
    fn errors_say_what_was_given_and_where() {
        figment::Jail::expect_with(|jail| {
            // Each bad value is then replaced by a good one (`fine`), so
            // the next case fails only on its own.
            let err = |jail: &mut figment::Jail, name: &str, bad: &str, fine: &str| {
                jail.set_env(name, bad);
                let e = Config::load(None, Figment::new()).expect_err("must fail").to_string();
                jail.set_env(name, fine);
                e
            };
            assert_eq!(
                err(jail, "CRUNCHBOX_WEB_LISTEN", "nonsense", "127.0.0.1:1"),
                "invalid value for `web.listen` (CRUNCHBOX_WEB_LISTEN): \"nonsense\" given: invalid socket address \
                 syntax (expected IP:PORT, e.g. 127.0.0.1:8080)"
            );
            assert_eq!(
                err(jail, "CRUNCHBOX_LOG_FORMAT", "xml", "text"),
                "invalid value for `log_format` (CRUNCHBOX_LOG_FORMAT): \"xml\" given, expected one of: text, json"
            );
            assert_eq!(
                err(jail, "CRUNCHBOX_WEB_MAX_UPLOAD_BYTES", "lots", "10"),
                "invalid value for `web.max_upload_bytes` (CRUNCHBOX_WEB_MAX_UPLOAD_BYTES): \"lots\" given, \
                 expected a whole number (0 or more)"
            );
            assert_eq!(
                err(jail, "CRUNCHBOX_CRUNCH_MAX_PIXELS", "0", "10"),
                "invalid value for `crunch.max_pixels` (CRUNCHBOX_CRUNCH_MAX_PIXELS): 0 given, it must be greater than 0"
            );
            // A secret is never echoed.
            let e = err(jail, "CRUNCHBOX_AWS_EXTRA_CREDENTIALS", "hunter2", "");
            assert!(e.contains("aws.extra_credentials") && !e.contains("hunter2"), "{e}");
            assert_eq!(
                err(jail, "CRUNCHBOX_WEB_LISTN", "127.0.0.1:1", ""),
                "unknown variable CRUNCHBOX_WEB_LISTN (did you mean CRUNCHBOX_WEB_LISTEN?)"
            );
            Ok(())
        });
    }

    #[test]
    fn a_broken_toml_file_names_the_file_and_line() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("broken.toml", "[web]\nlisten = \"127.0.0.1:1\"\nmax_upload_bytes = = 3\n")?;
            let e = Config::load(Some(Path::new("broken.toml")), Figment::new()).expect_err("broken").to_string();
            assert!(e.starts_with("config file broken.toml: line 3, column 20: "), "{e}");
            assert!(e.contains("max_upload_bytes = = 3") && !e.contains('\n'), "{e}");
            jail.create_file("typo.toml", "[web]\nlistn = \"127.0.0.1:1\"\n")?;
            let e = Config::load(Some(Path::new("typo.toml")), Figment::new()).expect_err("typo").to_string();
            assert_eq!(e, "unknown key `web.listn` in typo.toml (did you mean `web.listen`?)");
            jail.create_file("type.toml", "[queue]\nmax_receive_count = \"five\"\n")?;
            let e = Config::load(Some(Path::new("type.toml")), Figment::new()).expect_err("type").to_string();
            assert_eq!(
                e,
                "invalid value for `queue.max_receive_count` (in type.toml): \"five\" given, expected a whole number \
                 (0 or more)"
            );
            Ok(())
        });
    }

    #[test]
    fn public_url_defaults_to_where_the_web_role_listens() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CRUNCHBOX_WEB_LISTEN", "127.0.0.1:28080");
            let c = Config::load(None, Figment::new()).map_err(|e| e.to_string())?;
            assert_eq!(c.public_url(None), "http://127.0.0.1:28080");
            jail.set_env("CRUNCHBOX_WEB_LISTEN", "0.0.0.0:9000");
            let c = Config::load(None, Figment::new()).map_err(|e| e.to_string())?;
            assert_eq!(c.public_url(None), "http://127.0.0.1:9000");
            // The bound address wins over the configured one (port 0).
            assert_eq!(c.public_url(Some("127.0.0.1:40000".parse().unwrap())), "http://127.0.0.1:40000");
            jail.set_env("CRUNCHBOX_WEB_PUBLIC_URL", "https://cdn.example");
            let c = Config::load(None, Figment::new()).map_err(|e| e.to_string())?;
            assert_eq!(c.public_url(Some("127.0.0.1:40000".parse().unwrap())), "https://cdn.example");
            Ok(())
        });
    }
}
