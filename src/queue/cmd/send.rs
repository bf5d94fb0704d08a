//! SendMessage and SendMessageBatch: AWS's checks on bodies and attributes,
//! FIFO's group and deduplication ids, and the MD5s clients verify. A send
//! is answered only once the message is on disk.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Ctx, batch};
use crate::queue::error::{Code, SqsError};
use crate::queue::md5;
use crate::queue::params::Input;
use crate::queue::store::model::{AttrValue, Settings, StoredMessage};

/// AWS's cap on a whole batch, as on a single message.
const MAX_BATCH_BYTES: usize = 1_048_576;
const MAX_ATTRIBUTES: usize = 10;

/// A validated message and its delay.
struct Prepared {
    msg: StoredMessage,
    delay: u64,
    size: usize,
}

/// SQS's allowed characters: #x9 | #xA | #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF.
fn allowed_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check_body(body: &str) -> Result<(), SqsError> {
    if body.is_empty() {
        return Err(SqsError::missing("MessageBody"));
    }
    if let Some(c) = body.chars().find(|&c| !allowed_char(c)) {
        return Err(SqsError::new(
            Code::InvalidMessageContents,
            format!(
                "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters is \
                 #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
                c as u32
            ),
        ));
    }
    Ok(())
}

fn valid_attribute_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (1..=256).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
}

/// Parses `MessageAttributes` (or `MessageSystemAttributes`); returns them
/// with their size as AWS counts it (name + type + value).
fn attributes(map: Option<&Map<String, Value>>, what: &str) -> Result<(BTreeMap<String, AttrValue>, usize), SqsError> {
    let mut out = BTreeMap::new();
    let Some(map) = map else { return Ok((out, 0)) };
    if map.len() > MAX_ATTRIBUTES {
        return Err(SqsError::invalid(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            map.len()
        )));
    }
    let mut size = 0;
    for (name, v) in map {
        if !valid_attribute_name(name) {
            return Err(SqsError::invalid(format!(
                "The message attribute name '{name}' is invalid. Attribute name can contain A-Z, a-z, 0-9, \
                 underscore (_), hyphen (-), and period (.) characters."
            )));
        }
        let v = Input::from_value(v.clone())?;
        let data_type = v.str("DataType")?.unwrap_or("");
        let base = data_type.split('.').next().unwrap_or("");
        if !matches!(base, "String" | "Number" | "Binary") {
            return Err(SqsError::invalid(format!(
                "The message attribute '{name}' has an invalid message attribute type, the set of supported type \
                 prefixes is Binary, Number, and String."
            )));
        }
        if v.get("StringListValues").is_some() || v.get("BinaryListValues").is_some() {
            return Err(SqsError::invalid(format!("Message attribute list values in '{name}' are not supported.")));
        }
        let empty =
            || SqsError::invalid(format!("Message ({what}) attribute '{name}' must contain a non-empty value."));
        let value = if base == "Binary" {
            let b64 = v.str("BinaryValue")?.filter(|s| !s.is_empty()).ok_or_else(empty)?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| SqsError::invalid(format!("Message ({what}) attribute '{name}' is not valid base64.")))?;
            size += raw.len();
            AttrValue { data_type: data_type.to_owned(), string_value: None, binary_value: Some(b64.to_owned()) }
        } else {
            let s = v.str("StringValue")?.filter(|s| !s.is_empty()).ok_or_else(empty)?;
            if base == "Number" && s.trim().parse::<f64>().is_err() {
                return Err(SqsError::invalid(format!(
                    "Can't cast the value of message ({what}) attribute '{name}' to a number."
                )));
            }
            if let Some(c) = s.chars().find(|&c| !allowed_char(c)) {
                return Err(SqsError::new(
                    Code::InvalidMessageContents,
                    format!("Invalid character '#x{:X}' in message ({what}) attribute '{name}'.", c as u32),
                ));
            }
            size += s.len();
            AttrValue { data_type: data_type.to_owned(), string_value: Some(s.to_owned()), binary_value: None }
        };
        size += name.len() + data_type.len();
        out.insert(name.clone(), value);
    }
    Ok((out, size))
}

fn not_for_this_queue_type(param: &str, value: &str) -> SqsError {
    SqsError::invalid(format!(
        "Value {value} for parameter {param} is invalid. Reason: The request include parameter that is not valid \
         for this queue type."
    ))
}

/// FIFO group and deduplication ids: 1–128 printable ASCII characters.
fn valid_fifo_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn prepare(ctx: &Ctx<'_>, settings: &Settings, e: &Input) -> Result<Prepared, SqsError> {
    let body = e.str("MessageBody")?.ok_or_else(|| SqsError::missing("MessageBody"))?;
    check_body(body)?;
    let delay = e.int("DelaySeconds")?;
    if let Some(d) = delay.filter(|d| !(0..=900).contains(d)) {
        return Err(SqsError::invalid(format!(
            "Value {d} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
        )));
    }
    // FIFO queues have no per-message delay; an explicit 0 asks for none.
    if let Some(d) = delay.filter(|&d| settings.fifo && d > 0) {
        return Err(not_for_this_queue_type("DelaySeconds", &d.to_string()));
    }
    let (attrs, attr_size) = attributes(e.object("MessageAttributes")?, "user")?;
    let (system, _) = attributes(e.object("MessageSystemAttributes")?, "system")?;
    if let Some(bad) = system.keys().find(|k| *k != "AWSTraceHeader") {
        return Err(SqsError::invalid(format!("Message system attribute name '{bad}' is invalid.")));
    }
    let size = body.len() + attr_size;
    if size > settings.max_size {
        return Err(SqsError::invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            settings.max_size
        )));
    }
    let group_id = e.str("MessageGroupId")?.map(str::to_owned);
    let mut dedup_id = e.str("MessageDeduplicationId")?.map(str::to_owned);
    for (param, id) in [("MessageGroupId", &group_id), ("MessageDeduplicationId", &dedup_id)] {
        if id.as_deref().is_some_and(|i| !valid_fifo_id(i)) {
            return Err(SqsError::invalid(format!("Value for parameter {param} is invalid.")));
        }
    }
    if settings.fifo {
        if group_id.is_none() {
            return Err(SqsError::missing("MessageGroupId"));
        }
        if dedup_id.is_none() {
            if !settings.content_dedup {
                return Err(SqsError::invalid(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId \
                     provided explicitly",
                ));
            }
            dedup_id = Some(hex::encode(Sha256::digest(body.as_bytes())));
        }
    } else if let Some(id) = &dedup_id {
        return Err(not_for_this_queue_type("MessageDeduplicationId", id));
    }
    let msg = StoredMessage {
        id: uuid::Uuid::new_v4().to_string(),
        body: body.to_owned(),
        md5_body: md5::of_body(body),
        md5_attributes: md5::of_attributes(&attrs),
        md5_system: md5::of_attributes(&system),
        attributes: attrs,
        system_attributes: system,
        sent_at: 0,
        sender_id: ctx.svc.account.clone(),
        group_id,
        dedup_id,
        sequence_number: None,
        dlq_source_arn: None,
    };
    // A FIFO message always takes the queue's delay: an explicit 0 must not
    // overtake earlier messages of its group still in that delay.
    let delay = match delay {
        Some(d) if !settings.fifo => d as u64,
        _ => settings.delay_secs,
    };
    Ok(Prepared { msg, delay, size })
}

/// The fields both SendMessage and its batch entries answer with.
fn answer(out: &mut Map<String, Value>, msg_md5s: (&str, Option<&str>, Option<&str>), id: &str, seq: Option<&str>) {
    out.insert("MD5OfMessageBody".into(), msg_md5s.0.into());
    if let Some(m) = msg_md5s.1 {
        out.insert("MD5OfMessageAttributes".into(), m.into());
    }
    if let Some(m) = msg_md5s.2 {
        out.insert("MD5OfMessageSystemAttributes".into(), m.into());
    }
    out.insert("MessageId".into(), id.into());
    if let Some(s) = seq {
        out.insert("SequenceNumber".into(), s.into());
    }
}

pub async fn send(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let (_, settings) = q.meta()?;
    let p = prepare(ctx, &settings, input)?;
    let md5s = (p.msg.md5_body.clone(), p.msg.md5_attributes.clone(), p.msg.md5_system.clone());
    let outcome = ctx.store().send(&q, p.msg, p.delay)?;
    ctx.store().durable(1).await?;
    let mut out = Map::new();
    answer(
        &mut out,
        (&md5s.0, md5s.1.as_deref(), md5s.2.as_deref()),
        &outcome.message_id,
        outcome.sequence_number.as_deref(),
    );
    Ok(Value::Object(out))
}

pub async fn send_batch(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let entries = batch::entries(input, "SendMessageBatchRequestEntry")?;
    let (_, settings) = q.meta()?;
    let prepared: Vec<(String, Result<Prepared, SqsError>)> = entries
        .iter()
        .map(|e| (e.str("Id").ok().flatten().unwrap_or("").to_owned(), prepare(ctx, &settings, e)))
        .collect();
    // The cap is on the request: an entry refused on its own still counts.
    let total: usize = prepared
        .iter()
        .zip(&entries)
        .map(|((_, p), e)| match p {
            Ok(p) => p.size,
            Err(_) => e.str("MessageBody").ok().flatten().map_or(0, str::len),
        })
        .sum();
    if total > MAX_BATCH_BYTES {
        return Err(SqsError::new(
            Code::BatchRequestTooLong,
            format!("Batch requests cannot be longer than {MAX_BATCH_BYTES} bytes. You have sent {total} bytes."),
        ));
    }
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (id, p) in prepared {
        match p.and_then(|p| {
            let md5s = (p.msg.md5_body.clone(), p.msg.md5_attributes.clone(), p.msg.md5_system.clone());
            Ok((md5s, ctx.store().send(&q, p.msg, p.delay)?))
        }) {
            Ok((md5s, outcome)) => {
                let mut out = Map::new();
                out.insert("Id".into(), id.into());
                let seq = outcome.sequence_number.as_deref();
                answer(&mut out, (&md5s.0, md5s.1.as_deref(), md5s.2.as_deref()), &outcome.message_id, seq);
                ok.push(Value::Object(out));
            }
            Err(e) => failed.push(batch::failed(&id, &e)),
        }
    }
    if !ok.is_empty() {
        ctx.store().durable(ok.len() as u64).await?;
    }
    Ok(batch::result(ok, failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_characters() {
        assert!(check_body("hello\tworld\n").is_ok());
        assert!(check_body("\u{1}").is_err());
        assert!(check_body("").is_err());
        assert!(check_body("emoji 🦀").is_ok());
    }

    #[test]
    fn attribute_names() {
        assert!(valid_attribute_name("trace-id.v1"));
        assert!(!valid_attribute_name("AWS.reserved"));
        assert!(!valid_attribute_name("a..b"));
        assert!(!valid_attribute_name(".a"));
    }

    #[test]
    fn attribute_limits() {
        let mut m = Map::new();
        for i in 0..11 {
            m.insert(format!("a{i}"), json!({"DataType": "String", "StringValue": "v"}));
        }
        assert!(attributes(Some(&m), "user").is_err());
        let mut m = Map::new();
        m.insert("n".into(), json!({"DataType": "Number", "StringValue": "x"}));
        assert!(attributes(Some(&m), "user").is_err());
    }
}
