//! The worker role: long-polls the crunch queue, crunches each upload, and
//! drains the dead-letter queue into failure records.
//!
//! At-least-once delivery is the contract: a job is idempotent (the same id
//! always produces the same keys), so a redelivered message is simply
//! crunched again.

mod dlq;
mod job;
mod orphans;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::clients::Clients;
use crate::config::Config;
use crate::crunch::Limits;
use crate::shutdown::Shutdown;

/// The longest long-poll SQS allows.
const WAIT_SECONDS: i32 = 20;
/// Pause after a failed receive, so an unreachable queue is not hammered.
const RECEIVE_BACKOFF: Duration = Duration::from_secs(2);
/// How long each attempt of the worker's S3 and SQS calls may wait for an
/// answer (see [`Clients::with_attempt_timeout`]): above the long poll, and
/// enough to send a variant over a slow link. Without it one silently dead
/// connection could stall a job for good, its message kept invisible by the
/// job's own visibility renewals, or the receive loop itself. (The
/// original's body, read after GetObject has answered, is under the SDK's
/// stalled-stream protection instead.)
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
const _: () = assert!(ATTEMPT_TIMEOUT.as_secs() > WAIT_SECONDS as u64);
/// Jobs in flight per CPU turn: while one crunches, the next original is
/// already downloading and the last one's variants are uploading.
const JOBS_PER_CPU: usize = 3;

/// What jobs need besides the clients.
#[derive(Debug)]
pub struct Settings {
    pub private_bucket: String,
    pub public_bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub visibility_timeout: i32,
    pub max_receive_count: u32,
    pub limits: Limits,
    pub concurrency: usize,
    /// Turns at the CPU: `concurrency` crunches decode and encode at once.
    /// A job holds one only around its crunch, so downloads, uploads and
    /// deletes of other jobs overlap it and no core waits on I/O.
    pub cpu: Arc<Semaphore>,
    /// `queue.orphan_after_secs`; `None`: derived from the crunch queue.
    pub orphan_after: Option<Duration>,
}

impl Settings {
    pub fn new(config: &Config, queue_url: String, dlq_url: String) -> Self {
        Self {
            private_bucket: config.buckets.private.clone(),
            public_bucket: config.buckets.public.clone(),
            queue_url,
            dlq_url,
            visibility_timeout: i32::try_from(config.queue.visibility_timeout.max(1)).unwrap_or(i32::MAX),
            max_receive_count: config.queue.max_receive_count,
            limits: Limits { max_pixels: config.crunch.max_pixels },
            concurrency: config.crunch_concurrency(),
            cpu: Arc::new(Semaphore::new(config.crunch_concurrency())),
            orphan_after: (config.queue.orphan_after_secs > 0)
                .then(|| Duration::from_secs(config.queue.orphan_after_secs)),
        }
    }
}

/// Runs until `shutdown`, then lets running crunches finish.
pub async fn run(clients: Clients, settings: Settings, mut shutdown: Shutdown) {
    let clients = clients.with_own_retries("worker").with_attempt_timeout(ATTEMPT_TIMEOUT);
    let settings = Arc::new(settings);
    // In-flight jobs; the CPU turns inside them are `settings.cpu`.
    let slots = Arc::new(Semaphore::new(settings.concurrency * JOBS_PER_CPU));
    let mut jobs = JoinSet::new();
    let dlq = tokio::spawn(dlq::drain(clients.clone(), Arc::clone(&settings), shutdown.clone()));
    let sweep = tokio::spawn(orphans::run(clients.clone(), Arc::clone(&settings), shutdown.clone()));
    tracing::info!(concurrency = settings.concurrency, "worker started");

    loop {
        // Reap finished jobs so the set does not grow without bound.
        while jobs.try_join_next().is_some() {}
        // Ask only for as many messages as there are free slots, so none
        // sits invisible while waiting for a slot.
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            () = shutdown.wait() => break,
        };
        let mut permits = vec![first];
        while permits.len() < 10 {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let receive = clients
            .sqs
            .receive_message()
            .queue_url(&settings.queue_url)
            .max_number_of_messages(permits.len() as i32)
            .wait_time_seconds(WAIT_SECONDS)
            .visibility_timeout(settings.visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        let out = tokio::select! {
            out = receive => out,
            () = shutdown.wait() => break,
        };
        let messages = match out {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(e), "receive failed");
                tokio::select! {
                    () = tokio::time::sleep(RECEIVE_BACKOFF) => continue,
                    () = shutdown.wait() => break,
                }
            }
        };
        for message in messages {
            let Some(permit) = permits.pop() else { break };
            let clients = clients.clone();
            let settings = Arc::clone(&settings);
            jobs.spawn(async move {
                job::handle(&clients, &settings, message).await;
                drop(permit);
            });
        }
    }
    tracing::info!(running = jobs.len(), "worker stopping; finishing running crunches");
    while jobs.join_next().await.is_some() {}
    let _ = tokio::join!(dlq, sweep);
}
