//! ChangeMessageVisibility and its batch form; answered once on disk.

use serde_json::{Value, json};

use super::{Ctx, batch};
use crate::queue::error::SqsError;
use crate::queue::params::Input;

fn timeout(e: &Input) -> Result<u64, SqsError> {
    let v = e.int_in("VisibilityTimeout", 0..=43_200)?.ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
    Ok(v as u64)
}

pub async fn change(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let handle = input.required_str("ReceiptHandle")?;
    let secs = timeout(input)?;
    ctx.store().change_visibility(&q, handle, secs)?;
    ctx.store().durable(1).await?;
    Ok(json!({}))
}

pub async fn change_batch(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let entries = batch::entries(input, "ChangeMessageVisibilityBatchRequestEntry")?;
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for e in &entries {
        let id = e.required_str("Id")?;
        let result = e
            .required_str("ReceiptHandle")
            .and_then(|h| Ok((h, timeout(e)?)))
            .and_then(|(h, secs)| Ok(ctx.store().change_visibility(&q, h, secs)?));
        match result {
            Ok(()) => ok.push(json!({ "Id": id })),
            Err(err) => failed.push(batch::failed(id, &err)),
        }
    }
    if !ok.is_empty() {
        ctx.store().durable(ok.len() as u64).await?;
    }
    Ok(batch::result(ok, failed))
}
