//! Message move tasks (StartMessageMoveTask: the dead-letter redrive run
//! from the console and the CLI). The housekeeping tick moves up to a
//! second's worth of messages per running task. Each message leaves the
//! source and enters its destination in one sled batch that also records
//! the task's progress, so a crash mid-task neither loses a message nor
//! moves one twice, and a restarted process resumes the task where the
//! disk says it was.

use std::sync::{Arc, MutexGuard};

use serde::{Deserialize, Serialize};

use super::model::{self, MsgState, StoredMessage};
use super::{Queue, QueueState, Store, StoreError, now_ms};

/// Messages a task without a rate moves per tick.
const UNLIMITED_PER_TICK: u64 = 2_000;
/// Tasks kept per source queue (ListMessageMoveTasks shows up to 10).
const KEPT_PER_SOURCE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MoveStatus {
    Running,
    Completed,
    Cancelled,
    Failed,
}

impl MoveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveStatus::Running => "RUNNING",
            MoveStatus::Completed => "COMPLETED",
            MoveStatus::Cancelled => "CANCELLED",
            MoveStatus::Failed => "FAILED",
        }
    }
}

/// One task, as kept under `t` + its handle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveTask {
    pub handle: String,
    /// The source queue's name and internal id (a queue made again under the
    /// same name is another queue).
    pub source: String,
    pub source_id: u64,
    /// The destination's name; `None`: each message goes back to the queue
    /// it was dead-lettered from.
    pub destination: Option<String>,
    pub rate: Option<u64>,
    pub status: MoveStatus,
    /// Milliseconds since the epoch.
    pub started: u64,
    pub to_move: u64,
    pub moved: u64,
    pub failure: Option<String>,
    /// Only messages up to this sequence number were there when the task
    /// started; later ones stay where they are.
    pub last_seq: u64,
    /// Where the next look for a message starts (in memory: after a
    /// restart the task looks from the start again).
    #[serde(skip)]
    cursor: u64,
}

/// Both queues' locks, taken in the order of their ids (the one order any
/// code holding two queue locks uses). The two must differ.
fn lock_pair<'a>(source: &'a Queue, target: &'a Queue) -> (MutexGuard<'a, QueueState>, MutexGuard<'a, QueueState>) {
    if source.id < target.id {
        let s = source.lock();
        (s, target.lock())
    } else {
        let t = target.lock();
        (source.lock(), t)
    }
}

fn task_key(handle: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + handle.len());
    k.push(b't');
    k.extend_from_slice(handle.as_bytes());
    k
}

fn encode(task: &MoveTask) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(task).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// What one step of a task found.
enum Step {
    Moved,
    /// Stop for this tick (the message changed under us); look again next.
    Wait,
    Done,
    Fail(String),
}

impl Store {
    /// The tasks on disk, oldest first.
    pub(super) fn load_moves(&self) -> Result<Vec<MoveTask>, StoreError> {
        let mut tasks = Vec::new();
        for item in self.tree.scan_prefix(b"t") {
            let (_, v) = item?;
            let task: MoveTask = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tasks.push(task);
        }
        tasks.sort_by_key(|t| t.started);
        Ok(tasks)
    }

    pub(super) fn moves(&self) -> std::sync::MutexGuard<'_, Vec<MoveTask>> {
        self.moves.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts moving what `source` holds now to `destination` (or back to
    /// where each message came from). One running task per source.
    pub fn start_move(
        &self,
        source: &Queue,
        destination: Option<&Queue>,
        rate: Option<u64>,
    ) -> Result<MoveTask, StoreError> {
        let mut tasks = self.moves();
        if tasks.iter().any(|t| t.source_id == source.id && t.status == MoveStatus::Running) {
            return Err(StoreError::MoveRunning);
        }
        let (to_move, last_seq) = {
            let st = source.lock();
            if st.deleted {
                return Err(StoreError::NoQueue);
            }
            (st.msgs.len() as u64, st.msgs.keys().next_back().copied().unwrap_or(0))
        };
        let task = MoveTask {
            handle: uuid::Uuid::new_v4().to_string(),
            source: source.name.clone(),
            source_id: source.id,
            destination: destination.map(|d| d.name.clone()),
            rate,
            status: MoveStatus::Running,
            started: now_ms(),
            to_move,
            moved: 0,
            failure: None,
            last_seq,
            cursor: 0,
        };
        let mut batch = sled::Batch::default();
        batch.insert(task_key(&task.handle), encode(&task)?);
        // Forget the oldest finished tasks of this source beyond the ten shown.
        let finished: Vec<usize> = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.source_id == source.id && t.status != MoveStatus::Running)
            .map(|(i, _)| i)
            .collect();
        let drop_count = finished.len().saturating_sub(KEPT_PER_SOURCE - 1);
        let dropped: Vec<usize> = finished.into_iter().take(drop_count).collect();
        for &i in &dropped {
            batch.remove(task_key(&tasks[i].handle));
        }
        self.tree.apply_batch(batch)?;
        for i in dropped.into_iter().rev() {
            tasks.remove(i);
        }
        tasks.push(task.clone());
        Ok(task)
    }

    /// Forgets every task (the CI reset, after every queue is gone).
    pub(super) fn clear_moves(&self) -> Result<(), StoreError> {
        let mut tasks = self.moves();
        let mut batch = sled::Batch::default();
        for t in tasks.iter() {
            batch.remove(task_key(&t.handle));
        }
        self.tree.apply_batch(batch)?;
        tasks.clear();
        Ok(())
    }

    /// The tasks of source queue `source`, newest first.
    pub fn list_moves(&self, source: &Queue) -> Vec<MoveTask> {
        self.moves().iter().rev().filter(|t| t.source_id == source.id).cloned().collect()
    }

    /// Stops a running task; what it moved stays moved.
    pub fn cancel_move(&self, handle: &str) -> Result<MoveTask, StoreError> {
        let mut tasks = self.moves();
        let task = tasks.iter_mut().find(|t| t.handle == handle).ok_or(StoreError::NoMoveTask)?;
        if task.status != MoveStatus::Running {
            return Err(StoreError::MoveNotRunning);
        }
        self.finish(task, MoveStatus::Cancelled, None)?;
        Ok(task.clone())
    }

    /// One tick of every running task. Returns how many messages moved.
    pub fn run_moves(&self) -> Result<u64, StoreError> {
        let mut tasks = self.moves();
        let mut total = 0;
        for task in tasks.iter_mut().filter(|t| t.status == MoveStatus::Running) {
            let budget = task.rate.unwrap_or(UNLIMITED_PER_TICK);
            for _ in 0..budget {
                let step = match self.move_one(task) {
                    Ok(step) => step,
                    // One task's trouble (a corrupt record, an I/O error)
                    // ends that task, not every task's tick.
                    Err(e) => {
                        tracing::warn!(task = %task.handle, error = %e, "message move task failed");
                        Step::Fail("The task failed on an internal error.".into())
                    }
                };
                match step {
                    Step::Moved => total += 1,
                    Step::Wait => break,
                    Step::Done => {
                        self.finish(task, MoveStatus::Completed, None)?;
                        break;
                    }
                    Step::Fail(reason) => {
                        self.finish(task, MoveStatus::Failed, Some(reason))?;
                        break;
                    }
                }
            }
        }
        Ok(total)
    }

    fn finish(&self, task: &mut MoveTask, status: MoveStatus, failure: Option<String>) -> Result<(), StoreError> {
        let mut changed = task.clone();
        changed.status = status;
        changed.failure = failure;
        self.tree.insert(task_key(&task.handle), encode(&changed)?)?;
        *task = changed;
        Ok(())
    }

    /// Moves the task's next receivable message, if any.
    fn move_one(&self, task: &mut MoveTask) -> Result<Step, StoreError> {
        let Some(source) = self.queue(&task.source).filter(|q| q.id == task.source_id) else {
            return Ok(Step::Fail("The source queue was deleted.".into()));
        };
        let now = now_ms();
        // Messages in flight in the source are someone's to handle: the
        // task moves what is receivable and leaves those (as a redrive
        // that receives from the source would).
        if task.cursor > task.last_seq {
            return Ok(Step::Done);
        }
        let seq = source
            .lock()
            .msgs
            .range(task.cursor..=task.last_seq)
            .find(|(_, m)| m.visible_at <= now)
            .map(|(&seq, _)| seq);
        let Some(seq) = seq else { return Ok(Step::Done) };
        task.cursor = seq;
        let Some(body) = self.tree.get(model::body_key(source.id, seq))? else {
            // An index entry without a body: nothing to move.
            source.lock().remove(seq);
            return Ok(Step::Wait);
        };
        let mut message: StoredMessage =
            serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let target_name = match (&task.destination, &message.dlq_source_arn) {
            (Some(d), _) => d.clone(),
            (None, Some(arn)) => arn.rsplit(':').next().unwrap_or_default().to_owned(),
            (None, None) => {
                return Ok(Step::Fail(format!(
                    "Message {} has no source queue to go back to; give a DestinationArn.",
                    message.id
                )));
            }
        };
        let Some(target) = self.queue(&target_name).filter(|t| t.id != source.id) else {
            return Ok(Step::Fail(format!("The destination queue {target_name} does not exist.")));
        };
        let new_seq = self.alloc_seq()?;
        let target_fifo = target.lock().settings.fifo;
        message.dlq_source_arn = None;
        message.sequence_number = target_fifo.then(|| format!("{new_seq:020}"));
        message.sent_at = now;
        let state = MsgState {
            visible_at: now,
            receive_count: 0,
            first_receive: 0,
            sent_at: now,
            group: message.group_id.as_deref().map(Arc::from),
        };
        let mut progressed = task.clone();
        progressed.moved += 1;
        let mut batch = sled::Batch::default();
        batch.remove(&model::body_key(source.id, seq)[..]);
        batch.remove(&model::state_key(source.id, seq)[..]);
        let encoded = serde_json::to_vec(&message).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        batch.insert(&model::body_key(target.id, new_seq)[..], encoded);
        batch.insert(&model::state_key(target.id, new_seq)[..], state.encode());
        batch.insert(task_key(&task.handle), encode(&progressed)?);
        {
            // Under both queues' locks: a receive from the source in between
            // would deliver the message twice, a delete of the target would
            // leave it written under a queue that is gone.
            let (mut st, mut t) = lock_pair(&source, &target);
            match st.msgs.get(&seq) {
                Some(m) if m.visible_at <= now_ms() => {}
                // Received meanwhile: the next tick looks again.
                _ => return Ok(Step::Wait),
            }
            if t.deleted {
                return Ok(Step::Fail(format!("The destination queue {target_name} was deleted.")));
            }
            self.tree.apply_batch(batch)?;
            st.remove(seq);
            t.insert(new_seq, state);
        }
        *task = MoveTask { cursor: seq + 1, ..progressed };
        target.notify.notify_waiters();
        Ok(Step::Moved)
    }
}
