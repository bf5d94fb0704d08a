//! crunchbox: an avatar appliance with its own embedded S3 and SQS.
//!
//! The tree follows the data flow: [`endpoint`] is the one embedded AWS
//! listener in front of [`s3compat`] (S3) and [`queue`] (SQS); [`web`] takes
//! uploads and serves variants; [`worker`] pulls ids from the queue and runs
//! [`crunch`]; [`clients`] is the only place the driver (embedded or aws)
//! matters.

pub mod allocator;
pub mod app;
pub mod avatar;
pub mod banner;
pub mod budget;
pub mod ci;
pub mod cli;
pub mod clients;
pub mod config;
pub mod crunch;
pub mod durable;
pub mod endpoint;
pub mod fdlimit;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod provision;
pub mod queue;
pub mod s3compat;
pub mod shutdown;
pub mod upload;
pub mod web;
pub mod worker;
