//! The message lifecycle: send, receive (with redrive), delete, visibility
//! changes, purge and counts. Each change is written to sled, then to the
//! in-memory index, under the queue's lock, so both see changes in one order.

use std::collections::HashSet;
use std::sync::Arc;

use super::model::{self, DedupEntry, Handle, MsgState, StoredMessage};
use super::{Queue, Store, StoreError, now_ms};

/// A message may stay invisible for at most 12 hours after its first receive.
const MAX_VISIBILITY_MS: u64 = 43_200 * 1000;

/// FIFO deduplication window.
const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// The id a send was given (or, for a FIFO duplicate, the original's).
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub message_id: String,
    pub sequence_number: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct ReceiveOptions {
    pub max: usize,
    /// Overrides the queue's visibility timeout.
    pub visibility_ms: Option<u64>,
}

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: StoredMessage,
    pub handle: String,
    pub receive_count: u32,
    pub first_receive: u64,
}

impl Store {
    /// Stores `msg` (sent now, visible after `delay_secs`). For FIFO queues a
    /// deduplication id seen in the last five minutes returns the original.
    pub fn send(&self, q: &Queue, mut msg: StoredMessage, delay_secs: u64) -> Result<SendOutcome, StoreError> {
        let mut st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        let now = now_ms();
        // With DeduplicationScope=messageGroup an id repeats only within its group.
        let dedup_key = msg.dedup_id.as_ref().map(|id| match (&msg.group_id, st.settings.dedup_per_group) {
            (Some(group), true) => format!("{group}\u{1f}{id}"),
            _ => id.clone(),
        });
        if let Some(key) = &dedup_key
            && let Some(e) = st.dedup.get(key)
            && e.expires > now
        {
            return Ok(SendOutcome { message_id: e.message_id.clone(), sequence_number: e.sequence_number.clone() });
        }
        let seq = self.alloc_seq()?;
        msg.sent_at = now;
        if st.settings.fifo {
            msg.sequence_number = Some(format!("{seq:020}"));
        }
        let state = MsgState {
            visible_at: now + delay_secs * 1000,
            receive_count: 0,
            first_receive: 0,
            sent_at: now,
            group: msg.group_id.as_deref().map(Arc::from),
        };
        let body = serde_json::to_vec(&msg).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut batch = sled::Batch::default();
        batch.insert(&model::body_key(q.id, seq)[..], body);
        batch.insert(&model::state_key(q.id, seq)[..], state.encode());
        let dedup = dedup_key.map(|key| {
            let e = DedupEntry {
                expires: now + DEDUP_WINDOW_MS,
                message_id: msg.id.clone(),
                sequence_number: msg.sequence_number.clone(),
            };
            (key, e)
        });
        if let Some((id, e)) = &dedup {
            let v = serde_json::to_vec(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            batch.insert(model::dedup_key(q.id, id), v);
        }
        self.tree.apply_batch(batch)?;
        st.insert(seq, state);
        if let Some((id, e)) = dedup {
            st.dedup.insert(id, e);
        }
        drop(st);
        if delay_secs == 0 {
            q.notify.notify_waiters();
        }
        Ok(SendOutcome { message_id: msg.id, sequence_number: msg.sequence_number })
    }

    /// Takes up to `opts.max` receivable messages, making them invisible.
    /// Messages received `maxReceiveCount` times already go to the
    /// dead-letter queue instead. Also returns when the next message becomes
    /// receivable, so a long poll knows how long it may sleep.
    pub fn receive(&self, q: &Queue, opts: ReceiveOptions) -> Result<(Vec<Received>, Option<u64>), StoreError> {
        let dlq = {
            let st = q.lock();
            st.settings.redrive.clone()
        }
        .and_then(|(name, max)| Some((self.queue(&name)?, max)))
        .filter(|(dlq, _)| dlq.id != q.id);

        let mut st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        let now = now_ms();
        let candidates = if st.settings.fifo { fifo_candidates(&st, now, opts.max) } else { ready(&st, now, opts.max) };
        let visibility = opts.visibility_ms.unwrap_or(st.settings.visibility_ms);
        let mut out = Vec::with_capacity(candidates.len());
        let mut moved = Vec::new();
        for seq in candidates {
            if out.len() >= opts.max {
                break;
            }
            let Some(mut state) = st.msgs.get(&seq).cloned() else { continue };
            let body = self.tree.get(model::body_key(q.id, seq))?;
            let Some(body) = body else {
                // An index entry without a body cannot be delivered; drop it.
                st.remove(seq);
                continue;
            };
            let mut message: StoredMessage =
                serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Some((dlq, max)) = &dlq
                && state.receive_count >= *max
            {
                message.dlq_source_arn = Some(format!("{}{}", self.arn_prefix, q.name));
                let new_seq = self.alloc_seq()?;
                let body = serde_json::to_vec(&message).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let moved_state = MsgState { visible_at: now, ..state.clone() };
                let mut batch = sled::Batch::default();
                batch.remove(&model::body_key(q.id, seq)[..]);
                batch.remove(&model::state_key(q.id, seq)[..]);
                batch.insert(&model::body_key(dlq.id, new_seq)[..], body);
                batch.insert(&model::state_key(dlq.id, new_seq)[..], moved_state.encode());
                self.tree.apply_batch(batch)?;
                st.remove(seq);
                moved.push((new_seq, moved_state));
                continue;
            }
            st.remove(seq);
            state.receive_count += 1;
            if state.first_receive == 0 {
                state.first_receive = now;
            }
            state.visible_at = now + visibility;
            self.tree.insert(model::state_key(q.id, seq), state.encode())?;
            let handle = Handle { qid: q.id, seq, receive: u64::from(state.receive_count) }.encode(&self.handle_key);
            out.push(Received {
                message,
                handle,
                receive_count: state.receive_count,
                first_receive: state.first_receive,
            });
            st.insert(seq, state);
        }
        let next_wake = st.by_visible.iter().find(|(at, _)| *at > now).map(|(at, _)| *at);
        drop(st);
        if let (Some((dlq, _)), false) = (&dlq, moved.is_empty()) {
            let mut d = dlq.lock();
            if !d.deleted {
                for (seq, state) in moved {
                    d.insert(seq, state);
                }
            }
            drop(d);
            dlq.notify.notify_waiters();
        }
        Ok((out, next_wake))
    }

    /// A handle this store issued for queue `q`, else `InvalidHandle`.
    fn check_handle(&self, q: &Queue, handle: &str) -> Result<Handle, StoreError> {
        match Handle::decode(handle, &self.handle_key) {
            Some(h) if h.qid == q.id => Ok(h),
            _ => Err(StoreError::InvalidHandle(handle.to_owned())),
        }
    }

    /// Deletes the message `handle` names; a handle of a message already
    /// gone succeeds without effect. AWS says a handle of an earlier receive
    /// "might not" delete; here it always does, so an acknowledged delete
    /// is never undone by a redelivery that raced it.
    pub fn delete(&self, q: &Queue, handle: &str) -> Result<bool, StoreError> {
        let h = self.check_handle(q, handle)?;
        let mut st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        match st.msgs.get(&h.seq) {
            None => return Ok(false),
            // A handle from a receive that has not happened yet: only a
            // store that lost its index could see one.
            Some(m) if h.receive > u64::from(m.receive_count) => {
                return Err(StoreError::InvalidHandle(handle.to_owned()));
            }
            Some(_) => {}
        }
        let mut batch = sled::Batch::default();
        batch.remove(&model::body_key(q.id, h.seq)[..]);
        batch.remove(&model::state_key(q.id, h.seq)[..]);
        self.tree.apply_batch(batch)?;
        st.remove(h.seq);
        drop(st);
        // A FIFO group may have been waiting on this message.
        q.notify.notify_waiters();
        Ok(true)
    }

    /// Makes an in-flight message visible again after `secs`. A handle of
    /// an earlier receive of the message still works, as on AWS (moto's
    /// suite checks it); a handle of a receive not yet made does not.
    pub fn change_visibility(&self, q: &Queue, handle: &str, secs: u64) -> Result<(), StoreError> {
        let h = self.check_handle(q, handle)?;
        let mut st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        let now = now_ms();
        let mut state = match st.msgs.get(&h.seq) {
            Some(m) if h.receive <= u64::from(m.receive_count) => m.clone(),
            _ => return Err(StoreError::NotAvailable(handle.to_owned())),
        };
        if !state.in_flight(now) {
            return Err(StoreError::NotInflight);
        }
        if now + secs * 1000 > state.first_receive + MAX_VISIBILITY_MS {
            return Err(StoreError::VisibilityTooLong);
        }
        st.remove(h.seq);
        state.visible_at = now + secs * 1000;
        let written = self.tree.insert(model::state_key(q.id, h.seq), state.encode());
        st.insert(h.seq, state);
        written?;
        drop(st);
        if secs == 0 {
            q.notify.notify_waiters();
        }
        Ok(())
    }

    /// Deletes every message in the queue.
    pub fn purge(&self, q: &Queue) -> Result<(), StoreError> {
        let mut st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        let mut batch = sled::Batch::default();
        for &seq in st.msgs.keys() {
            batch.remove(&model::body_key(q.id, seq)[..]);
            batch.remove(&model::state_key(q.id, seq)[..]);
        }
        self.tree.apply_batch(batch)?;
        st.msgs.clear();
        st.by_visible.clear();
        st.last_purge = Some(now_ms());
        Ok(())
    }

    /// `(visible, in flight, delayed)` right now.
    pub fn counts(&self, q: &Queue) -> Result<(usize, usize, usize), StoreError> {
        let st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        let now = now_ms();
        let (mut inflight, mut delayed) = (0, 0);
        for (_, seq) in st.by_visible.range((now + 1, 0)..) {
            match st.msgs.get(seq) {
                Some(m) if m.receive_count > 0 => inflight += 1,
                Some(_) => delayed += 1,
                None => {}
            }
        }
        Ok((st.msgs.len() - inflight - delayed, inflight, delayed))
    }
}

/// Standard queue: the receivable messages with the earliest deadlines.
fn ready(st: &super::QueueState, now: u64, max: usize) -> Vec<u64> {
    // Extra candidates make up for ones a redrive takes away.
    st.by_visible.range(..(now + 1, 0)).take(max * 2).map(|&(_, seq)| seq).collect()
}

/// FIFO queue: messages in order, skipping every group that has a message in
/// flight, and delayed messages.
fn fifo_candidates(st: &super::QueueState, now: u64, max: usize) -> Vec<u64> {
    let blocked: HashSet<Option<Arc<str>>> =
        st.msgs.values().filter(|m| m.in_flight(now)).map(|m| m.group.clone()).collect();
    let mut out = Vec::new();
    for (&seq, m) in &st.msgs {
        if out.len() >= max * 2 {
            break;
        }
        if blocked.contains(&m.group) {
            continue;
        }
        // Not yet visible and not in flight: delayed. A delayed message
        // holds back nothing; an in-flight one blocked its group above.
        if m.visible_at > now {
            continue;
        }
        out.push(seq);
    }
    out
}
