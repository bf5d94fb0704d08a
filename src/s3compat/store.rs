//! The durable store under `data_dir/s3`: sled for every record (and the
//! bytes of small objects), blob files for the rest.
//!
//! Write order keeps crashes invisible: bytes become a durable blob first,
//! then one sled write (flushed) makes them visible, then the blob they
//! replaced is unlinked. A crash between steps leaves only orphans (temp
//! files, unreferenced blobs, parts of vanished uploads), swept at start.
//! Nothing here takes a global lock: sled's own atomic ops order writers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use s3s::dto::ETagCondition;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio_util::io::ReaderStream;

use super::blob::{BlobDir, TmpFile};
use super::error::{StoreError, StoreResult};
use super::events::PendingEvent;
use super::meta::{self, BucketMeta, ObjectMeta, PartMeta, UploadMeta};
use crate::durable::{self, Committer};

/// sled's page cache; objects are mostly streamed from files, so this stays modest.
const CACHE_BYTES: u64 = 128 * 1024 * 1024;
/// sled's segment size. sled writes any page bigger than a quarter of a
/// segment as a file of its own under `meta/blobs`, and 0.34 never removes
/// some of them again (72 files, 13 MB left after three fill-and-drain
/// cycles with the default 512 KiB). A leaf holds up to 17 records of up to
/// 64 KiB inline bytes (~1.1 MB), under a quarter of 8 MiB: no such files.
/// A store created before keeps the size it was created with.
const SEGMENT_BYTES: usize = 8 * 1024 * 1024;
/// Chunk size of streamed blob reads.
pub const STREAM_CHUNK: usize = 256 * 1024;

/// The sled database's directory under the store's root.
pub const META_DIR: &str = "meta";

/// Sealed the way s3s-fs's `FileSystem` is: the trees and the blob
/// directory are private, and every file operation runs here, off the async
/// threads, so the S3 handlers never touch a file.
pub struct Store {
    db: sled::Db,
    buckets: sled::Tree,
    objects: sled::Tree,
    uploads: sled::Tree,
    parts: sled::Tree,
    /// Event notifications not yet delivered, keyed by their sequence
    /// number (big-endian), written in the same commit as their write.
    outbox: sled::Tree,
    blobs: BlobDir,
    commit: Committer,
}

/// Stores open in this process, so an in-process restart on the same data
/// dir reuses the open sled instead of tripping over its file lock.
static OPEN: Mutex<Vec<(PathBuf, Weak<Store>)>> = Mutex::new(Vec::new());

/// A write guarded by a conditional header that did not hold.
#[derive(Debug)]
pub struct PreconditionFailed {
    /// `If-Match` named an object there is none of: AWS answers `NoSuchKey`.
    pub missing: bool,
}

impl From<PreconditionFailed> for s3s::S3Error {
    fn from(failed: PreconditionFailed) -> Self {
        if failed.missing {
            s3s::s3_error!(NoSuchKey, "The specified key does not exist.")
        } else {
            s3s::s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
        }
    }
}

pub enum BucketDelete {
    Deleted,
    Missing,
    NotEmpty,
}

impl Store {
    pub fn open(root: &Path) -> StoreResult<Arc<Store>> {
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(store) = open.iter().find(|(p, _)| p == root).and_then(|(_, w)| w.upgrade()) {
            return Ok(store);
        }
        let store = Arc::new(Self::open_fresh(root)?);
        open.push((root.to_owned(), Arc::downgrade(&store)));
        Ok(store)
    }

    fn open_fresh(root: &Path) -> StoreResult<Store> {
        let dir = root.join(META_DIR);
        let config =
            sled::Config::new().cache_capacity(CACHE_BYTES).segment_size(durable::segment_size(&dir, SEGMENT_BYTES));
        let (db, point) = durable::open(&dir, config)?;
        let store = Store {
            buckets: db.open_tree("buckets")?,
            objects: db.open_tree("objects")?,
            uploads: db.open_tree("uploads")?,
            parts: db.open_tree("parts")?,
            outbox: db.open_tree("outbox")?,
            blobs: BlobDir::open(root)?,
            commit: Committer::start("s3-commit", db.clone(), point, || {})?,
            db,
        };
        store.sweep()?;
        Ok(store)
    }

    /// Removes crash leftovers: parts of uploads that no longer exist and
    /// blob files no record points to.
    fn sweep(&self) -> StoreResult<()> {
        let mut live = HashSet::new();
        for item in self.objects.iter() {
            let (_, v) = item?;
            if let Some(blob) = meta::decode_object(&v)?.0.blob {
                live.insert(blob);
            }
        }
        for item in self.parts.iter() {
            let (k, v) = item?;
            let upload = k.split(|b| *b == 0).next().unwrap_or_default();
            if self.uploads.contains_key(upload)? {
                live.insert(serde_json::from_slice::<PartMeta>(&v)?.blob);
            } else {
                self.parts.remove(k)?;
            }
        }
        let mut swept = 0;
        for id in self.blobs.all_ids()? {
            if !live.contains(&id) {
                self.blobs.remove(&id);
                swept += 1;
            }
        }
        self.db.flush()?;
        if swept > 0 {
            tracing::info!(swept, "removed orphaned s3 blobs");
        }
        Ok(())
    }

    /// Makes every write so far durable. Concurrent callers share one flush
    /// (see [`Committer`]).
    pub async fn flush(&self) -> StoreResult<()> {
        Ok(self.commit.durable().await?)
    }

    // ---- blob files ----

    /// A temp file for a body of unknown length (`spool`); removed on drop.
    pub fn create_spool(&self) -> std::io::Result<TmpFile> {
        self.blobs.create_tmp()
    }

    /// Appends `buf` to the upload's temp file (created on first use) and
    /// hands both back, `buf` emptied for reuse.
    pub async fn append_tmp(
        self: &Arc<Self>,
        tmp: Option<TmpFile>,
        mut buf: Vec<u8>,
    ) -> StoreResult<(TmpFile, Vec<u8>)> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || -> StoreResult<_> {
            let tmp = this.write_tmp(tmp, &buf)?;
            buf.clear();
            Ok((tmp, buf))
        })
        .await?
    }

    /// Writes the rest of an upload and makes it a durable blob; returns its id.
    pub async fn commit_tmp(self: &Arc<Self>, tmp: Option<TmpFile>, buf: Vec<u8>) -> StoreResult<String> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || -> StoreResult<String> {
            let tmp = this.write_tmp(tmp, &buf)?;
            Ok(this.blobs.commit(tmp)?)
        })
        .await?
    }

    /// Appends `buf` to `tmp`, creating the temp file first if there is none. Blocks.
    fn write_tmp(&self, tmp: Option<TmpFile>, buf: &[u8]) -> std::io::Result<TmpFile> {
        let mut tmp = match tmp {
            Some(t) => t,
            None => self.blobs.create_tmp()?,
        };
        tmp.write(buf)?;
        Ok(tmp)
    }

    /// A new blob sharing `id`'s bytes (CopyObject). `NotFound`: an
    /// overwrite retired the source meanwhile.
    pub async fn link_blob(self: &Arc<Self>, id: String) -> StoreResult<Result<String, std::io::Error>> {
        let this = Arc::clone(self);
        Ok(tokio::task::spawn_blocking(move || this.blobs.link(&id)).await?)
    }

    /// One new blob holding the given blobs' bytes in order (CompleteMultipartUpload).
    pub async fn concat_blobs(self: &Arc<Self>, ids: Vec<String>) -> StoreResult<String> {
        let this = Arc::clone(self);
        Ok(tokio::task::spawn_blocking(move || this.blobs.concat(&ids)).await??)
    }

    /// Drops a blob no record will point to (a write that was not published).
    pub fn discard_blob(&self, id: &str) {
        self.blobs.remove(id);
    }

    /// `len` bytes of blob `id` from `start`, read whole (small reads).
    pub async fn read_blob(
        self: &Arc<Self>,
        id: String,
        start: u64,
        len: usize,
    ) -> StoreResult<Result<Bytes, std::io::Error>> {
        let this = Arc::clone(self);
        Ok(tokio::task::spawn_blocking(move || this.blobs.read_range(&id, start, len)).await?)
    }

    /// Objects of every bucket from `start` on, in key order (listing).
    pub fn objects_from(&self, start: std::ops::Bound<Vec<u8>>) -> sled::Iter {
        self.objects.range((start, std::ops::Bound::Unbounded))
    }

    /// `len` bytes of blob `id` from `start`, as a stream of bounded chunks:
    /// large reads (GET, UploadPartCopy) never hold a body whole. An error
    /// of kind `NotFound` means an overwrite retired the blob meanwhile.
    pub async fn read_stream(
        &self,
        id: &str,
        start: u64,
        len: u64,
    ) -> std::io::Result<ReaderStream<tokio::io::Take<tokio::fs::File>>> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let mut file = tokio::fs::File::open(self.blobs.path(id)).await?;
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start)).await?;
        }
        Ok(ReaderStream::with_capacity(file.take(len), STREAM_CHUNK))
    }

    // ---- buckets ----

    pub fn bucket_exists(&self, bucket: &str) -> StoreResult<bool> {
        Ok(self.buckets.contains_key(bucket)?)
    }

    /// Creates the bucket; `false` if it already existed. Resolves once the
    /// bucket is durable either way: a concurrent creator may still be
    /// waiting for its commit.
    pub async fn create_bucket(&self, bucket: &str) -> StoreResult<bool> {
        let record = serde_json::to_vec(&BucketMeta::new(meta::now_ms()))?;
        let created = self.buckets.compare_and_swap(bucket, None::<&[u8]>, Some(record))?.is_ok();
        self.flush().await?;
        Ok(created)
    }

    /// Deletes an empty bucket. Its incomplete multipart uploads do not
    /// count as content: they are aborted with it, as AWS does.
    pub async fn delete_bucket(&self, bucket: &str) -> StoreResult<BucketDelete> {
        if !self.bucket_exists(bucket)? {
            return Ok(BucketDelete::Missing);
        }
        if self.objects.scan_prefix(meta::bucket_prefix(bucket)).next().transpose()?.is_some() {
            return Ok(BucketDelete::NotEmpty);
        }
        let mut parts = Vec::new();
        let uploads: Vec<String> = self.uploads_of(bucket)?.into_iter().map(|(id, _)| id).collect();
        for id in &uploads {
            parts.extend(self.parts_of(id)?.into_iter().map(|(n, p)| (meta::part_key(id, n), p.blob)));
        }
        // One transaction: a crash keeps the bucket with all its uploads or
        // drops them all (a part landing meanwhile is swept at start).
        let removed = (&self.buckets, &self.uploads, &self.parts).transaction(|(buckets, upload_tree, part_tree)| {
            if buckets.remove(bucket.as_bytes())?.is_none() {
                return Ok(false);
            }
            for id in &uploads {
                upload_tree.remove(id.as_bytes())?;
            }
            for (k, _) in &parts {
                part_tree.remove(k.as_slice())?;
            }
            Ok(true)
        });
        match removed {
            Ok(true) => {}
            Ok(false) => return Ok(BucketDelete::Missing),
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        self.flush().await?;
        let blobs = parts.into_iter().map(|(_, b)| b);
        for blob in blobs {
            self.blobs.remove(&blob);
        }
        Ok(BucketDelete::Deleted)
    }

    pub fn get_bucket(&self, bucket: &str) -> StoreResult<Option<BucketMeta>> {
        match self.buckets.get(bucket)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Changes a bucket's record (tags, CORS) atomically and durably;
    /// `false` if the bucket does not exist.
    pub async fn update_bucket(&self, bucket: &str, change: impl Fn(&mut BucketMeta)) -> StoreResult<bool> {
        loop {
            let Some(cur) = self.buckets.get(bucket)? else { return Ok(false) };
            let mut record: BucketMeta = serde_json::from_slice(&cur)?;
            change(&mut record);
            let new = serde_json::to_vec(&record)?;
            if self.buckets.compare_and_swap(bucket, Some(cur), Some(new))?.is_ok() {
                break;
            }
        }
        self.flush().await?;
        Ok(true)
    }

    pub fn list_buckets(&self) -> StoreResult<Vec<(String, BucketMeta)>> {
        let mut out = Vec::new();
        for item in self.buckets.iter() {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k).into_owned(), serde_json::from_slice(&v)?));
        }
        Ok(out)
    }

    // ---- objects ----

    /// The object's record and its inline bytes (empty when file-backed).
    pub fn get_object(&self, bucket: &str, key: &str) -> StoreResult<Option<(ObjectMeta, Bytes)>> {
        let Some(v) = self.objects.get(meta::object_key(bucket, key))? else { return Ok(None) };
        let (m, inline) = meta::decode_object(&v)?;
        let bytes = if inline.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(&v[inline]) };
        Ok(Some((m, bytes)))
    }

    /// Changes an object's record in place (its tags), keeping its bytes,
    /// atomically and durably; `None` if there is no such object.
    pub async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        change: impl Fn(&mut ObjectMeta),
    ) -> StoreResult<Option<ObjectMeta>> {
        let k = meta::object_key(bucket, key);
        let record = loop {
            let Some(cur) = self.objects.get(&k)? else { return Ok(None) };
            let (mut record, inline) = meta::decode_object(&cur)?;
            change(&mut record);
            let new = meta::encode_object(&record, &cur[inline])?;
            if self.objects.compare_and_swap(&k, Some(cur), Some(new))?.is_ok() {
                break record;
            }
        };
        self.flush().await?;
        Ok(Some(record))
    }

    /// Publishes an object (durably) and retires the blob it replaced.
    /// With a condition, the check and the swap are one atomic step; with
    /// events, they go into the outbox in the same atomic step.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectMeta,
        inline: &[u8],
        cond: &PutCondition,
        events: &[PendingEvent],
    ) -> StoreResult<Result<(), PreconditionFailed>> {
        let k = meta::object_key(bucket, key);
        let v = meta::encode_object(record, inline)?;
        let events = encode_events(events)?;
        let old = if events.is_empty() {
            match cond {
                PutCondition::None => self.objects.insert(&k, v)?,
                _ => loop {
                    let cur = self.objects.get(&k)?;
                    if let Err(failed) = cond.check(current_etag(cur.as_deref())?.as_deref()) {
                        return Ok(Err(failed));
                    }
                    if self.objects.compare_and_swap(&k, cur.as_ref(), Some(v.as_slice()))?.is_ok() {
                        break cur;
                    }
                },
            }
        } else {
            let outcome = (&self.objects, &self.outbox).transaction(|(objects, outbox)| {
                let cur = objects.get(&k)?;
                let etag = current_etag(cur.as_deref()).map_err(ConflictableTransactionError::Abort)?;
                if let Err(failed) = cond.check(etag.as_deref()) {
                    return Ok(Err(failed));
                }
                objects.insert(k.as_slice(), v.as_slice())?;
                queue_events(outbox, &events)?;
                Ok(Ok(cur))
            });
            match unwrap_tx(outcome)? {
                Ok(old) => old,
                Err(p) => return Ok(Err(p)),
            }
        };
        self.flush().await?;
        self.retire(old.as_deref(), record.blob.as_deref())?;
        Ok(Ok(()))
    }

    /// Deletes objects with one durable flush; missing keys are no error.
    /// `events_for` names the events each removed key causes; they go into
    /// the outbox in the same atomic step as the removals.
    pub async fn delete_objects(
        &self,
        bucket: &str,
        keys: &[String],
        events_for: &(dyn Fn(&str) -> Vec<PendingEvent> + Sync),
    ) -> StoreResult<()> {
        let mut encoded = Vec::with_capacity(keys.len());
        for key in keys {
            encoded.push(encode_events(&events_for(key))?);
        }
        let removed = if encoded.iter().all(Vec::is_empty) {
            let mut removed = Vec::new();
            for key in keys {
                if let Some(old) = self.objects.remove(meta::object_key(bucket, key))? {
                    removed.push(old);
                }
            }
            removed
        } else {
            let outcome = (&self.objects, &self.outbox).transaction(|(objects, outbox)| {
                let mut removed = Vec::new();
                for (key, events) in keys.iter().zip(&encoded) {
                    if let Some(old) = objects.remove(meta::object_key(bucket, key))? {
                        queue_events(outbox, events)?;
                        removed.push(old);
                    }
                }
                Ok(removed)
            });
            unwrap_tx(outcome)?
        };
        if removed.is_empty() {
            return Ok(());
        }
        self.flush().await?;
        for old in removed {
            self.retire(Some(&old), None)?;
        }
        Ok(())
    }

    // ---- event outbox ----

    /// The oldest `max` undelivered events, with their sequence numbers.
    pub fn outbox_batch(&self, max: usize) -> StoreResult<Vec<(u64, PendingEvent)>> {
        let mut out = Vec::new();
        for item in self.outbox.iter().take(max) {
            let (k, v) = item?;
            let seq =
                k.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt("outbox key".into()))?;
            out.push((seq, serde_json::from_slice(&v)?));
        }
        Ok(out)
    }

    /// Drops delivered events. Not flushed on its own: after a crash a
    /// delivered event may be sent again (delivery is at least once).
    pub fn outbox_remove(&self, seqs: &[u64]) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(&seq.to_be_bytes());
        }
        Ok(self.outbox.apply_batch(batch)?)
    }

    /// Deletes every bucket, object, upload and pending event, durably
    /// (the CI reset); blob files go after the records.
    pub async fn wipe(self: &Arc<Self>) -> StoreResult<()> {
        for tree in [&self.buckets, &self.objects, &self.uploads, &self.parts, &self.outbox] {
            tree.clear()?;
        }
        self.flush().await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || -> StoreResult<()> {
            for id in this.blobs.all_ids()? {
                this.blobs.remove(&id);
            }
            Ok(())
        })
        .await?
    }

    /// Unlinks the blob of a replaced record (after the replacement is durable).
    fn retire(&self, old: Option<&[u8]>, keep: Option<&str>) -> StoreResult<()> {
        if let Some(old) = old
            && let Some(blob) = meta::decode_object(old)?.0.blob
            && Some(blob.as_str()) != keep
        {
            self.blobs.remove(&blob);
        }
        Ok(())
    }

    // ---- multipart ----

    pub async fn create_upload(&self, id: &str, upload: &UploadMeta) -> StoreResult<()> {
        self.uploads.insert(id, serde_json::to_vec(upload)?)?;
        self.flush().await
    }

    pub fn get_upload(&self, id: &str) -> StoreResult<Option<UploadMeta>> {
        match self.uploads.get(id)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// All uploads in `bucket`, as (id, record).
    pub fn uploads_of(&self, bucket: &str) -> StoreResult<Vec<(String, UploadMeta)>> {
        let mut out = Vec::new();
        for item in self.uploads.iter() {
            let (k, v) = item?;
            let upload: UploadMeta = serde_json::from_slice(&v)?;
            if upload.bucket == bucket {
                out.push((String::from_utf8_lossy(&k).into_owned(), upload));
            }
        }
        Ok(out)
    }

    /// Records a durable part; `false` if the upload vanished meanwhile
    /// (then the part is dropped again).
    pub async fn put_part(&self, id: &str, number: u32, part: &PartMeta) -> StoreResult<bool> {
        let k = meta::part_key(id, number);
        let old = self.parts.insert(&k, serde_json::to_vec(part)?)?;
        if !self.uploads.contains_key(id)? {
            self.parts.remove(&k)?;
            self.blobs.remove(&part.blob);
            return Ok(false);
        }
        self.flush().await?;
        if let Some(old) = old {
            let old: PartMeta = serde_json::from_slice(&old)?;
            if old.blob != part.blob {
                self.blobs.remove(&old.blob);
            }
        }
        Ok(true)
    }

    pub fn parts_of(&self, id: &str) -> StoreResult<Vec<(u32, PartMeta)>> {
        let prefix = meta::parts_prefix(id);
        let mut out = Vec::new();
        for item in self.parts.scan_prefix(&prefix) {
            let (k, v) = item?;
            let number: [u8; 4] = k
                .get(prefix.len()..)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("part key".into()))?;
            out.push((u32::from_be_bytes(number), serde_json::from_slice(&v)?));
        }
        Ok(out)
    }

    /// Removes an upload and its parts; `false` if it did not exist.
    pub async fn abort_upload(&self, id: &str) -> StoreResult<bool> {
        if self.uploads.remove(id)?.is_none() {
            return Ok(false);
        }
        let parts = self.parts_of(id)?;
        for (n, _) in &parts {
            self.parts.remove(meta::part_key(id, *n))?;
        }
        self.flush().await?;
        for (_, p) in parts {
            self.blobs.remove(&p.blob);
        }
        Ok(true)
    }

    /// Atomically publishes the assembled object and removes the upload and
    /// its parts; `Ok(None)` if the upload was completed or aborted meanwhile,
    /// `Ok(Some(Err(_)))`, changing nothing, if `cond` does not hold.
    pub async fn complete_upload(
        &self,
        id: &str,
        upload: &UploadMeta,
        record: &ObjectMeta,
        cond: &PutCondition,
        events: &[PendingEvent],
    ) -> StoreResult<Option<Result<(), PreconditionFailed>>> {
        let parts = self.parts_of(id)?;
        let events = encode_events(events)?;
        let k = meta::object_key(&upload.bucket, &upload.key);
        let v = meta::encode_object(record, &[])?;
        let trees = (&self.objects, &self.uploads, &self.parts, &self.outbox);
        let outcome = trees.transaction(|(objects, uploads, part_tree, outbox)| {
            if uploads.get(id.as_bytes())?.is_none() {
                return Ok(None);
            }
            let cur = objects.get(&k)?;
            let etag = current_etag(cur.as_deref()).map_err(ConflictableTransactionError::Abort)?;
            if let Err(failed) = cond.check(etag.as_deref()) {
                // Nothing changed: the upload stays, to be completed
                // without the condition, or aborted, as on AWS.
                return Ok(Some(Err(failed)));
            }
            uploads.remove(id.as_bytes())?;
            for (n, _) in &parts {
                part_tree.remove(meta::part_key(id, *n))?;
            }
            let old = objects.insert(k.as_slice(), v.as_slice())?;
            queue_events(outbox, &events)?;
            Ok(Some(Ok(old)))
        });
        let old = match unwrap_tx(outcome)? {
            Some(Ok(old)) => old,
            Some(Err(p)) => return Ok(Some(Err(p))),
            None => return Ok(None),
        };
        self.flush().await?;
        for (_, p) in parts {
            self.blobs.remove(&p.blob);
        }
        self.retire(old.as_deref(), record.blob.as_deref())?;
        Ok(Some(Ok(())))
    }
}

/// The ETag of a stored record, if there is one.
fn current_etag(cur: Option<&[u8]>) -> StoreResult<Option<String>> {
    Ok(match cur {
        Some(c) => Some(meta::decode_object(c)?.0.etag),
        None => None,
    })
}

fn encode_events(events: &[PendingEvent]) -> StoreResult<Vec<Vec<u8>>> {
    Ok(events.iter().map(serde_json::to_vec).collect::<Result<_, _>>()?)
}

/// Puts encoded events into the outbox under fresh, increasing sequence
/// numbers (sled's ids never repeat, not even across restarts).
fn queue_events(
    outbox: &sled::transaction::TransactionalTree,
    events: &[Vec<u8>],
) -> Result<(), ConflictableTransactionError<StoreError>> {
    for e in events {
        let seq = outbox.generate_id()?;
        outbox.insert(&seq.to_be_bytes(), e.as_slice())?;
    }
    Ok(())
}

fn unwrap_tx<T>(outcome: Result<T, TransactionError<StoreError>>) -> StoreResult<T> {
    match outcome {
        Ok(o) => Ok(o),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}

/// The conditional-write headers of PutObject / CompleteMultipartUpload.
pub enum PutCondition {
    None,
    /// `If-None-Match: *`: only if the key does not exist.
    IfAbsent,
    /// `If-Match`: only if the current ETag matches (or, for `*`, exists).
    IfMatch(ETagCondition),
}

impl PutCondition {
    pub fn from_headers(if_match: Option<ETagCondition>, if_none_match: Option<&ETagCondition>) -> Self {
        match (if_match, if_none_match) {
            (Some(m), _) => PutCondition::IfMatch(m),
            (None, Some(n)) if n.is_any() => PutCondition::IfAbsent,
            _ => PutCondition::None,
        }
    }

    fn check(&self, current_etag: Option<&str>) -> Result<(), PreconditionFailed> {
        let missing = current_etag.is_none();
        if self.holds(current_etag) {
            Ok(())
        } else {
            Err(PreconditionFailed { missing: missing && matches!(self, PutCondition::IfMatch(_)) })
        }
    }

    fn holds(&self, current_etag: Option<&str>) -> bool {
        match (self, current_etag) {
            (PutCondition::None, _) => true,
            (PutCondition::IfAbsent, cur) => cur.is_none(),
            (PutCondition::IfMatch(_), None) => false,
            (PutCondition::IfMatch(ETagCondition::Any), Some(_)) => true,
            (PutCondition::IfMatch(ETagCondition::ETag(want)), Some(cur)) => want.value() == cur,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: with sled's `flush_async`, the flush waiters filled
    /// sled's own I/O pool and this many concurrent durable PUTs hung.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_durable_puts_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let record = ObjectMeta {
                        size: 1,
                        etag: format!("{i}"),
                        modified_ms: 0,
                        blob: None,
                        attrs: Default::default(),
                        checksums: Default::default(),
                        parts: None,
                        part_list: Vec::new(),
                        tags: Vec::new(),
                        composite: false,
                    };
                    store.put_object("b", &format!("k{i}"), &record, b"x", &PutCondition::None, &[]).await
                })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Ok(Ok(()))));
        }
        assert_eq!(store.objects.len(), 64);
    }
}
