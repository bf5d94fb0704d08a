//! TagQueue, UntagQueue, ListQueueTags.

use serde_json::{Value, json};

use super::Ctx;
use crate::queue::error::SqsError;
use crate::queue::params::Input;

/// AWS's cap on tags per queue.
const MAX_TAGS: usize = 50;

pub async fn tag(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let tags = input.str_map("Tags")?;
    if tags.is_empty() {
        return Err(SqsError::missing("Tags"));
    }
    if tags.keys().any(|k| k.is_empty() || k.len() > 128) || tags.values().any(|v| v.len() > 256) {
        return Err(SqsError::invalid("Tag keys must be 1 to 128 characters and values at most 256."));
    }
    let (meta, _) = q.meta()?;
    let total = meta.tags.keys().chain(tags.keys()).collect::<std::collections::BTreeSet<_>>().len();
    if total > MAX_TAGS {
        return Err(SqsError::invalid(format!("Too many tags added for queue {}.", q.name)));
    }
    ctx.store()
        .update_meta(&q, |meta| {
            meta.tags.extend(tags);
            Ok::<_, SqsError>(())
        })
        .await?;
    Ok(json!({}))
}

pub async fn untag(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let keys = input.str_list("TagKeys")?;
    if keys.is_empty() || keys.iter().any(|k| k.is_empty() || k.len() > 128) {
        return Err(SqsError::invalid("Tag keys must be between 1 and 128 characters in length."));
    }
    ctx.store()
        .update_meta(&q, |meta| {
            for k in &keys {
                meta.tags.remove(k);
            }
            Ok::<_, SqsError>(())
        })
        .await?;
    Ok(json!({}))
}

pub fn list(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let (meta, _) = q.meta()?;
    if meta.tags.is_empty() { Ok(json!({})) } else { Ok(json!({ "Tags": meta.tags })) }
}
