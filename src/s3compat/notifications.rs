//! Put/GetBucketNotificationConfiguration: a bucket's queue rules, checked
//! as AWS checks them (known event types, prefix/suffix filters, no two
//! rules sharing an event type on overlapping keys, a destination queue
//! that exists), kept in the bucket's record. A configuration that is put
//! sends `s3:TestEvent` to each of its queues; an empty one turns events off.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::api::S3Api;
use super::events::{KNOWN_EVENTS, Notifications, QueueRule, record};

/// AWS's cap on the configurations of one bucket.
const MAX_RULES: usize = 100;

pub async fn put(
    api: &S3Api,
    req: S3Request<PutBucketNotificationConfigurationInput>,
) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
    let origin = api.origin_of(&req);
    let input = req.input;
    api.require_bucket(&input.bucket)?;
    let config = input.notification_configuration;
    if config.topic_configurations.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(s3_error!(NotImplemented, "SNS topic notifications are not implemented; use QueueConfigurations"));
    }
    if config.lambda_function_configurations.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(s3_error!(NotImplemented, "Lambda notifications are not implemented; use QueueConfigurations"));
    }
    if config.event_bridge_configuration.is_some() {
        return Err(s3_error!(NotImplemented, "EventBridge notifications are not implemented"));
    }
    let rules =
        config.queue_configurations.unwrap_or_default().into_iter().map(rule_of).collect::<S3Result<Vec<_>>>()?;
    if rules.len() > MAX_RULES {
        return Err(s3_error!(InvalidArgument, "A bucket holds at most {MAX_RULES} notification configurations"));
    }
    check_overlaps(&rules)?;
    if !input.skip_destination_validation.unwrap_or(false) {
        let sink = api.events.sink();
        let unreachable: Vec<&str> =
            rules.iter().map(|r| r.queue_arn.as_str()).filter(|arn| !sink.is_some_and(|s| s.accepts(arn))).collect();
        if !unreachable.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "Unable to validate the following destination configurations: {}",
                unreachable.join(", ")
            ));
        }
    }
    let notifications = Notifications { queues: rules };
    if !api.store.update_bucket(&input.bucket, |b| b.notifications = notifications.clone()).await? {
        return Err(super::api::no_such_bucket());
    }
    send_test_events(api, &input.bucket, &notifications, &origin.request_id).await;
    Ok(S3Response::new(PutBucketNotificationConfigurationOutput {}))
}

pub async fn get(
    api: &S3Api,
    req: S3Request<GetBucketNotificationConfigurationInput>,
) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
    let rules = api.bucket(&req.input.bucket)?.notifications.queues;
    let queue_configurations = (!rules.is_empty()).then(|| rules.into_iter().map(configuration_of).collect());
    Ok(S3Response::new(GetBucketNotificationConfigurationOutput { queue_configurations, ..Default::default() }))
}

fn rule_of(c: QueueConfiguration) -> S3Result<QueueRule> {
    if c.events.is_empty() {
        return Err(s3_error!(MalformedXML, "A QueueConfiguration needs at least one Event"));
    }
    let mut events = Vec::with_capacity(c.events.len());
    for e in c.events {
        let e: String = e.into();
        if !KNOWN_EVENTS.contains(&e.as_str()) {
            return Err(s3_error!(InvalidArgument, "The event is not supported for notifications: {e}"));
        }
        events.push(e);
    }
    let (mut prefix, mut suffix) = (None, None);
    for f in c.filter.and_then(|f| f.key).and_then(|k| k.filter_rules).unwrap_or_default() {
        let name = f.name.as_ref().map(|n| n.as_str().to_ascii_lowercase()).unwrap_or_default();
        let slot = match name.as_str() {
            FilterRuleName::PREFIX => &mut prefix,
            FilterRuleName::SUFFIX => &mut suffix,
            _ => return Err(s3_error!(InvalidArgument, "filter rule name must be either prefix or suffix")),
        };
        if slot.is_some() {
            return Err(s3_error!(InvalidArgument, "Cannot specify more than one {name} rule in a filter."));
        }
        *slot = Some(f.value.unwrap_or_default());
    }
    let id = c.id.filter(|id| !id.is_empty()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Ok(QueueRule { id, queue_arn: c.queue_arn, events, prefix, suffix })
}

/// AWS refuses two rules that share an event type on keys both could match.
fn check_overlaps(rules: &[QueueRule]) -> S3Result<()> {
    let shares_event = |a: &QueueRule, b: &QueueRule| {
        a.events.iter().any(|x| b.events.iter().any(|y| x == y || covers(x, y) || covers(y, x)))
    };
    let overlap = |a: &Option<String>, b: &Option<String>, f: fn(&str, &str) -> bool| match (a, b) {
        (Some(a), Some(b)) => f(a, b) || f(b, a),
        _ => true,
    };
    for (i, a) in rules.iter().enumerate() {
        for b in &rules[i + 1..] {
            if shares_event(a, b)
                && overlap(&a.prefix, &b.prefix, |x, y| x.starts_with(y))
                && overlap(&a.suffix, &b.suffix, |x, y| x.ends_with(y))
            {
                return Err(s3_error!(
                    InvalidArgument,
                    "Configurations overlap. Configurations on the same bucket cannot share a common event type."
                ));
            }
        }
    }
    Ok(())
}

/// `s3:ObjectCreated:*` covers `s3:ObjectCreated:Put`.
fn covers(wide: &str, narrow: &str) -> bool {
    wide.strip_suffix('*').is_some_and(|family| narrow.starts_with(family))
}

fn configuration_of(r: QueueRule) -> QueueConfiguration {
    let rule = |name: &'static str, value: Option<String>| {
        value.map(|v| FilterRule { name: Some(FilterRuleName::from_static(name)), value: Some(v) })
    };
    let filter_rules: Vec<FilterRule> =
        [rule(FilterRuleName::PREFIX, r.prefix), rule(FilterRuleName::SUFFIX, r.suffix)]
            .into_iter()
            .flatten()
            .collect();
    let filter = (!filter_rules.is_empty())
        .then_some(NotificationConfigurationFilter { key: Some(S3KeyFilter { filter_rules: Some(filter_rules) }) });
    QueueConfiguration {
        events: r.events.into_iter().map(Event::from).collect(),
        filter,
        id: Some(r.id),
        queue_arn: r.queue_arn,
    }
}

/// The `s3:TestEvent` of a new configuration, once per queue. Best effort,
/// as on AWS: the configuration stands even if a test event is lost.
async fn send_test_events(api: &S3Api, bucket: &str, notifications: &Notifications, request_id: &str) {
    let Some(sink) = api.events.sink() else { return };
    let mut arns: Vec<&str> = notifications.queues.iter().map(|r| r.queue_arn.as_str()).collect();
    arns.sort_unstable();
    arns.dedup();
    let body = record::test_event(bucket, request_id, crate::durable::now_ms());
    for arn in arns {
        if let Err(e) = sink.send(arn, body.clone()) {
            tracing::warn!(queue = arn, error = %e, "cannot send s3:TestEvent");
        }
    }
    if let Err(e) = sink.durable().await {
        tracing::warn!(error = %e, "cannot make s3:TestEvent durable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> QueueRule {
        QueueRule {
            id: "x".into(),
            queue_arn: "arn".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            prefix: prefix.map(Into::into),
            suffix: suffix.map(Into::into),
        }
    }

    #[test]
    fn overlapping_rules_are_refused() {
        let put = "s3:ObjectCreated:Put";
        let all = "s3:ObjectCreated:*";
        assert!(check_overlaps(&[rule(&[put], None, None), rule(&[all], Some("a/"), None)]).is_err());
        assert!(check_overlaps(&[rule(&[put], Some("a/"), None), rule(&[put], Some("a/b"), None)]).is_err());
        assert!(check_overlaps(&[rule(&[put], Some("a/"), None), rule(&[put], Some("b/"), None)]).is_ok());
        assert!(check_overlaps(&[rule(&[put], None, Some(".jpg")), rule(&[put], None, Some(".png"))]).is_ok());
        assert!(check_overlaps(&[rule(&[put], None, None), rule(&["s3:ObjectRemoved:*"], None, None)]).is_ok());
    }
}
