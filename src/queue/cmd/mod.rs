//! The SQS actions, one file per family (mini-redis's `cmd/`). Each takes
//! the request context and an [`Input`] in the JSON protocol's shape and
//! returns the JSON protocol's output shape; the wire protocols do the rest.

pub mod attributes;
mod batch;
mod delete;
mod moves;
mod permissions;
mod queues;
mod receive;
pub use receive::{Attempts, peek};
mod send;
mod tags;
mod visibility;

use std::sync::Arc;

use serde_json::Value;

use super::Inner;
use super::error::{Code, SqsError};
use super::params::Input;
use super::store::{Queue, Store};

/// Per-request context: the service and where the request was sent.
pub struct Ctx<'a> {
    pub svc: &'a Inner,
    /// `http://HOST` as the client addressed us; queue URLs are built on it.
    pub endpoint: String,
    /// The request path, which may name the queue (`/ACCOUNT/NAME`).
    pub path: String,
}

impl Ctx<'_> {
    pub fn store(&self) -> &Store {
        &self.svc.store
    }

    pub fn queue_url(&self, name: &str) -> String {
        format!("{}/{}/{}", self.endpoint, self.svc.account, name)
    }

    pub fn queue_arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{}", self.svc.region, self.svc.account, name)
    }

    /// The queue named by the `QueueUrl` parameter, else by the path.
    pub fn queue(&self, input: &Input) -> Result<Arc<Queue>, SqsError> {
        let name = match input.str("QueueUrl")? {
            Some(url) => self.name_from_url(url)?,
            None => {
                let segments: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
                match segments.as_slice() {
                    [account, name] if *account == self.svc.account => (*name).to_owned(),
                    [_, _] => return Err(SqsError::no_queue()),
                    _ => return Err(SqsError::missing("QueueUrl")),
                }
            }
        };
        self.store().queue(&name).ok_or_else(SqsError::no_queue)
    }

    /// `http://host/ACCOUNT/NAME` → `NAME`. Any host is accepted: clients
    /// reach the same process as `localhost`, `127.0.0.1` or a container name.
    /// A bare queue name is accepted as AWS accepts it; anything else names
    /// no queue (AWS answers a malformed URL with NonExistentQueue too).
    fn name_from_url(&self, url: &str) -> Result<String, SqsError> {
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
            None => url,
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            [account, name] if *account == self.svc.account => Ok((*name).to_owned()),
            [name] if !url.contains("://") => Ok((*name).to_owned()),
            _ => Err(SqsError::no_queue()),
        }
    }
}

/// Runs `action`.
pub async fn dispatch(ctx: &Ctx<'_>, action: &str, input: Input) -> Result<Value, SqsError> {
    match action {
        "CreateQueue" => queues::create(ctx, &input).await,
        "GetQueueUrl" => queues::get_url(ctx, &input),
        "ListQueues" => queues::list(ctx, &input),
        "DeleteQueue" => queues::delete(ctx, &input).await,
        "PurgeQueue" => queues::purge(ctx, &input).await,
        "ListDeadLetterSourceQueues" => queues::dead_letter_sources(ctx, &input),
        "GetQueueAttributes" => attributes::get(ctx, &input),
        "SetQueueAttributes" => attributes::set(ctx, &input).await,
        "SendMessage" => send::send(ctx, &input).await,
        "SendMessageBatch" => send::send_batch(ctx, &input).await,
        "ReceiveMessage" => receive::receive(ctx, &input).await,
        "DeleteMessage" => delete::delete(ctx, &input).await,
        "DeleteMessageBatch" => delete::delete_batch(ctx, &input).await,
        "ChangeMessageVisibility" => visibility::change(ctx, &input).await,
        "ChangeMessageVisibilityBatch" => visibility::change_batch(ctx, &input).await,
        "TagQueue" => tags::tag(ctx, &input).await,
        "UntagQueue" => tags::untag(ctx, &input).await,
        "ListQueueTags" => tags::list(ctx, &input),
        "AddPermission" => permissions::add(ctx, &input).await,
        "RemovePermission" => permissions::remove(ctx, &input).await,
        "StartMessageMoveTask" => moves::start(ctx, &input).await,
        "ListMessageMoveTasks" => moves::list(ctx, &input),
        "CancelMessageMoveTask" => moves::cancel(ctx, &input).await,
        other => Err(SqsError::new(Code::InvalidAction, format!("The action {other} is not valid for this endpoint."))),
    }
}
