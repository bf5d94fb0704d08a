//! The queue store: sled on disk, an index in memory.
//!
//! sled holds every queue and message (see [`model`] for the layout); memory
//! holds, per queue, just enough to pick the next messages to deliver without
//! touching disk: visibility deadlines, receive counts, FIFO groups. The index
//! is rebuilt from sled at start. Writes go to sled first, then the index;
//! callers that acknowledge a change wait on [`Store::durable`].

mod dev;
mod messages;
pub mod model;
mod moves;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::Notify;

use crate::durable::{self, CommitError, Committer, DurableError};

pub use messages::{ReceiveOptions, Received, SendOutcome};
use model::{DedupEntry, MsgState, QueueMeta, Settings};
pub use moves::{MoveStatus, MoveTask};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("queue does not exist")]
    NoQueue,
    #[error("invalid receipt handle {0}")]
    InvalidHandle(String),
    #[error("message {0} not available")]
    NotAvailable(String),
    #[error("message not in flight")]
    NotInflight,
    #[error("visibility timeout beyond 12 hours from the first receive")]
    VisibilityTooLong,
    #[error("a message move task is already running for this source")]
    MoveRunning,
    #[error("no such message move task")]
    NoMoveTask,
    #[error("the message move task is not running")]
    MoveNotRunning,
}

/// Sequence numbers are reserved in blocks of this size (see `alloc_seq`).
const SEQ_BLOCK: u64 = 1 << 16;
/// Where the end of the current block is kept (outside every scanned prefix).
const SEQ_MARK_KEY: &[u8] = b"zseq";
/// Where the key that signs receipt handles is kept (also outside them).
const HANDLE_KEY_KEY: &[u8] = b"zhandle-key";

pub use crate::durable::now_ms;

/// Commit rounds (flush + syncs) since the process started.
static FLUSHES: AtomicU64 = AtomicU64::new(0);
/// Messages whose send, delete or visibility change waited for a commit.
static ACKED: AtomicU64 = AtomicU64::new(0);

fn count_commit() {
    FLUSHES.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("crunchbox_sqs_flushes_total").increment(1);
}

/// `(commit rounds, acknowledged messages)` so far, for benchmarks and metrics.
pub fn durability_stats() -> (u64, u64) {
    (FLUSHES.load(Ordering::Relaxed), ACKED.load(Ordering::Relaxed))
}

/// One queue: its settings and its in-memory index. `notify` wakes long
/// polls when a message may have become receivable.
#[derive(Debug)]
pub struct Queue {
    pub name: String,
    pub id: u64,
    pub notify: Notify,
    state: Mutex<QueueState>,
}

#[derive(Debug)]
pub struct QueueState {
    pub meta: QueueMeta,
    pub settings: Settings,
    /// Every stored message by sequence number (the queue's order).
    msgs: BTreeMap<u64, MsgState>,
    /// `(visible_at, seq)`: the receivable ones are a prefix.
    by_visible: BTreeSet<(u64, u64)>,
    dedup: HashMap<String, DedupEntry>,
    pub last_purge: Option<u64>,
    deleted: bool,
}

impl QueueState {
    fn new(meta: QueueMeta) -> Self {
        let settings = Settings::from_attributes(&meta.attributes);
        Self {
            meta,
            settings,
            msgs: BTreeMap::new(),
            by_visible: BTreeSet::new(),
            dedup: HashMap::new(),
            last_purge: None,
            deleted: false,
        }
    }

    fn insert(&mut self, seq: u64, state: MsgState) {
        self.by_visible.insert((state.visible_at, seq));
        self.msgs.insert(seq, state);
    }

    fn remove(&mut self, seq: u64) -> Option<MsgState> {
        let state = self.msgs.remove(&seq)?;
        self.by_visible.remove(&(state.visible_at, seq));
        Some(state)
    }
}

impl Queue {
    fn new(meta: QueueMeta) -> Self {
        Self { name: meta.name.clone(), id: meta.id, notify: Notify::new(), state: Mutex::new(QueueState::new(meta)) }
    }

    /// Locks the index; a panic elsewhere never makes the queue unusable.
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queue's metadata, or `NoQueue` once deleted.
    pub fn meta(&self) -> Result<(QueueMeta, Settings), StoreError> {
        let st = self.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        Ok((st.meta.clone(), st.settings.clone()))
    }
}

/// What [`Store::create_queue`] found.
#[derive(Debug)]
pub enum Created {
    New,
    /// A queue of that name exists; the caller compares attributes.
    Existing(Arc<Queue>),
}

pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    queues: RwLock<BTreeMap<String, Arc<Queue>>>,
    committer: Committer,
    /// Sequence numbers are global so a redrive can number a message for
    /// its new queue without taking that queue's lock.
    next_seq: AtomicU64,
    /// End of the block of sequence numbers recorded on disk.
    seq_mark: Mutex<u64>,
    /// Signs receipt handles (see [`model::Handle`]); kept in the store so
    /// handles stay valid across restarts.
    handle_key: [u8; 32],
    /// `arn:aws:sqs:REGION:ACCOUNT:`, for DeadLetterQueueSourceArn.
    arn_prefix: String,
    /// Message move tasks, oldest first (see [`moves`]).
    moves: Mutex<Vec<MoveTask>>,
}

impl Store {
    /// Opens (or creates) the store under `dir` and rebuilds the index.
    /// Blocks (opening and syncing files): call it off the async threads.
    pub fn open(dir: &Path, arn_prefix: String) -> Result<Self, StoreError> {
        let (db, mut point) = durable::open(dir, sled::Config::new().flush_every_ms(Some(200)))?;
        let tree = db.open_tree("sqs")?;
        let handle_key = load_handle_key(&tree)?;
        // The tree and the key are durable before any handle is issued.
        db.flush()?;
        point.after_flush().map_err(DurableError::io("cannot sync", dir))?;
        let committer = Committer::start("sqs-commit", db.clone(), point, count_commit)?;
        let store = Store {
            db,
            tree,
            queues: RwLock::new(BTreeMap::new()),
            committer,
            next_seq: AtomicU64::new(1),
            seq_mark: Mutex::new(0),
            handle_key,
            arn_prefix,
            moves: Mutex::new(Vec::new()),
        };
        store.load()?;
        *store.moves() = store.load_moves()?;
        Ok(store)
    }

    fn load(&self) -> Result<(), StoreError> {
        let mut by_id: HashMap<u64, QueueState> = HashMap::new();
        for item in self.tree.scan_prefix(b"q") {
            let (_, v) = item?;
            let meta: QueueMeta = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            by_id.insert(meta.id, QueueState::new(meta));
        }
        let mut max_seq = 0;
        let mut orphans = sled::Batch::default();
        for item in self.tree.scan_prefix(b"s") {
            let (k, v) = item?;
            let Some((qid, seq)) = model::split_message_key(&k) else { continue };
            max_seq = max_seq.max(seq);
            match (by_id.get_mut(&qid), MsgState::decode(&v)) {
                (Some(q), Some(state)) => q.insert(seq, state),
                _ => {
                    // A message of a deleted queue, left by a crash mid-delete.
                    orphans.remove(&*k);
                    orphans.remove(&model::body_key(qid, seq)[..]);
                }
            }
        }
        let now = now_ms();
        for item in self.tree.scan_prefix(b"d") {
            let (k, v) = item?;
            let Some(qid) = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else { continue };
            let entry: Option<DedupEntry> = serde_json::from_slice(&v).ok();
            match (by_id.get_mut(&qid), entry) {
                (Some(q), Some(e)) if e.expires > now => {
                    let id = String::from_utf8_lossy(&k[9..]).into_owned();
                    q.dedup.insert(id, e);
                }
                _ => orphans.remove(&*k),
            }
        }
        self.tree.apply_batch(orphans)?;
        let mark = self.tree.get(SEQ_MARK_KEY)?.and_then(|v| v.as_ref().try_into().ok()).map(u64::from_be_bytes);
        self.next_seq.store((max_seq + 1).max(mark.unwrap_or(1)), Ordering::SeqCst);
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        for (_, st) in by_id {
            let q = Queue::new(st.meta.clone());
            *q.lock() = st;
            queues.insert(q.name.clone(), Arc::new(q));
        }
        Ok(())
    }

    /// Waits until everything written so far is on disk (group commit).
    /// Resolves once every change so far is power-safe; `messages` is how
    /// many acknowledged messages it covers (for the counters).
    pub async fn durable(&self, messages: u64) -> Result<(), StoreError> {
        self.committer.durable().await?;
        ACKED.fetch_add(messages, Ordering::Relaxed);
        metrics::counter!("crunchbox_sqs_acked_messages_total").increment(messages);
        Ok(())
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every queue, by name.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Creates `name` with `attributes` (defaults filled in by the caller)
    /// unless it exists. Resolves once the queue is durable — also when it
    /// already existed, since its creator may not have been acknowledged yet.
    pub async fn create_queue(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<Created, StoreError> {
        let created = self.insert_queue(name, attributes, tags)?;
        self.durable(0).await?;
        Ok(created)
    }

    fn insert_queue(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<Created, StoreError> {
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(name) {
            return Ok(Created::Existing(Arc::clone(q)));
        }
        let now = now_ms() / 1000;
        let meta = QueueMeta {
            id: self.db.generate_id()?,
            name: name.to_owned(),
            attributes,
            tags,
            created: now,
            modified: now,
        };
        self.write_meta(&meta)?;
        queues.insert(name.to_owned(), Arc::new(Queue::new(meta)));
        Ok(Created::New)
    }

    fn write_meta(&self, meta: &QueueMeta) -> Result<(), StoreError> {
        let v = serde_json::to_vec(meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tree.insert(model::queue_key(&meta.name), v)?;
        Ok(())
    }

    /// Changes a queue's metadata under its lock (so a check in `change`
    /// sees no other change in between); an error from `change` changes
    /// nothing. Resolves once the change is durable.
    pub async fn update_meta<E: From<StoreError>>(
        &self,
        q: &Queue,
        change: impl FnOnce(&mut QueueMeta) -> Result<(), E>,
    ) -> Result<(), E> {
        self.change_meta(q, change)?;
        Ok(self.durable(0).await?)
    }

    fn change_meta<E: From<StoreError>>(
        &self,
        q: &Queue,
        change: impl FnOnce(&mut QueueMeta) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue.into());
        }
        let mut meta = st.meta.clone();
        change(&mut meta)?;
        meta.modified = now_ms() / 1000;
        self.write_meta(&meta)?;
        st.settings = Settings::from_attributes(&meta.attributes);
        st.meta = meta;
        drop(st);
        // A shorter delay or visibility may have made messages receivable.
        q.notify.notify_waiters();
        Ok(())
    }

    /// Deletes the queue and every message in it.
    pub fn delete_queue(&self, q: &Queue) -> Result<(), StoreError> {
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        let mut st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        let mut batch = sled::Batch::default();
        batch.remove(model::queue_key(&q.name));
        for &seq in st.msgs.keys() {
            batch.remove(&model::body_key(q.id, seq)[..]);
            batch.remove(&model::state_key(q.id, seq)[..]);
        }
        for id in st.dedup.keys() {
            batch.remove(model::dedup_key(q.id, id));
        }
        self.tree.apply_batch(batch)?;
        st.deleted = true;
        st.msgs.clear();
        st.by_visible.clear();
        queues.remove(&q.name);
        drop(st);
        q.notify.notify_waiters();
        Ok(())
    }

    /// Drops messages past their retention period and expired FIFO
    /// deduplication ids. Run by the background task.
    pub fn expire(&self, now: u64) -> Result<usize, StoreError> {
        let mut dropped = 0;
        for q in self.queues() {
            let mut st = q.lock();
            let retention = st.settings.retention_ms;
            let old: Vec<u64> =
                st.msgs.iter().filter(|(_, m)| m.sent_at + retention <= now).map(|(&seq, _)| seq).collect();
            let stale: Vec<String> =
                st.dedup.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| k.clone()).collect();
            if old.is_empty() && stale.is_empty() {
                continue;
            }
            let mut batch = sled::Batch::default();
            for &seq in &old {
                batch.remove(&model::body_key(q.id, seq)[..]);
                batch.remove(&model::state_key(q.id, seq)[..]);
            }
            for id in &stale {
                batch.remove(model::dedup_key(q.id, id));
            }
            self.tree.apply_batch(batch)?;
            for seq in old {
                st.remove(seq);
                dropped += 1;
            }
            for id in stale {
                st.dedup.remove(&id);
            }
        }
        Ok(dropped)
    }

    /// The next sequence number. Entering a new block of numbers first
    /// records the block's end, so after a restart numbering resumes past
    /// every number handed out, even of messages deleted since.
    fn alloc_seq(&self) -> Result<u64, StoreError> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut mark = self.seq_mark.lock().unwrap_or_else(|p| p.into_inner());
        if seq >= *mark {
            let end = seq + SEQ_BLOCK;
            self.tree.insert(SEQ_MARK_KEY, &end.to_be_bytes())?;
            *mark = end;
        }
        Ok(seq)
    }
}

/// The receipt-handle key, made from the OS's random source on first open.
fn load_handle_key(tree: &sled::Tree) -> Result<[u8; 32], StoreError> {
    if let Some(v) = tree.get(HANDLE_KEY_KEY)? {
        return <[u8; 32]>::try_from(v.as_ref()).map_err(|_| StoreError::Corrupt("receipt handle key".into()));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| StoreError::Corrupt(format!("no randomness for the handle key: {e}")))?;
    tree.insert(HANDLE_KEY_KEY, &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::model::StoredMessage;
    use super::*;

    fn message(body: &str) -> StoredMessage {
        StoredMessage {
            id: body.to_owned(),
            body: body.to_owned(),
            attributes: Default::default(),
            system_attributes: Default::default(),
            md5_body: String::new(),
            md5_attributes: None,
            md5_system: None,
            sent_at: 0,
            sender_id: "0".into(),
            group_id: None,
            dedup_id: None,
            sequence_number: None,
            dlq_source_arn: None,
        }
    }

    fn attributes(retention: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("MessageRetentionPeriod".to_owned(), retention.to_owned())])
    }

    const ONE: ReceiveOptions = ReceiveOptions { max: 1, visibility_ms: Some(60_000) };

    #[test]
    fn retention_expiry_drops_old_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "arn:".into()).unwrap();
        store.insert_queue("q", attributes("60"), BTreeMap::new()).unwrap();
        let q = store.queue("q").unwrap();
        store.send(&q, message("old"), 0).unwrap();
        assert_eq!(store.expire(now_ms()).unwrap(), 0);
        assert_eq!(store.expire(now_ms() + 61_000).unwrap(), 1);
        let (got, _) = store.receive(&q, ONE).unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn index_is_rebuilt_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), "arn:".into()).unwrap();
            store.insert_queue("q", attributes("600"), BTreeMap::new()).unwrap();
            let q = store.queue("q").unwrap();
            store.send(&q, message("a"), 0).unwrap();
            store.send(&q, message("b"), 0).unwrap();
            let (got, _) = store.receive(&q, ONE).unwrap();
            assert_eq!(got[0].message.body, "a");
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path(), "arn:".into()).unwrap();
        let q = store.queue("q").expect("queue survives");
        assert_eq!(store.counts(&q).unwrap(), (1, 1, 0), "a stays in flight, b visible");
        let (got, _) = store.receive(&q, ONE).unwrap();
        assert_eq!(got[0].message.body, "b");
        assert_eq!(got[0].receive_count, 1);
    }

    #[test]
    fn handles_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "arn:".into()).unwrap();
        store.insert_queue("q", attributes("600"), BTreeMap::new()).unwrap();
        store.insert_queue("other", attributes("600"), BTreeMap::new()).unwrap();
        let (q, other) = (store.queue("q").unwrap(), store.queue("other").unwrap());
        store.send(&q, message("a"), 0).unwrap();
        let (got, _) = store.receive(&q, ONE).unwrap();
        let handle = &got[0].handle;
        assert!(matches!(store.delete(&other, handle), Err(StoreError::InvalidHandle(_))));
        assert!(matches!(store.delete(&q, "nonsense"), Err(StoreError::InvalidHandle(_))));
        assert!(matches!(store.change_visibility(&q, handle, 43_201), Err(StoreError::VisibilityTooLong)));
        assert!(store.delete(&q, handle).unwrap());
        assert!(!store.delete(&q, handle).unwrap(), "a second delete is a no-op");
    }

    #[test]
    fn sequence_numbers_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = BTreeMap::from([("FifoQueue".to_owned(), "true".to_owned())]);
        let first = {
            let store = Store::open(dir.path(), "arn:".into()).unwrap();
            store.insert_queue("q.fifo", fifo, BTreeMap::new()).unwrap();
            let q = store.queue("q.fifo").unwrap();
            let mut m = message("a");
            m.group_id = Some("g".into());
            let out = store.send(&q, m, 0).unwrap();
            let (got, _) = store.receive(&q, ONE).unwrap();
            assert!(store.delete(&q, &got[0].handle).unwrap());
            store.db.flush().unwrap();
            out.sequence_number.unwrap()
        };
        let store = Store::open(dir.path(), "arn:".into()).unwrap();
        let q = store.queue("q.fifo").unwrap();
        let mut m = message("b");
        m.group_id = Some("g".into());
        let second = store.send(&q, m, 0).unwrap().sequence_number.unwrap();
        assert!(second > first, "{second} after {first}");
    }
}
