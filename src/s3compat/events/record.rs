//! The message bodies S3 sends to a queue, in AWS's exact shape: an event
//! record (one per message) and the `s3:TestEvent` a new configuration
//! sends. Field order and names follow AWS's documented example event.

use serde_json::json;

use super::PendingEvent;

/// What every record of this endpoint says about where it ran.
#[derive(Debug, Clone)]
pub struct Site {
    pub region: String,
    /// The owner of every bucket (the one configured account).
    pub owner: String,
}

/// The message body for `event`, whose outbox sequence number is `seq`.
pub fn record(event: &PendingEvent, seq: u64, site: &Site) -> String {
    let mut object = serde_json::Map::new();
    object.insert("key".into(), encode_key(&event.key).into());
    if let Some(size) = event.size {
        object.insert("size".into(), size.into());
    }
    if let Some(etag) = &event.etag {
        object.insert("eTag".into(), etag.as_str().into());
    }
    object.insert("sequencer".into(), sequencer(seq).into());
    let body = json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": site.region,
            "eventTime": iso_ms(event.time_ms),
            "eventName": event.event_name,
            "userIdentity": { "principalId": principal(&event.principal) },
            "requestParameters": { "sourceIPAddress": event.source_ip },
            "responseElements": {
                "x-amz-request-id": event.request_id,
                "x-amz-id-2": host_id(&event.request_id),
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": event.configuration_id,
                "bucket": {
                    "name": event.bucket,
                    "ownerIdentity": { "principalId": site.owner },
                    "arn": format!("arn:aws:s3:::{}", event.bucket),
                },
                "object": object,
            },
        }]
    });
    body.to_string()
}

/// The `s3:TestEvent` sent to each queue of a configuration when it is put.
pub fn test_event(bucket: &str, request_id: &str, time_ms: u64) -> String {
    json!({
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": iso_ms(time_ms),
        "Bucket": bucket,
        "RequestId": request_id,
        "HostId": host_id(request_id),
    })
    .to_string()
}

/// AWS's `sequencer`: hex, fixed width, so later events of a key compare
/// greater as strings too.
pub fn sequencer(seq: u64) -> String {
    format!("{seq:018X}")
}

/// Keys are URL-encoded as in AWS's records (space as `+`, `/` kept);
/// consumers decode with `unquote_plus`.
pub fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|segment| form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// The principal as AWS writes an IAM user's: `AWS:` and the key.
fn principal(key: &str) -> String {
    if key == "ANONYMOUS" { key.to_owned() } else { format!("AWS:{key}") }
}

/// A stand-in for AWS's `x-amz-id-2`, derived from the request id so the
/// two stay paired in logs.
fn host_id(request_id: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(request_id.as_bytes()))
}

/// ISO 8601 with milliseconds and `Z`, as `eventTime`.
pub fn iso_ms(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> PendingEvent {
        PendingEvent {
            queue_arn: "arn:aws:sqs:us-west-2:000000000000:q".into(),
            configuration_id: "testConfigRule".into(),
            event_name: "ObjectCreated:Put".into(),
            bucket: "amzn-s3-demo-bucket".into(),
            key: "my photos/Happy Face(1).jpg".into(),
            size: Some(1024),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            time_ms: 1_000,
            request_id: "C3D13FE58DE4C810".into(),
            principal: "AKIDEXAMPLE".into(),
            source_ip: "172.16.0.1".into(),
        }
    }

    /// Field by field against AWS's documented example event (S3 User
    /// Guide, "Event message structure"); versionId is absent because
    /// buckets here are unversioned.
    #[test]
    fn matches_aws_example_event() {
        let site = Site { region: "us-west-2".into(), owner: "000000000000".into() };
        let v: serde_json::Value = serde_json::from_str(&record(&event(), 0x55AED6DCD90281E5, &site)).unwrap();
        let r = &v["Records"][0];
        assert_eq!(v["Records"].as_array().unwrap().len(), 1);
        assert_eq!(r["eventVersion"], "2.1");
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["awsRegion"], "us-west-2");
        assert_eq!(r["eventTime"], "1970-01-01T00:00:01.000Z");
        assert_eq!(r["eventName"], "ObjectCreated:Put");
        assert_eq!(r["userIdentity"]["principalId"], "AWS:AKIDEXAMPLE");
        assert_eq!(r["requestParameters"]["sourceIPAddress"], "172.16.0.1");
        assert_eq!(r["responseElements"]["x-amz-request-id"], "C3D13FE58DE4C810");
        assert!(r["responseElements"]["x-amz-id-2"].as_str().is_some_and(|s| !s.is_empty()));
        let s3 = &r["s3"];
        assert_eq!(s3["s3SchemaVersion"], "1.0");
        assert_eq!(s3["configurationId"], "testConfigRule");
        assert_eq!(s3["bucket"]["name"], "amzn-s3-demo-bucket");
        assert_eq!(s3["bucket"]["ownerIdentity"]["principalId"], "000000000000");
        assert_eq!(s3["bucket"]["arn"], "arn:aws:s3:::amzn-s3-demo-bucket");
        assert_eq!(s3["object"]["key"], "my+photos/Happy+Face%281%29.jpg");
        assert_eq!(s3["object"]["size"], 1024);
        assert_eq!(s3["object"]["eTag"], "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(s3["object"]["sequencer"], "0055AED6DCD90281E5");
        assert!(s3["object"].get("versionId").is_none());
    }

    #[test]
    fn a_removal_has_no_size_or_etag() {
        let mut e = event();
        (e.event_name, e.size, e.etag) = ("ObjectRemoved:Delete".into(), None, None);
        let site = Site { region: "us-east-1".into(), owner: "0".into() };
        let v: serde_json::Value = serde_json::from_str(&record(&e, 7, &site)).unwrap();
        let object = v["Records"][0]["s3"]["object"].as_object().unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), ["key", "sequencer"]);
    }

    #[test]
    fn sequencers_sort_as_strings() {
        assert!(sequencer(9) < sequencer(10));
        assert!(sequencer(0xFF) < sequencer(0x100));
    }

    #[test]
    fn test_event_shape() {
        let v: serde_json::Value = serde_json::from_str(&test_event("b", "R1", 0)).unwrap();
        assert_eq!(v["Service"], "Amazon S3");
        assert_eq!(v["Event"], "s3:TestEvent");
        assert_eq!(v["Time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["Bucket"], "b");
        assert_eq!(v["RequestId"], "R1");
        assert!(v["HostId"].is_string());
    }
}
