//! The embedded S3: an `s3s::S3` implementation over a durable store.
//!
//! `store` (sled records) and `blob` (immutable blob files) own durability
//! and crash recovery; `ingest` turns request bodies into stored bytes while
//! hashing them; `buckets`, `objects`, `listing` and `multipart` map each S3
//! operation family onto the store; `api` is the one `impl S3` routing to
//! them, with `tagging`, `cors`, `attributes` (GetObjectAttributes) and
//! `subresources` (what an unconfigured bucket answers). `access` (anonymous
//! reads of the public bucket only) and `host` (virtual-host buckets) are
//! the gates s3s runs before any of that; `front` is what the listener
//! calls: CORS for browsers around the s3s service.

mod access;
mod api;
mod attributes;
mod blob;
mod buckets;
mod checksums;
mod conditions;
mod cors;
mod error;
pub mod events;
mod front;
mod host;
mod ingest;
mod listing;
mod meta;
mod multipart;
mod notifications;
mod objects;
mod post_form;
mod spool;
mod store;
mod subresources;
mod tagging;

pub use front::{S3Front, xml_error, xml_error_with};

use std::sync::Arc;

use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;

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

/// Where the S3 store keeps its blobs and metadata under the data dir.
fn root_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("s3")
}

/// The S3 store's sled database (the one its lock is on).
pub fn meta_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    root_dir(data_dir).join(store::META_DIR)
}

/// Builds the S3 service (auth, virtual hosts, anonymous public reads, CORS)
/// over the store in `config.data_dir/s3`. Opening sweeps crash leftovers.
pub fn service(config: &Config) -> Result<S3Front, S3CompatError> {
    let store = store::Store::open(&root_dir(&config.data_dir))?;
    let hosts = host::Hosts::new(&config.aws.domain);
    let site = events::record::Site { region: config.aws.region.clone(), owner: config.aws.account_id.clone() };
    let events = Arc::new(events::deliver::Hub::new(site));
    let api = api::S3Api {
        store: Arc::clone(&store),
        region: config.aws.region.clone(),
        account_id: config.aws.account_id.clone(),
        events: Arc::clone(&events),
    };
    let mut builder = S3ServiceBuilder::new(api);
    let keys = crate::endpoint::sigv4::Keys::new(config.credentials());
    builder.set_auth(access::KeyPairs(keys.clone()));
    builder.set_access(access::PublicReads { public_bucket: config.buckets.public.clone() });
    builder.set_host(hosts.clone());
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(body_limits()))));
    Ok(S3Front::new(builder.build(), store, Arc::new(hosts), events, keys))
}

/// s3s reads the file of a presigned POST (HTML form upload) into memory
/// before the handler sees it, so its size is capped well below AWS's 5 GB:
/// form uploads are browser-sized (avatars, attachments); larger files go
/// through a presigned PUT or multipart, which stream to disk.
pub const POST_OBJECT_MAX_FILE: u64 = 32 * 1024 * 1024;

/// The most a presigned POST form's fields (all but the file) may hold.
const FORM_MAX_FIELDS: usize = 1024 * 1024;

/// Form uploads s3s may hold in memory at once (each up to
/// `POST_OBJECT_MAX_FILE`); more wait their turn, so memory stays bounded
/// however many browsers post together.
pub const POST_OBJECT_CONCURRENCY: usize = 8;

/// What s3s may hold in memory for one request. Its defaults let one
/// request buffer a 20 MB XML document and a presigned POST's file whole
/// (up to 5 GB); these keep every buffered body small. The XML limit still
/// fits AWS's largest documents (DeleteObjects with 1,000 keys,
/// CompleteMultipartUpload with 10,000 parts and their checksums).
/// The largest XML request body (DeleteObjects, CompleteMultipartUpload,
/// bucket configurations) s3s buffers.
const XML_MAX_BODY: usize = 4 * 1024 * 1024;

fn body_limits() -> S3Config {
    let mut config = S3Config::default();
    config.xml_max_body_size = XML_MAX_BODY;
    config.post_object_max_file_size = POST_OBJECT_MAX_FILE;
    config.form_max_field_size = 64 * 1024;
    config.form_max_fields_size = FORM_MAX_FIELDS;
    config
}
