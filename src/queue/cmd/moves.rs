//! StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask: the
//! dead-letter redrive actions over the store's move tasks.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::queue::error::{Code, SqsError};
use crate::queue::params::Input;
use crate::queue::store::{MoveStatus, MoveTask, Queue};

/// `arn:aws:sqs:REGION:ACCOUNT:NAME` → that queue of this endpoint.
fn queue_by_arn(ctx: &Ctx<'_>, arn: &str, param: &str) -> Result<Arc<Queue>, SqsError> {
    let not_found = || {
        SqsError::new(
            Code::ResourceNotFound,
            format!("The resource that you specified for the {param} parameter doesn't exist."),
        )
    };
    match arn.splitn(6, ':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "sqs", region, account, name] if *region == ctx.svc.region && *account == ctx.svc.account => {
            ctx.store().queue(name).ok_or_else(not_found)
        }
        ["arn", _, "sqs", _, _, _] => Err(not_found()),
        _ => Err(SqsError::invalid(format!("Value {arn} for parameter {param} is invalid. Reason: Invalid ARN."))),
    }
}

/// Some other queue's RedrivePolicy names `q` as its dead-letter queue.
fn is_dead_letter_queue(ctx: &Ctx<'_>, q: &Queue) -> bool {
    ctx.store()
        .queues()
        .iter()
        .filter(|other| other.id != q.id)
        .any(|other| other.meta().ok().and_then(|(_, s)| s.redrive).is_some_and(|(dlq, _)| dlq == q.name))
}

pub async fn start(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let source = queue_by_arn(ctx, input.required_str("SourceArn")?, "SourceArn")?;
    let rate = input.int_in("MaxNumberOfMessagesPerSecond", 1..=500)?.map(|r| r as u64);
    let destination = match input.str("DestinationArn")? {
        Some(arn) => Some(queue_by_arn(ctx, arn, "DestinationArn")?),
        None => None,
    };
    if !is_dead_letter_queue(ctx, &source) {
        return Err(SqsError::invalid("Source queue must be configured as a Dead Letter Queue."));
    }
    if destination.as_ref().is_some_and(|d| d.id == source.id) {
        return Err(SqsError::invalid("Source queue and destination queue must be different."));
    }
    let task = ctx.store().start_move(&source, destination.as_deref(), rate)?;
    ctx.store().durable(0).await?;
    Ok(json!({ "TaskHandle": task.handle }))
}

/// One task as ListMessageMoveTasks shows it; the handle only while it runs.
fn entry(ctx: &Ctx<'_>, t: &MoveTask) -> Value {
    let mut out = Map::new();
    if t.status == MoveStatus::Running {
        out.insert("TaskHandle".into(), t.handle.clone().into());
    }
    out.insert("Status".into(), t.status.as_str().into());
    out.insert("SourceArn".into(), ctx.queue_arn(&t.source).into());
    if let Some(d) = &t.destination {
        out.insert("DestinationArn".into(), ctx.queue_arn(d).into());
    }
    if let Some(rate) = t.rate {
        out.insert("MaxNumberOfMessagesPerSecond".into(), rate.into());
    }
    out.insert("ApproximateNumberOfMessagesMoved".into(), t.moved.into());
    out.insert("ApproximateNumberOfMessagesToMove".into(), t.to_move.into());
    if let Some(reason) = &t.failure {
        out.insert("FailureReason".into(), reason.clone().into());
    }
    out.insert("StartedTimestamp".into(), t.started.into());
    Value::Object(out)
}

pub fn list(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let source = queue_by_arn(ctx, input.required_str("SourceArn")?, "SourceArn")?;
    let max = input.int_in("MaxResults", 1..=10)?.unwrap_or(1) as usize;
    let results: Vec<Value> = ctx.store().list_moves(&source).iter().take(max).map(|t| entry(ctx, t)).collect();
    Ok(json!({ "Results": results }))
}

pub async fn cancel(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let task = ctx.store().cancel_move(input.required_str("TaskHandle")?)?;
    ctx.store().durable(0).await?;
    Ok(json!({ "ApproximateNumberOfMessagesMoved": task.moved }))
}
