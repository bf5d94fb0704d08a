//! Command-line flags. Flags are the top layer of the configuration; see
//! [`crate::config`] for the rest.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::Serialized;
use serde::Serialize;

use crate::config::{Driver, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "crunchbox", version, about = "Avatar appliance: embedded S3 + SQS, upload, crunch and serve")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run roles: the embedded S3 and SQS, the web tier and the worker.
    Serve(ServeArgs),
    /// Crunch image files offline into their variants.
    Crunch(CrunchArgs),
    /// Create the buckets, the queue and its dead-letter queue where missing.
    Provision(CommonArgs),
    /// Upload images to a running instance, show progress, print their URLs.
    Upload(crate::upload::UploadArgs),
    /// Wait until the AWS endpoint is ready and its init hooks have run.
    Wait(crate::ci::wait::WaitArgs),
}

/// Flags shared by every command that loads the configuration.
#[derive(Debug, Args, Serialize, Default)]
pub struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for the embedded S3 and SQS data.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `embedded` (this process's S3 + SQS) or `aws`.
    #[arg(long, global = true, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<Driver>,
    /// S3/SQS-compatible endpoint for `--driver aws` (MinIO, moto, another crunchbox).
    #[arg(long, global = true)]
    #[serde(skip)]
    pub aws_endpoint_url: Option<String>,
    /// `text` or `json` (mozlog).
    #[arg(long, global = true, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl CommonArgs {
    /// The flags that were given, as the top configuration layer.
    pub fn overrides(&self) -> Figment {
        let mut fig = Figment::from(Serialized::defaults(self));
        if let Some(url) = &self.aws_endpoint_url {
            fig = fig.merge(Serialized::default("aws.endpoint_url", url));
        }
        fig
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Comma-separated subset of roles: s3, sqs, web, worker.
    #[arg(long, value_delimiter = ',', default_value = "s3,sqs,web,worker")]
    pub roles: Vec<Role>,
    /// Keep data in a fresh temporary directory, deleted at exit, and turn
    /// on the dev endpoints (reset, peek): for CI runs that must not share state.
    #[arg(long)]
    pub ephemeral: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct CrunchArgs {
    /// Image files to crunch.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where to write NAME.jpg, NAME_small.jpg, NAME_large.jpg (or .png).
    #[arg(long)]
    pub out: PathBuf,
    /// Refuse images with more pixels than this (checked from the header).
    #[arg(long, default_value_t = 50_000_000)]
    pub max_pixels: u64,
    /// Also write each variant's WebP twin (NAME.webp, NAME_small.webp, …),
    /// as the worker does.
    #[arg(long)]
    pub webp: bool,
}

/// A part of the appliance that `serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    S3,
    Sqs,
    Web,
    Worker,
}
