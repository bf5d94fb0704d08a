//! S3 event notifications: what a bucket's configuration asks for, which
//! writes match it, and the pending events those writes leave behind.
//!
//! A matching write puts its events into the store's outbox in the same
//! sled commit as the write itself (see `Store::put_object`), so an
//! acknowledged write never loses its event, not even to a power cut;
//! [`deliver`] then moves them to their queues, at least once. The record
//! JSON is rendered at delivery ([`record`]), from the outbox entry and
//! its key, which doubles as the `sequencer`.

pub mod deliver;
pub mod record;

use serde::{Deserialize, Serialize};

/// A bucket's queue configurations, kept in its record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notifications {
    pub queues: Vec<QueueRule>,
}

/// One `QueueConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueRule {
    pub id: String,
    pub queue_arn: String,
    /// As configured: `s3:ObjectCreated:Put`, `s3:ObjectCreated:*`, …
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// The event types AWS accepts in a configuration. Only the `ObjectCreated`
/// and `ObjectRemoved:Delete` ones ever fire here (no versioning, restores,
/// replication or lifecycle); the rest are accepted so configurations
/// written for AWS load unchanged.
pub const KNOWN_EVENTS: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
    "s3:ObjectRestore:*",
    "s3:ObjectRestore:Post",
    "s3:ObjectRestore:Completed",
    "s3:ObjectRestore:Delete",
    "s3:ReducedRedundancyLostObject",
    "s3:Replication:*",
    "s3:Replication:OperationFailedReplication",
    "s3:Replication:OperationMissedThreshold",
    "s3:Replication:OperationReplicatedAfterThreshold",
    "s3:Replication:OperationNotTracked",
    "s3:LifecycleExpiration:*",
    "s3:LifecycleExpiration:Delete",
    "s3:LifecycleExpiration:DeleteMarkerCreated",
    "s3:LifecycleTransition",
    "s3:IntelligentTiering",
    "s3:ObjectTagging:*",
    "s3:ObjectTagging:Put",
    "s3:ObjectTagging:Delete",
    "s3:ObjectAcl:Put",
];

/// The events a write here can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    Put,
    Post,
    Copy,
    CompleteMultipartUpload,
    Delete,
}

impl EventName {
    /// The record's `eventName` (the configured name without `s3:`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Put => "ObjectCreated:Put",
            EventName::Post => "ObjectCreated:Post",
            EventName::Copy => "ObjectCreated:Copy",
            EventName::CompleteMultipartUpload => "ObjectCreated:CompleteMultipartUpload",
            EventName::Delete => "ObjectRemoved:Delete",
        }
    }

    fn family(self) -> &'static str {
        match self {
            EventName::Delete => "ObjectRemoved",
            _ => "ObjectCreated",
        }
    }

    /// Whether a configured event type (`s3:ObjectCreated:*`, …) covers this one.
    fn covered_by(self, configured: &str) -> bool {
        let Some(configured) = configured.strip_prefix("s3:") else { return false };
        configured == self.as_str() || configured.strip_suffix(":*") == Some(self.family())
    }
}

/// Who made the request and from where, as a record reports it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub request_id: String,
    /// The access key that signed, or `ANONYMOUS`.
    pub principal: String,
    pub source_ip: String,
}

/// One event waiting in the outbox for its queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEvent {
    pub queue_arn: String,
    pub configuration_id: String,
    pub event_name: String,
    pub bucket: String,
    pub key: String,
    /// Size and ETag of a created object; a removal has neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub time_ms: u64,
    pub request_id: String,
    pub principal: String,
    pub source_ip: String,
}

/// The object a created-event reports.
#[derive(Debug, Clone, Copy)]
pub struct Created<'a> {
    pub size: u64,
    pub etag: &'a str,
}

impl Notifications {
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The events `name` on `bucket`/`key` causes: one per matching
    /// configuration (each goes to its own queue).
    pub fn pending(
        &self,
        name: EventName,
        bucket: &str,
        key: &str,
        created: Option<Created<'_>>,
        origin: &Origin,
    ) -> Vec<PendingEvent> {
        let time_ms = crate::durable::now_ms();
        self.queues
            .iter()
            .filter(|rule| rule.matches(name, key))
            .map(|rule| PendingEvent {
                queue_arn: rule.queue_arn.clone(),
                configuration_id: rule.id.clone(),
                event_name: name.as_str().to_owned(),
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                size: created.map(|c| c.size),
                etag: created.map(|c| c.etag.to_owned()),
                time_ms,
                request_id: origin.request_id.clone(),
                principal: origin.principal.clone(),
                source_ip: origin.source_ip.clone(),
            })
            .collect()
    }
}

impl QueueRule {
    fn matches(&self, name: EventName, key: &str) -> bool {
        self.events.iter().any(|e| name.covered_by(e))
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> QueueRule {
        QueueRule {
            id: "r".into(),
            queue_arn: "arn:aws:sqs:us-east-1:000000000000:q".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            prefix: prefix.map(Into::into),
            suffix: suffix.map(Into::into),
        }
    }

    #[test]
    fn wildcards_cover_their_family_only() {
        let n = Notifications { queues: vec![rule(&["s3:ObjectCreated:*"], None, None)] };
        let o = Origin::default();
        assert_eq!(n.pending(EventName::Put, "b", "k", None, &o).len(), 1);
        assert_eq!(n.pending(EventName::CompleteMultipartUpload, "b", "k", None, &o).len(), 1);
        assert!(n.pending(EventName::Delete, "b", "k", None, &o).is_empty());
        let d = Notifications { queues: vec![rule(&["s3:ObjectRemoved:Delete"], None, None)] };
        assert_eq!(d.pending(EventName::Delete, "b", "k", None, &o)[0].event_name, "ObjectRemoved:Delete");
        assert!(d.pending(EventName::Post, "b", "k", None, &o).is_empty());
    }

    #[test]
    fn prefix_and_suffix_both_must_hold() {
        let n = Notifications { queues: vec![rule(&["s3:ObjectCreated:Put"], Some("in/"), Some(".jpg"))] };
        let o = Origin::default();
        assert_eq!(n.pending(EventName::Put, "b", "in/a.jpg", None, &o).len(), 1);
        assert!(n.pending(EventName::Put, "b", "out/a.jpg", None, &o).is_empty());
        assert!(n.pending(EventName::Put, "b", "in/a.png", None, &o).is_empty());
    }

    #[test]
    fn one_event_per_matching_configuration() {
        let mut second = rule(&["s3:ObjectCreated:*"], None, None);
        second.queue_arn = "arn:aws:sqs:us-east-1:000000000000:other".into();
        let n = Notifications { queues: vec![rule(&["s3:ObjectCreated:Put"], None, None), second] };
        let created = Created { size: 3, etag: "abc" };
        let events = n.pending(EventName::Put, "b", "k", Some(created), &Origin::default());
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].queue_arn, "arn:aws:sqs:us-east-1:000000000000:other");
        assert_eq!((events[0].size, events[0].etag.as_deref()), (Some(3), Some("abc")));
    }
}
