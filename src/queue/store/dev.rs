//! What the CI dev endpoints need from the store: every message of a queue
//! without receiving it (peek), and deleting every queue (reset).

use super::model::{self, Handle, StoredMessage};
use super::{Queue, Received, Store, StoreError};

impl Store {
    /// Every message of `q` in queue order, in flight or not, as a receive
    /// would render it, but without changing visibility or receive counts.
    /// The handle is that of the message's latest receive, if any.
    pub fn peek(&self, q: &Queue) -> Result<Vec<Received>, StoreError> {
        let st = q.lock();
        if st.deleted {
            return Err(StoreError::NoQueue);
        }
        let mut out = Vec::with_capacity(st.msgs.len());
        for (&seq, state) in &st.msgs {
            let Some(body) = self.tree.get(model::body_key(q.id, seq))? else { continue };
            let message: StoredMessage =
                serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let handle = Handle { qid: q.id, seq, receive: u64::from(state.receive_count) }.encode(&self.handle_key);
            out.push(Received {
                message,
                handle,
                receive_count: state.receive_count,
                first_receive: state.first_receive,
            });
        }
        Ok(out)
    }

    /// Deletes every queue with its messages and move tasks (not yet
    /// durable: the caller commits).
    pub fn wipe(&self) -> Result<(), StoreError> {
        for q in self.queues() {
            match self.delete_queue(&q) {
                Ok(()) | Err(StoreError::NoQueue) => {}
                Err(e) => return Err(e),
            }
        }
        self.clear_moves()
    }

    /// The queue an ARN of this store names.
    pub fn queue_by_arn(&self, arn: &str) -> Option<std::sync::Arc<Queue>> {
        self.queue(arn.strip_prefix(self.arn_prefix.as_str())?)
    }
}
