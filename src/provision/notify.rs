//! The private bucket's event notification to the crunch queue, for
//! `pipeline.trigger = "s3-event"`: a queue policy that lets S3 send (AWS
//! checks it when the notification is put), then one queue configuration
//! with our id for `s3:ObjectCreated:*` under `originals/`. Other
//! configurations on the bucket are kept. With the `message` trigger our
//! configuration is removed again, so an upload is never crunched twice.

use aws_sdk_s3::operation::get_bucket_notification_configuration::GetBucketNotificationConfigurationOutput;
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration,
    S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;

use super::{Outcome, ProvisionError, call_err};
use crate::clients::Clients;
use crate::config::{Config, Trigger};

/// Our configuration's `Id` on the private bucket.
pub const CONFIG_ID: &str = "crunchbox-crunch";
/// Where the web role stores originals (see `AvatarId::original_key`).
const PREFIX: &str = "originals/";

/// Brings the notification to what `pipeline.trigger` asks for; `None`
/// when nothing concerns it (the `message` trigger and none of ours).
pub async fn ensure(
    clients: &Clients,
    config: &Config,
    queue_url: &str,
    queue_arn: &str,
) -> Result<Option<Outcome>, ProvisionError> {
    let bucket = &config.buckets.private;
    let current = match read(clients, bucket).await {
        Ok(current) => current,
        // With the message trigger the notification only matters if an
        // earlier s3-event setup left ours behind; a role that may not read
        // notifications (the documented IAM policies) has none to remove.
        Err(e) if config.pipeline.trigger == Trigger::Message => {
            tracing::debug!(error = %super::describe(&e), "cannot read the private bucket's notifications; none removed");
            return Ok(None);
        }
        Err(e) => {
            return Err(call_err(clients, format!("reading the notification configuration of bucket {bucket}"), e));
        }
    };
    let mut queues = current.queue_configurations.unwrap_or_default();
    let ours = queues.iter().position(|q| q.id() == Some(CONFIG_ID));
    let outcome = match (config.pipeline.trigger, ours) {
        (Trigger::Message, None) => return Ok(None),
        (Trigger::Message, Some(i)) => {
            queues.remove(i);
            Outcome::Updated
        }
        (Trigger::S3Event, Some(i)) if is_wanted(&queues[i], queue_arn) => return Ok(Some(Outcome::Found)),
        (Trigger::S3Event, found) => {
            allow_s3_to_send(clients, config, queue_url, queue_arn).await?;
            if let Some(i) = found {
                queues.remove(i);
            }
            queues.push(wanted(queue_arn));
            if found.is_some() { Outcome::Updated } else { Outcome::Created }
        }
    };
    let configuration = NotificationConfiguration::builder()
        .set_queue_configurations(Some(queues))
        .set_topic_configurations(current.topic_configurations)
        .set_lambda_function_configurations(current.lambda_function_configurations)
        .set_event_bridge_configuration(current.event_bridge_configuration)
        .build();
    clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(configuration)
        .send()
        .await
        .map_err(|e| call_err(clients, format!("setting the notification configuration of bucket {bucket}"), e))?;
    Ok(Some(outcome))
}

/// Whether the bucket has our notification (the `check` at start).
pub async fn is_set(clients: &Clients, config: &Config, queue_arn: &str) -> Result<bool, String> {
    match read(clients, &config.buckets.private).await {
        Ok(out) => Ok(out.queue_configurations().iter().any(|q| q.id() == Some(CONFIG_ID) && is_wanted(q, queue_arn))),
        Err(e) => Err(super::describe(&e)),
    }
}

type ReadError = aws_sdk_s3::error::SdkError<
    aws_sdk_s3::operation::get_bucket_notification_configuration::GetBucketNotificationConfigurationError,
>;

/// The bucket's notification configuration. moto answers a bucket that has
/// none with a 200 whose root element the SDK refuses; that reads as empty.
async fn read(clients: &Clients, bucket: &str) -> Result<GetBucketNotificationConfigurationOutput, ReadError> {
    match clients.s3.get_bucket_notification_configuration().bucket(bucket).send().await {
        Err(ReadError::ResponseError(e)) if e.raw().status().as_u16() == 200 => {
            Ok(GetBucketNotificationConfigurationOutput::builder().build())
        }
        other => other,
    }
}

fn wanted(queue_arn: &str) -> QueueConfiguration {
    let prefix = FilterRule::builder().name(FilterRuleName::Prefix).value(PREFIX).build();
    let filter =
        NotificationConfigurationFilter::builder().key(S3KeyFilter::builder().filter_rules(prefix).build()).build();
    // Only the ARN and events are required, so `build` cannot fail; an
    // error would surface as a refused put below.
    QueueConfiguration::builder()
        .id(CONFIG_ID)
        .queue_arn(queue_arn)
        .events(Event::S3ObjectCreated)
        .filter(filter)
        .build()
        .unwrap_or_else(|_| {
            QueueConfiguration::builder().queue_arn(queue_arn).build().unwrap_or_else(|_| unreachable!())
        })
}

fn is_wanted(q: &QueueConfiguration, queue_arn: &str) -> bool {
    let prefix = q
        .filter()
        .and_then(|f| f.key())
        .map(|k| k.filter_rules())
        .unwrap_or_default()
        .iter()
        .find(|r| r.name() == Some(&FilterRuleName::Prefix))
        .and_then(|r| r.value());
    q.queue_arn() == queue_arn && q.events() == [Event::S3ObjectCreated] && prefix == Some(PREFIX)
}

/// The queue policy AWS requires before S3 may send to the queue: S3, for
/// the private bucket only.
async fn allow_s3_to_send(
    clients: &Clients,
    config: &Config,
    queue_url: &str,
    queue_arn: &str,
) -> Result<(), ProvisionError> {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "crunchbox-s3-events",
            "Effect": "Allow",
            "Principal": { "Service": "s3.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnLike": { "aws:SourceArn": format!("arn:aws:s3:::{}", config.buckets.private) } },
        }],
    });
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| call_err(clients, format!("setting the policy of queue {}", config.queue.name), e))?;
    Ok(())
}
