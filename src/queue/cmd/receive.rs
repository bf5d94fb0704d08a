//! ReceiveMessage, with long polling: a receive that finds nothing waits
//! (up to WaitTimeSeconds, else the queue's ReceiveMessageWaitTimeSeconds)
//! on the queue's `Notify`, which every send wakes, or until the next
//! delayed or in-flight message becomes visible, whichever comes first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
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
    let attempt = match input.str("ReceiveRequestAttemptId")? {
        Some(id) if settings.fifo => Some(attempt_id(id)?),
        _ => None,
    };
    if let Some(id) = &attempt {
        let visibility_secs = visibility_ms.unwrap_or(settings.visibility_ms) / 1000;
        let renew = |handle: &str| ctx.store().change_visibility(&q, handle, visibility_secs).is_ok();
        if let Some(messages) = ctx.svc.attempts.replay(q.id, id, renew) {
            ctx.store().durable(messages.len() as u64).await?;
            return Ok(json!({ "Messages": messages }));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        // Register for wake-ups before looking, so a send in between is not missed.
        let notified = q.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (received, next_wake) = ctx.store().receive(&q, opts)?;
        if !received.is_empty() {
            let messages: Vec<Value> = received.iter().map(|r| render(r, &system_names, &attribute_names)).collect();
            if let Some(id) = attempt {
                let handles = received.iter().map(|r| r.handle.clone()).collect();
                ctx.svc.attempts.record(q.id, id, handles, messages.clone());
            }
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

/// How long a FIFO receive may be retried by its attempt id (AWS: 5 minutes).
const ATTEMPT_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// Receives remembered at once, and the bytes of their messages; past
/// either the oldest are forgotten first, so a flood of attempt ids (each
/// receive may return ten 1 MiB messages) costs bounded memory.
const MAX_ATTEMPTS: usize = 10_000;
const MAX_ATTEMPT_BYTES: usize = 64 * 1024 * 1024;

/// FIFO receives by `ReceiveRequestAttemptId`: a retry of a receive whose
/// answer was lost (a timeout, a dropped connection) gets the same messages
/// and receipt handles, their visibility renewed, as AWS gives for five
/// minutes, instead of nothing (the group is locked by the lost receive)
/// until the visibility timeout has run out. Kept in memory: after a
/// restart a retry is an ordinary receive.
#[derive(Default)]
pub struct Attempts(Mutex<Remembered>);

#[derive(Default)]
struct Remembered {
    attempts: HashMap<(u64, String), Attempt>,
    /// The sum of the attempts' `bytes`.
    bytes: usize,
}

struct Attempt {
    at: Instant,
    handles: Vec<String>,
    messages: Vec<Value>,
    bytes: usize,
}

impl Remembered {
    fn remove(&mut self, key: &(u64, String)) {
        if let Some(gone) = self.attempts.remove(key) {
            self.bytes -= gone.bytes;
        }
    }

    fn oldest(&self) -> Option<(u64, String)> {
        self.attempts.iter().min_by_key(|(_, a)| a.at).map(|(k, _)| k.clone())
    }
}

/// Roughly what a rendered message holds in memory: its strings' bytes.
fn weight(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(weight).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + weight(v)).sum(),
        _ => 8,
    }
}

impl Attempts {
    /// The messages an earlier receive with `id` returned, if it is recent
    /// and `renew` (the visibility renewal) holds for every receipt handle:
    /// none was deleted or received again since.
    fn replay(&self, queue: u64, id: &str, renew: impl Fn(&str) -> bool) -> Option<Vec<Value>> {
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (queue, id.to_owned());
        let attempt = kept.attempts.get(&key).filter(|a| a.at.elapsed() < ATTEMPT_LIFETIME)?;
        if attempt.handles.iter().all(|h| renew(h)) {
            return Some(attempt.messages.clone());
        }
        kept.remove(&key);
        None
    }

    fn record(&self, queue: u64, id: String, handles: Vec<String>, messages: Vec<Value>) {
        let bytes = messages.iter().map(weight).sum::<usize>() + handles.iter().map(String::len).sum::<usize>();
        if bytes > MAX_ATTEMPT_BYTES {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired: Vec<_> =
            kept.attempts.iter().filter(|(_, a)| a.at.elapsed() >= ATTEMPT_LIFETIME).map(|(k, _)| k.clone()).collect();
        for key in &expired {
            kept.remove(key);
        }
        let key = (queue, id);
        kept.remove(&key);
        while kept.attempts.len() >= MAX_ATTEMPTS || kept.bytes + bytes > MAX_ATTEMPT_BYTES {
            let Some(oldest) = kept.oldest() else { break };
            kept.remove(&oldest);
        }
        kept.bytes += bytes;
        kept.attempts.insert(key, Attempt { at: Instant::now(), handles, messages, bytes });
    }
}

/// AWS's rule for an attempt id: 1 to 128 of letters, digits and
/// ``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``.
fn attempt_id(id: &str) -> Result<String, SqsError> {
    if (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(id.to_owned())
    } else {
        Err(SqsError::invalid(format!("Value {id:.140} for parameter ReceiveRequestAttemptId is invalid.")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_receives_hold_bounded_bytes() {
        let attempts = Attempts::default();
        let big = json!({ "Body": "x".repeat(1024 * 1024) });
        for i in 0..200 {
            attempts.record(1, format!("a{i}"), vec![format!("h{i}")], vec![big.clone(); 2]);
        }
        let kept = attempts.0.lock().unwrap();
        assert!(kept.bytes <= MAX_ATTEMPT_BYTES, "{} bytes kept", kept.bytes);
        assert_eq!(kept.bytes, kept.attempts.values().map(|a| a.bytes).sum::<usize>());
        assert!(kept.attempts.len() >= 30, "the newest are kept: {}", kept.attempts.len());
        drop(kept);
        assert!(attempts.replay(1, "a199", |_| true).is_some(), "the newest replays");
        assert!(attempts.replay(1, "a0", |_| true).is_none(), "the oldest were forgotten");
    }
}
