//! Queue attributes: AWS's names, ranges and defaults, and the
//! GetQueueAttributes / SetQueueAttributes actions.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::queue::error::{Code, SqsError};
use crate::queue::params::Input;
use crate::queue::store::model::parse_redrive;

/// Attributes only GetQueueAttributes computes.
const COMPUTED: [&str; 6] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

/// Settable on every queue.
const SETTABLE: [&str; 11] = [
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
];

/// Settable on FIFO queues only.
const FIFO_ONLY: [&str; 4] = ["FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"];

/// A new queue's attributes before the caller's are applied.
pub fn defaults(fifo: bool) -> BTreeMap<String, String> {
    let mut d: BTreeMap<String, String> = [
        ("DelaySeconds", "0"),
        ("MaximumMessageSize", "1048576"),
        ("MessageRetentionPeriod", "345600"),
        ("ReceiveMessageWaitTimeSeconds", "0"),
        ("VisibilityTimeout", "30"),
        ("SqsManagedSseEnabled", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if fifo {
        for (k, v) in [
            ("FifoQueue", "true"),
            ("ContentBasedDeduplication", "false"),
            ("DeduplicationScope", "queue"),
            ("FifoThroughputLimit", "perQueue"),
        ] {
            d.insert(k.to_owned(), v.to_owned());
        }
    }
    d
}

fn bad_value(name: &str, reason: &str) -> SqsError {
    SqsError::new(Code::InvalidAttributeValue, format!("Invalid value for the parameter {name}. Reason: {reason}"))
}

/// `Attributes` as given, names trimmed (`"VisibilityTimeout "` is
/// `VisibilityTimeout`, as moto's suite sends it).
pub fn given(input: &Input) -> Result<BTreeMap<String, String>, SqsError> {
    Ok(input.str_map("Attributes")?.into_iter().map(|(k, v)| (k.trim().to_owned(), v)).collect())
}

/// Checks one settable attribute and returns its canonical spelling
/// (`None`: the empty value that clears it).
pub fn normalize(ctx: &Ctx<'_>, name: &str, value: &str, fifo: bool) -> Result<Option<String>, SqsError> {
    // A standard queue may say what it is not.
    if name == "FifoQueue" && !fifo && value.eq_ignore_ascii_case("false") {
        return Ok(None);
    }
    if !(SETTABLE.contains(&name) || (fifo && FIFO_ONLY.contains(&name))) {
        return Err(SqsError::new(Code::InvalidAttributeName, format!("Unknown Attribute {name}.")));
    }
    let range = |lo: u64, hi: u64| -> Result<Option<String>, SqsError> {
        match value.trim().parse::<u64>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(Some(v.to_string())),
            _ => Err(bad_value(name, &format!("Must be an integer from {lo} to {hi}."))),
        }
    };
    let boolean = || match value.to_ascii_lowercase().as_str() {
        b @ ("true" | "false") => Ok(Some(b.to_owned())),
        _ => Err(bad_value(name, "Must be true or false.")),
    };
    let one_of = |allowed: &[&str]| {
        if allowed.contains(&value) { Ok(Some(value.to_owned())) } else { Err(bad_value(name, "Unsupported value.")) }
    };
    match name {
        "DelaySeconds" => range(0, 900),
        "MaximumMessageSize" => range(1024, 1_048_576),
        "MessageRetentionPeriod" => range(60, 1_209_600),
        "ReceiveMessageWaitTimeSeconds" => range(0, 20),
        "VisibilityTimeout" => range(0, 43_200),
        "KmsDataKeyReusePeriodSeconds" => range(60, 86_400),
        "SqsManagedSseEnabled" | "ContentBasedDeduplication" | "FifoQueue" => boolean(),
        "DeduplicationScope" => one_of(&["messageGroup", "queue"]),
        "FifoThroughputLimit" => one_of(&["perQueue", "perMessageGroupId"]),
        "RedrivePolicy" => redrive(ctx, value, fifo),
        "Policy" | "RedriveAllowPolicy" if !value.is_empty() => match serde_json::from_str::<Value>(value) {
            Ok(Value::Object(_)) => Ok(Some(value.to_owned())),
            _ => Err(bad_value(name, "Must be a JSON object.")),
        },
        _ if value.is_empty() => Ok(None),
        _ => Ok(Some(value.to_owned())),
    }
}

/// Rules across attributes: FIFO's per-group throughput needs per-group
/// deduplication (AWS's high-throughput mode is the two together).
pub fn check_together(attributes: &BTreeMap<String, String>) -> Result<(), SqsError> {
    let per_group_limit = attributes.get("FifoThroughputLimit").is_some_and(|v| v == "perMessageGroupId");
    let per_group_dedup = attributes.get("DeduplicationScope").is_some_and(|v| v == "messageGroup");
    if per_group_limit && !per_group_dedup {
        return Err(bad_value(
            "FifoThroughputLimit",
            "The perMessageGroupId value is allowed only when the value for DeduplicationScope is messageGroup.",
        ));
    }
    Ok(())
}

fn redrive(ctx: &Ctx<'_>, value: &str, fifo: bool) -> Result<Option<String>, SqsError> {
    if value.is_empty() {
        return Ok(None);
    }
    let invalid = |reason: &str| {
        SqsError::invalid(format!("Value {value} for parameter RedrivePolicy is invalid. Reason: {reason}"))
    };
    let (dlq, max) = parse_redrive(value).ok_or_else(|| {
        invalid("Redrive policy is not a valid JSON map with deadLetterTargetArn and maxReceiveCount.")
    })?;
    if !(1..=1000).contains(&max) {
        return Err(invalid("Invalid value for maxReceiveCount: must be between 1 and 1000."));
    }
    let target = ctx.store().queue(&dlq).ok_or_else(|| invalid("Dead-letter target does not exist."))?;
    let (_, settings) = target.meta().map_err(|_| invalid("Dead-letter target does not exist."))?;
    if settings.fifo != fifo {
        return Err(invalid(
            "Dead-letter queue of a FIFO queue must be a FIFO queue, and of a standard queue a standard queue.",
        ));
    }
    Ok(Some(json!({"deadLetterTargetArn": ctx.queue_arn(&dlq), "maxReceiveCount": max}).to_string()))
}

/// GetQueueAttributes.
pub fn get(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let names = input.str_list("AttributeNames")?;
    let (meta, settings) = q.meta()?;
    let all = names.iter().any(|n| n == "All");
    for n in &names {
        let known = n == "All" || COMPUTED.contains(&n.as_str()) || SETTABLE.contains(&n.as_str());
        let fifo_known = settings.fifo && FIFO_ONLY.contains(&n.as_str());
        if !known && !fifo_known {
            return Err(SqsError::new(Code::InvalidAttributeName, format!("Unknown Attribute {n}.")));
        }
    }
    let wanted = |n: &str| all || names.iter().any(|x| x == n);
    let mut out = Map::new();
    let (visible, inflight, delayed) = ctx.store().counts(&q)?;
    let computed = [
        ("ApproximateNumberOfMessages", visible.to_string()),
        ("ApproximateNumberOfMessagesNotVisible", inflight.to_string()),
        ("ApproximateNumberOfMessagesDelayed", delayed.to_string()),
        ("CreatedTimestamp", meta.created.to_string()),
        ("LastModifiedTimestamp", meta.modified.to_string()),
        ("QueueArn", ctx.queue_arn(&q.name)),
    ];
    for (k, v) in computed {
        if wanted(k) {
            out.insert(k.to_owned(), Value::String(v));
        }
    }
    for (k, v) in &meta.attributes {
        if wanted(k) {
            out.insert(k.clone(), Value::String(v.clone()));
        }
    }
    if out.is_empty() { Ok(json!({})) } else { Ok(json!({ "Attributes": out })) }
}

/// SetQueueAttributes.
pub async fn set(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let (meta, settings) = q.meta()?;
    let given = given(input)?;
    let mut changes = Vec::new();
    for (name, value) in &given {
        if name == "FifoQueue" && meta.attributes.get("FifoQueue").map(String::as_str) != Some(value.as_str()) {
            return Err(bad_value(name, "Modifying queue type is not supported."));
        }
        changes.push((name.clone(), normalize(ctx, name, value, settings.fifo)?));
    }
    ctx.store()
        .update_meta(&q, |meta| {
            for (name, value) in changes {
                match value {
                    Some(v) => meta.attributes.insert(name, v),
                    None => meta.attributes.remove(&name),
                };
            }
            // Under the queue's lock, so two concurrent sets cannot each
            // pass alone and together store a forbidden pair.
            check_together(&meta.attributes)
        })
        .await?;
    Ok(json!({}))
}
