//! DeleteMessage and DeleteMessageBatch; answered once the delete is on disk.

use serde_json::{Value, json};

use super::{Ctx, batch};
use crate::queue::error::SqsError;
use crate::queue::params::Input;

pub async fn delete(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let handle = input.required_str("ReceiptHandle")?;
    ctx.store().delete(&q, handle)?;
    ctx.store().durable(1).await?;
    Ok(json!({}))
}

pub async fn delete_batch(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let entries = batch::entries(input, "DeleteMessageBatchRequestEntry")?;
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for e in &entries {
        let id = e.required_str("Id")?;
        let result = e.required_str("ReceiptHandle").and_then(|h| Ok(ctx.store().delete(&q, h)?));
        match result {
            Ok(_) => ok.push(json!({ "Id": id })),
            Err(err) => failed.push(batch::failed(id, &err)),
        }
    }
    if !ok.is_empty() {
        ctx.store().durable(ok.len() as u64).await?;
    }
    Ok(batch::result(ok, failed))
}
