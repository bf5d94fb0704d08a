//! The embedded S3: an `s3s::S3` implementation over a durable store.
//!
//! `store` (sled records) and `blob` (immutable blob files) own durability
//! and crash recovery; `ingest` turns request bodies into stored bytes while
//! hashing them; `buckets`, `objects`, `listing` and `multipart` map each S3
//! operation family onto the store; `api` is the one `impl S3` routing to
//! them. `access` (anonymous reads of the public bucket only) and `host`
//! (virtual-host buckets) are the gates s3s runs before any of that.

mod access;
mod api;
mod blob;
mod buckets;
mod checksums;
mod commit;
mod conditions;
mod error;
mod host;
mod ingest;
mod listing;
mod meta;
mod multipart;
mod objects;
mod store;

use s3s::service::{S3Service, S3ServiceBuilder};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum S3CompatError {
    #[error("s3 store: {0}")]
    Store(#[from] sled::Error),
    #[error("s3 store: {0}")]
    Io(#[from] std::io::Error),
    #[error("s3 store: {0}")]
    Open(#[from] error::StoreError),
}

/// Builds the S3 service (auth, virtual hosts, anonymous public reads) over
/// the store in `config.data_dir/s3`. Opening sweeps crash leftovers.
pub fn service(config: &Config) -> Result<S3Service, S3CompatError> {
    let store = store::Store::open(&config.data_dir.join("s3"))?;
    let api = api::S3Api { store, region: config.aws.region.clone(), account_id: config.aws.account_id.clone() };
    let mut builder = S3ServiceBuilder::new(api);
    builder.set_auth(access::KeyPairs(config.credentials().into_iter().collect()));
    builder.set_access(access::PublicReads { public_bucket: config.buckets.public.clone() });
    builder.set_host(host::Hosts::new(&config.aws.domain));
    Ok(builder.build())
}
