//! Queue lifecycle: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue,
//! PurgeQueue, ListDeadLetterSourceQueues.

use base64::Engine;
use serde_json::{Value, json};

use super::{Ctx, attributes};
use crate::queue::error::{Code, SqsError};
use crate::queue::params::Input;
use crate::queue::store::{Created, now_ms};

/// AWS allows one purge per queue per minute.
const PURGE_INTERVAL_MS: u64 = 60_000;

/// 1–80 characters of alphanumerics, `-` and `_`; FIFO names end in `.fifo`.
fn valid_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    (1..=80).contains(&name.len())
        && !base.is_empty()
        && base.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// CreateQueue: idempotent when the given attributes match the queue's.
pub async fn create(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let name = input.required_str("QueueName")?;
    let given = attributes::given(input)?;
    let mut tags = input.str_map("tags")?;
    tags.extend(input.str_map("Tags")?);
    let fifo_attr = given.get("FifoQueue").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let fifo_name = name.ends_with(".fifo");
    if !valid_name(name) || fifo_attr != fifo_name {
        let msg = if fifo_attr || fifo_name {
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end \
             with .fifo suffix and be 1 to 80 in length."
        } else {
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        };
        return Err(SqsError::invalid(msg));
    }
    let mut normalized = Vec::new();
    for (k, v) in &given {
        normalized.push((k.clone(), attributes::normalize(ctx, k, v, fifo_name)?));
    }
    let mut attrs = attributes::defaults(fifo_name);
    for (k, v) in &normalized {
        match v {
            Some(v) => attrs.insert(k.clone(), v.clone()),
            None => attrs.remove(k),
        };
    }
    attributes::check_together(&attrs)?;
    if let Created::Existing(q) = ctx.store().create_queue(name, attrs, tags).await? {
        let (meta, _) = q.meta()?;
        for (k, v) in normalized {
            if meta.attributes.get(&k) != v.as_ref() {
                return Err(SqsError::new(
                    Code::QueueNameExists,
                    format!("A queue already exists with the same name and a different value for attribute {k}"),
                ));
            }
        }
    }
    Ok(json!({ "QueueUrl": ctx.queue_url(name) }))
}

pub fn get_url(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let name = input.required_str("QueueName")?;
    if input.str("QueueOwnerAWSAccountId")?.is_some_and(|a| a != ctx.svc.account) {
        return Err(SqsError::no_queue());
    }
    ctx.store().queue(name).ok_or_else(SqsError::no_queue)?;
    Ok(json!({ "QueueUrl": ctx.queue_url(name) }))
}

/// Pages through `names` (sorted): `NextToken` is the last name returned.
fn page(names: Vec<String>, input: &Input) -> Result<(Vec<String>, Option<String>), SqsError> {
    let max = input.int_in("MaxResults", 1..=1000)?;
    let after = match input.str("NextToken")? {
        Some(t) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SqsError::invalid("Invalid NextToken value."))?;
            Some(raw)
        }
        None => None,
    };
    let mut rest: Vec<String> = names.into_iter().filter(|n| after.as_ref().is_none_or(|a| n > a)).collect();
    let limit = max.map(|m| m as usize).unwrap_or(1000);
    let more = rest.len() > limit;
    rest.truncate(limit);
    let token = (more && max.is_some())
        .then(|| rest.last().map(|l| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(l)))
        .flatten();
    Ok((rest, token))
}

fn urls_answer(ctx: &Ctx<'_>, key: &str, names: Vec<String>, token: Option<String>) -> Value {
    let mut out = serde_json::Map::new();
    if !names.is_empty() {
        out.insert(key.to_owned(), names.iter().map(|n| Value::String(ctx.queue_url(n))).collect());
    }
    if let Some(t) = token {
        out.insert("NextToken".to_owned(), Value::String(t));
    }
    Value::Object(out)
}

pub fn list(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let prefix = input.str("QueueNamePrefix")?.unwrap_or("");
    let names: Vec<String> =
        ctx.store().queues().into_iter().map(|q| q.name.clone()).filter(|n| n.starts_with(prefix)).collect();
    let (names, token) = page(names, input)?;
    Ok(urls_answer(ctx, "QueueUrls", names, token))
}

pub async fn delete(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    ctx.store().delete_queue(&q)?;
    ctx.store().durable(0).await?;
    Ok(json!({}))
}

pub async fn purge(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let last = q.lock().last_purge;
    if last.is_some_and(|t| now_ms() < t + PURGE_INTERVAL_MS) {
        return Err(SqsError::new(
            Code::PurgeQueueInProgress,
            format!("Only one PurgeQueue operation on {} is allowed every 60 seconds.", q.name),
        ));
    }
    ctx.store().purge(&q)?;
    ctx.store().durable(0).await?;
    Ok(json!({}))
}

/// The queues whose RedrivePolicy names this one.
pub fn dead_letter_sources(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let dlq = ctx.queue(input)?;
    let names: Vec<String> = ctx
        .store()
        .queues()
        .into_iter()
        .filter_map(|q| {
            let (_, s) = q.meta().ok()?;
            (s.redrive?.0 == dlq.name).then(|| q.name.clone())
        })
        .collect();
    let (names, token) = page(names, input)?;
    Ok(urls_answer(ctx, "queueUrls", names, token))
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn queue_names() {
        assert!(valid_name("a-b_C9"));
        assert!(valid_name("jobs.fifo"));
        assert!(!valid_name(""));
        assert!(!valid_name(".fifo"));
        assert!(!valid_name("has space"));
        assert!(!valid_name(&"x".repeat(81)));
    }
}
