//! What the queue store keeps, and how it is laid out in sled.
//!
//! One sled tree holds everything so one `Batch` can change several records
//! atomically (a redrive moves a message between queues in one batch):
//!
//! | key | value |
//! | --- | --- |
//! | `q` name | [`QueueMeta`] (JSON) |
//! | `b` queue id, seq | [`StoredMessage`] (JSON; written once) |
//! | `s` queue id, seq | [`MsgState`] (binary; rewritten on every receive) |
//! | `d` queue id, dedup id | [`DedupEntry`] (JSON; FIFO's 5-minute window) |
//! | `zseq` | end of the reserved block of sequence numbers |
//!
//! Queue ids and sequence numbers are big-endian so sled's order is theirs.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A queue's identity and settings, as created and later changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueMeta {
    /// Internal id: a queue deleted and created again gets a new one, so
    /// receipt handles of the old queue never touch the new one's messages.
    pub id: u64,
    pub name: String,
    /// The settable attributes, defaults filled in.
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub created: u64,
    pub modified: u64,
}

/// The attributes the store acts on, parsed once per change.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub visibility_ms: u64,
    pub delay_secs: u64,
    pub retention_ms: u64,
    pub wait_secs: u64,
    pub max_size: usize,
    pub fifo: bool,
    pub content_dedup: bool,
    /// `DeduplicationScope=messageGroup`: ids repeat only within a group.
    pub dedup_per_group: bool,
    /// Dead-letter queue name and maxReceiveCount.
    pub redrive: Option<(String, u32)>,
}

impl Settings {
    pub fn from_attributes(a: &BTreeMap<String, String>) -> Self {
        let num = |k: &str, default: u64| a.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(default);
        let redrive = a.get("RedrivePolicy").and_then(|p| parse_redrive(p));
        Settings {
            visibility_ms: num("VisibilityTimeout", 30) * 1000,
            delay_secs: num("DelaySeconds", 0),
            retention_ms: num("MessageRetentionPeriod", 345_600) * 1000,
            wait_secs: num("ReceiveMessageWaitTimeSeconds", 0),
            max_size: num("MaximumMessageSize", 1_048_576) as usize,
            fifo: a.get("FifoQueue").is_some_and(|v| v == "true"),
            content_dedup: a.get("ContentBasedDeduplication").is_some_and(|v| v == "true"),
            dedup_per_group: a.get("DeduplicationScope").is_some_and(|v| v == "messageGroup"),
            redrive,
        }
    }
}

/// `{"deadLetterTargetArn": "arn:aws:sqs:REGION:ACCOUNT:NAME", "maxReceiveCount": N}`
/// → `(NAME, N)`. The count may be a number or a numeric string.
pub fn parse_redrive(policy: &str) -> Option<(String, u32)> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = v.get("deadLetterTargetArn")?.as_str()?;
    let name = arn.rsplit(':').next()?.to_owned();
    let count = match v.get("maxReceiveCount")? {
        serde_json::Value::Number(n) => u32::try_from(n.as_u64()?).ok()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some((name, count))
}

/// A message attribute value as SQS's JSON protocol spells it; binary values
/// are base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrValue {
    #[serde(rename = "DataType")]
    pub data_type: String,
    #[serde(rename = "StringValue", skip_serializing_if = "Option::is_none", default)]
    pub string_value: Option<String>,
    #[serde(rename = "BinaryValue", skip_serializing_if = "Option::is_none", default)]
    pub binary_value: Option<String>,
}

/// A message's immutable part: what was sent and what it hashed to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: String,
    pub body: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, AttrValue>,
    #[serde(default)]
    pub system_attributes: BTreeMap<String, AttrValue>,
    pub md5_body: String,
    pub md5_attributes: Option<String>,
    pub md5_system: Option<String>,
    /// Milliseconds since the epoch (filled in by the store).
    #[serde(default)]
    pub sent_at: u64,
    pub sender_id: String,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sequence_number: Option<String>,
    /// Set when a redrive moved the message to a dead-letter queue.
    #[serde(default)]
    pub dlq_source_arn: Option<String>,
}

/// A message's mutable part, kept small because every receive rewrites it.
#[derive(Debug, Clone, PartialEq)]
pub struct MsgState {
    /// When the message may next be received (ms since the epoch).
    pub visible_at: u64,
    pub receive_count: u32,
    /// First receive (ms since the epoch), 0 if never received.
    pub first_receive: u64,
    pub sent_at: u64,
    pub group: Option<Arc<str>>,
}

impl MsgState {
    pub fn encode(&self) -> Vec<u8> {
        let group = self.group.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(40 + group.len());
        out.extend_from_slice(&self.visible_at.to_be_bytes());
        out.extend_from_slice(&u64::from(self.receive_count).to_be_bytes());
        out.extend_from_slice(&self.first_receive.to_be_bytes());
        // A retired field (the old receipt nonce): the layout stays.
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&self.sent_at.to_be_bytes());
        out.extend_from_slice(group.as_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let word = |i: usize| Some(u64::from_be_bytes(b.get(i * 8..i * 8 + 8)?.try_into().ok()?));
        let group = std::str::from_utf8(b.get(40..)?).ok()?;
        Some(MsgState {
            visible_at: word(0)?,
            receive_count: u32::try_from(word(1)?).ok()?,
            first_receive: word(2)?,
            sent_at: word(4)?,
            group: (!group.is_empty()).then(|| Arc::from(group)),
        })
    }

    /// Received and not yet visible again.
    pub fn in_flight(&self, now: u64) -> bool {
        self.receive_count > 0 && self.visible_at > now
    }
}

/// A FIFO queue's memory of a deduplication id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupEntry {
    pub expires: u64,
    pub message_id: String,
    pub sequence_number: Option<String>,
}

pub fn queue_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(b'q');
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn message_key(tag: u8, qid: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = tag;
    k[1..9].copy_from_slice(&qid.to_be_bytes());
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn body_key(qid: u64, seq: u64) -> [u8; 17] {
    message_key(b'b', qid, seq)
}

pub fn state_key(qid: u64, seq: u64) -> [u8; 17] {
    message_key(b's', qid, seq)
}

pub fn dedup_key(qid: u64, dedup_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + dedup_id.len());
    k.push(b'd');
    k.extend_from_slice(&qid.to_be_bytes());
    k.extend_from_slice(dedup_id.as_bytes());
    k
}

/// `(queue id, seq)` from a `b`/`s` key.
pub fn split_message_key(k: &[u8]) -> Option<(u64, u64)> {
    Some((u64::from_be_bytes(k.get(1..9)?.try_into().ok()?), u64::from_be_bytes(k.get(9..17)?.try_into().ok()?)))
}

/// A receipt handle names one receive of one message: queue id, sequence
/// number, which receive it was (1 for the first), and a tag that proves
/// this store issued it, base64url-encoded. The tag is a keyed MAC over the
/// rest (the key never leaves the store), so a handle cannot be made up or
/// bent to name another message or receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    pub qid: u64,
    pub seq: u64,
    pub receive: u64,
}

/// Bytes of the MAC a handle carries (64 bits: unguessable online).
const TAG_LEN: usize = 8;

impl Handle {
    fn mac(&self, key: &[u8]) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(&self.qid.to_be_bytes());
        mac.update(&self.seq.to_be_bytes());
        mac.update(&self.receive.to_be_bytes());
        mac
    }

    pub fn encode(&self, key: &[u8]) -> String {
        let mut b = [0u8; 24 + TAG_LEN];
        b[..8].copy_from_slice(&self.qid.to_be_bytes());
        b[8..16].copy_from_slice(&self.seq.to_be_bytes());
        b[16..24].copy_from_slice(&self.receive.to_be_bytes());
        b[24..].copy_from_slice(&self.mac(key).finalize().into_bytes()[..TAG_LEN]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// The handle, if `s` is one this store (holding `key`) issued.
    pub fn decode(s: &str, key: &[u8]) -> Option<Self> {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
        if b.len() != 24 + TAG_LEN {
            return None;
        }
        let word = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let h = Handle { qid: word(0), seq: word(8), receive: word(16) };
        // Constant-time: a forger learns nothing from how fast it failed.
        h.mac(key).verify_truncated_left(&b[24..]).ok()?;
        (h.receive > 0).then_some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let s =
            MsgState { visible_at: 5, receive_count: 2, first_receive: 3, sent_at: 1, group: Some(Arc::from("g1")) };
        assert_eq!(MsgState::decode(&s.encode()), Some(s));
        assert_eq!(MsgState::decode(b"short"), None);
    }

    #[test]
    fn handle_round_trips_and_rejects_junk() {
        let key = b"the store's key";
        let h = Handle { qid: 1, seq: 2, receive: 3 };
        assert_eq!(Handle::decode(&h.encode(key), key), Some(h));
        assert_eq!(Handle::decode("not a handle", key), None);
        // Another key, or any other field, and the tag no longer fits.
        assert_eq!(Handle::decode(&h.encode(key), b"another key"), None);
        let forged = Handle { seq: 3, ..h }.encode(b"guess");
        assert_eq!(Handle::decode(&forged, key), None);
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h.encode(key)).unwrap();
        raw[15] ^= 1;
        assert_eq!(Handle::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw), key), None);
    }

    #[test]
    fn redrive_policy_parses_number_or_string() {
        let p = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"3"}"#;
        assert_eq!(parse_redrive(p), Some(("dlq".into(), 3)));
        assert_eq!(parse_redrive("{}"), None);
    }
}
