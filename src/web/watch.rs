//! One watcher per upload id that has open event streams: it follows the
//! upload in S3 and publishes each new status to every stream of that id.
//!
//! Web tiers keep no state and never hear from the worker (SPEC "Data
//! flow"), so readiness can only be seen in S3. To keep that cheap, a
//! watcher sends at most one HEAD per interval however many streams share
//! it, and the interval grows from [`FIRST_PAUSE`] to [`MAX_PAUSE`] while
//! the upload stays pending. Most probes look for the default variant (what
//! "ready" means); every [`SIDE_PROBE_EVERY`]th looks for a failure record
//! or a tombstone instead. Only a probe that finds something reads the full
//! status (the same lookup as `GET /v1/avatar/{id}`). A watcher ends once
//! the status settles, the upload is gone, or its last stream closes.
//!
//! At most [`PROBES_IN_FLIGHT`] watchers ask S3 at once, whatever the number
//! of open streams: every look in flight holds one or two connections of
//! the SDK's pool, and with the embedded driver the worker needs that
//! endpoint too (`aws.max_connections`, 1024 by default); a thousand
//! watchers probing at once would take a thousand. Past the bound, probes
//! wait their turn and readiness is seen a little later. A look that S3
//! leaves unanswered for [`PROBE_TIMEOUT`] is abandoned, so a stall cannot
//! keep the turns: the web's clients give each attempt as long, but the
//! SDK then retries, and a look makes up to three calls in a row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use super::WebState;
use super::status;
use crate::avatar::{self, AvatarId};
use crate::clients::CallError;
use crate::crunch::VariantName;

/// The first pause between probes. Each next one is a quarter longer, so
/// readiness is seen within about a fifth of the time it took, and a
/// long-pending upload costs one HEAD per [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause between probes of a long-pending upload.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// One probe in this many looks for a failure or a deletion instead.
const SIDE_PROBE_EVERY: u32 = 4;
/// How many watchers may be asking S3 at once (a probe and, when it finds
/// something, the status read that follows).
pub const PROBES_IN_FLIGHT: usize = 64;
/// How long one look (a probe and the status read after it) may wait for
/// S3. A HEAD takes milliseconds; one this late is stuck.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a watcher last saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The status document, as `GET /v1/avatar/{id}` answers it.
    Status(Value),
    /// Deleted (or otherwise vanished): streams end.
    Gone,
}

/// The running watchers, by id.
#[derive(Debug)]
pub struct Watchers {
    by_id: Mutex<HashMap<AvatarId, Arc<watch::Sender<Seen>>>>,
    /// Turns to ask S3, [`PROBES_IN_FLIGHT`] of them.
    probes: Semaphore,
}

impl Default for Watchers {
    fn default() -> Self {
        Self { by_id: Mutex::default(), probes: Semaphore::new(PROBES_IN_FLIGHT) }
    }
}

impl Watchers {
    /// A receiver of `id`'s statuses; starts a watcher if none runs, seeded
    /// with `first` (a status the caller just read). The receiver's current
    /// value counts as unseen, so a stream that joins a watcher which has
    /// seen more hears of it at once.
    pub fn subscribe(&self, state: &WebState, id: &AvatarId, first: &Value) -> watch::Receiver<Seen> {
        let mut by_id = self.lock();
        let mut rx = match by_id.get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(Seen::Status(first.clone()));
                let tx = Arc::new(tx);
                by_id.insert(id.clone(), Arc::clone(&tx));
                tokio::spawn(run(state.clone(), id.clone(), tx));
                rx
            }
        };
        rx.mark_changed();
        rx
    }

    /// Drops `tx` from the map if it is still `id`'s watcher and, unless
    /// `settled`, nobody listens any more; decided under the lock that
    /// [`Self::subscribe`] takes, so no stream joins a watcher that is ending.
    fn retire(&self, id: &AvatarId, tx: &Arc<watch::Sender<Seen>>, settled: bool) -> bool {
        let mut by_id = self.lock();
        if !settled && tx.receiver_count() > 0 {
            return false;
        }
        if by_id.get(id).is_some_and(|current| Arc::ptr_eq(current, tx)) {
            by_id.remove(id);
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AvatarId, Arc<watch::Sender<Seen>>>> {
        // The map stays consistent at every await-free step; a panic
        // elsewhere while holding it leaves nothing half-done.
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The watcher of one id: probes until the status settles or nobody listens.
async fn run(state: WebState, id: AvatarId, tx: Arc<watch::Sender<Seen>>) {
    let watchers = &state.settings.watchers;
    let mut pause = FIRST_PAUSE;
    let mut probes = 0u32;
    loop {
        // The pause, then a turn to ask S3; a watcher still ends as soon
        // as its last stream does.
        let turn = tokio::select! {
            turn = async {
                tokio::time::sleep(pause).await;
                watchers.probes.acquire().await
            } => turn,
            () = tx.closed() => {
                if watchers.retire(&id, &tx, false) {
                    return;
                }
                continue;
            }
        };
        // The semaphore is never closed; were it, probing unbounded beats
        // leaving streams without news.
        let _turn = turn.ok();
        pause = (pause * 5 / 4).min(MAX_PAUSE);
        probes += 1;
        let seen = match tokio::time::timeout(PROBE_TIMEOUT, look(&state, &id, probes)).await {
            Ok(Ok(Some(seen))) => seen,
            Ok(Ok(None)) => continue,
            Ok(Err(detail)) => {
                tracing::warn!(id = %id, error = %detail, "watching an upload failed; will try again");
                continue;
            }
            Err(_) => {
                tracing::warn!(id = %id, timeout = ?PROBE_TIMEOUT, "S3 did not answer a watcher's probe; will try again");
                continue;
            }
        };
        let done = match &seen {
            Seen::Status(body) => status::is_settled(body),
            Seen::Gone => true,
        };
        tx.send_if_modified(|old| {
            let changed = *old != seen;
            *old = seen;
            changed
        });
        if done {
            watchers.retire(&id, &tx, true);
            return;
        }
    }
}

/// One look at `id`: `None` while nothing has happened to it, else what
/// it has come to; the error is the detail for the log.
async fn look(state: &WebState, id: &AvatarId, n: u32) -> Result<Option<Seen>, String> {
    if !probe(state, id, n).await.map_err(|e| e.detail())? {
        return Ok(None);
    }
    match status::current(state, id).await {
        Ok(Some(body)) => Ok(Some(Seen::Status(body))),
        Ok(None) => Ok(Some(Seen::Gone)),
        Err(e) => Err(crate::clients::cause_chain(&e)),
    }
}

/// One HEAD: has anything happened to `id`? Which key is asked rotates
/// with `n`, the probe's number.
async fn probe(state: &WebState, id: &AvatarId, n: u32) -> Result<bool, CallError> {
    let s = &state.settings;
    let s3 = &state.clients.s3;
    let (bucket, key) = if !n.is_multiple_of(SIDE_PROBE_EVERY) {
        (&s.public_bucket, id.variant_key(VariantName::Default))
    } else if n.is_multiple_of(2 * SIDE_PROBE_EVERY) {
        (&s.private_bucket, id.tombstone_key())
    } else {
        (&s.private_bucket, id.failure_key())
    };
    avatar::exists(s3, bucket, &key).await
}
