//! ReceiveMessage, with long polling: a receive that finds nothing waits
//! (up to WaitTimeSeconds, else the queue's ReceiveMessageWaitTimeSeconds)
//! on the queue's `Notify`, which every send wakes, or until the next
//! delayed or in-flight message becomes visible, whichever comes first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::queue::error::SqsError;
use crate::queue::md5;
use crate::queue::params::Input;
use crate::queue::store::model::AttrValue;
use crate::queue::store::{ReceiveOptions, Received, now_ms};

pub async fn receive(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let max = input.int_in("MaxNumberOfMessages", 1..=10)?.unwrap_or(1) as usize;
    let visibility_ms = input.int_in("VisibilityTimeout", 0..=43_200)?.map(|v| v as u64 * 1000);
    let (_, settings) = q.meta()?;
    let wait = match input.int_in("WaitTimeSeconds", 0..=20)? {
        Some(w) => w as u64,
        None => settings.wait_secs,
    };
    let mut system_names = input.str_list("AttributeNames")?;
    system_names.extend(input.str_list("MessageSystemAttributeNames")?);
    let attribute_names = input.str_list("MessageAttributeNames")?;
    let opts = ReceiveOptions { max, visibility_ms };
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        // Register for wake-ups before looking, so a send in between is not missed.
        let notified = q.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (received, next_wake) = ctx.store().receive(&q, opts)?;
        if !received.is_empty() {
            let messages: Vec<Value> = received.iter().map(|r| render(r, &system_names, &attribute_names)).collect();
            return Ok(json!({ "Messages": messages }));
        }
        let now = Instant::now();
        if now >= deadline || ctx.svc.closing() {
            return Ok(json!({}));
        }
        let mut sleep = deadline - now;
        if let Some(at) = next_wake {
            sleep = sleep.min(Duration::from_millis(at.saturating_sub(now_ms()).max(1)));
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Every message of the queue in ReceiveMessage's shape, every attribute
/// shown, nothing changed (the CI peek endpoint).
pub fn peek(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let all = ["All".to_owned()];
    let messages: Vec<Value> = ctx.store().peek(&q)?.iter().map(|r| render(r, &all, &all)).collect();
    Ok(json!({ "Messages": messages }))
}

fn wants(names: &[String], name: &str) -> bool {
    names
        .iter()
        .any(|n| n == "All" || n == ".*" || n == name || n.strip_suffix(".*").is_some_and(|p| name.starts_with(p)))
}

fn render(r: &Received, system_names: &[String], attribute_names: &[String]) -> Value {
    let m = &r.message;
    let mut out = Map::new();
    out.insert("MessageId".into(), m.id.clone().into());
    out.insert("ReceiptHandle".into(), r.handle.clone().into());
    out.insert("MD5OfBody".into(), m.md5_body.clone().into());
    out.insert("Body".into(), m.body.clone().into());

    let mut system = Map::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(v) = value
            && wants(system_names, name)
        {
            system.insert(name.to_owned(), Value::String(v));
        }
    };
    put("SenderId", Some(m.sender_id.clone()));
    put("SentTimestamp", Some(m.sent_at.to_string()));
    put("ApproximateReceiveCount", Some(r.receive_count.to_string()));
    put("ApproximateFirstReceiveTimestamp", Some(r.first_receive.to_string()));
    put("MessageDeduplicationId", m.dedup_id.clone());
    put("MessageGroupId", m.group_id.clone());
    put("SequenceNumber", m.sequence_number.clone());
    put("DeadLetterQueueSourceArn", m.dlq_source_arn.clone());
    put("AWSTraceHeader", m.system_attributes.get("AWSTraceHeader").and_then(|a| a.string_value.clone()));
    if !system.is_empty() {
        out.insert("Attributes".into(), Value::Object(system));
    }

    let chosen: BTreeMap<String, AttrValue> =
        m.attributes.iter().filter(|(k, _)| wants(attribute_names, k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(digest) = md5::of_attributes(&chosen) {
        out.insert("MD5OfMessageAttributes".into(), digest.into());
        let attrs: Map<String, Value> =
            chosen.into_iter().map(|(k, v)| (k, serde_json::to_value(v).unwrap_or(Value::Null))).collect();
        out.insert("MessageAttributes".into(), Value::Object(attrs));
    }
    Value::Object(out)
}
