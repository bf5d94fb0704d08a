//! Creates (or, in aws mode, checks) the buckets and queues the pipeline
//! needs: the private and public buckets, the crunch queue and its
//! dead-letter queue with the redrive policy.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::clients::Clients;
use crate::config::Config;

/// Where the queues are, once they exist.
#[derive(Debug, Clone)]
pub struct Queues {
    pub queue_url: String,
    pub dlq_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("missing: {}; run `crunchbox provision` first", .0.join(", "))]
    Missing(Vec<String>),
    #[error("{what}: {detail}")]
    Call { what: String, detail: String },
}

fn call_err<E: std::error::Error>(what: impl Into<String>) -> impl FnOnce(E) -> ProvisionError {
    let what = what.into();
    move |e| ProvisionError::Call { what, detail: DisplayErrorContext(e).to_string() }
}

/// Creates whatever is missing; returns the queues and one line per resource
/// saying whether it was created or found.
pub async fn ensure(clients: &Clients, config: &Config) -> Result<(Queues, Vec<String>), ProvisionError> {
    let mut report = Vec::new();
    for bucket in [&config.buckets.private, &config.buckets.public] {
        let created = ensure_bucket(clients, bucket, &config.aws.region).await?;
        report.push(format!("bucket {bucket}: {}", if created { "created" } else { "exists" }));
    }

    let (dlq_url, created) = ensure_queue(clients, &config.queue.dlq_name, HashMap::new()).await?;
    report.push(format!("queue {}: {}", config.queue.dlq_name, if created { "created" } else { "exists" }));
    let dlq_arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(call_err("reading the dead-letter queue's ARN"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| ProvisionError::Call {
            what: "reading the dead-letter queue's ARN".into(),
            detail: "no QueueArn".into(),
        })?;

    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": config.queue.max_receive_count.to_string(),
    })
    .to_string();
    let attrs = HashMap::from([
        (QueueAttributeName::RedrivePolicy, redrive.clone()),
        (QueueAttributeName::VisibilityTimeout, config.queue.visibility_timeout.to_string()),
    ]);
    let (queue_url, created) = ensure_queue(clients, &config.queue.name, attrs.clone()).await?;
    if !created {
        // An existing queue keeps running with the configured policy.
        clients
            .sqs
            .set_queue_attributes()
            .queue_url(&queue_url)
            .set_attributes(Some(attrs))
            .send()
            .await
            .map_err(call_err(format!("setting the redrive policy on {}", config.queue.name)))?;
    }
    report.push(format!(
        "queue {}: {} (dead letters to {} after {} receives)",
        config.queue.name,
        if created { "created" } else { "exists" },
        config.queue.dlq_name,
        config.queue.max_receive_count
    ));
    Ok((Queues { queue_url, dlq_url }, report))
}

async fn ensure_bucket(clients: &Clients, bucket: &str, region: &str) -> Result<bool, ProvisionError> {
    if clients.s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(false);
    }
    let mut req = clients.s3.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        let constraint = aws_sdk_s3::types::BucketLocationConstraint::from(region);
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(constraint).build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(false),
        Err(e) => Err(call_err(format!("creating bucket {bucket}"))(e)),
    }
}

async fn ensure_queue(
    clients: &Clients,
    name: &str,
    attrs: HashMap<QueueAttributeName, String>,
) -> Result<(String, bool), ProvisionError> {
    if let Ok(out) = clients.sqs.get_queue_url().queue_name(name).send().await
        && let Some(url) = out.queue_url
    {
        return Ok((url, false));
    }
    let out = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .set_attributes((!attrs.is_empty()).then_some(attrs))
        .send()
        .await
        .map_err(call_err(format!("creating queue {name}")))?;
    let url = out
        .queue_url
        .ok_or_else(|| ProvisionError::Call { what: format!("creating queue {name}"), detail: "no QueueUrl".into() })?;
    Ok((url, true))
}

/// Checks that everything exists without creating anything (aws mode at
/// start), naming every missing piece.
pub async fn check(clients: &Clients, config: &Config) -> Result<Queues, ProvisionError> {
    let mut missing = Vec::new();
    for bucket in [&config.buckets.private, &config.buckets.public] {
        if let Err(e) = clients.s3.head_bucket().bucket(bucket).send().await {
            missing.push(format!("bucket {bucket} ({})", short(&e)));
        }
    }
    let mut urls = Vec::new();
    for name in [&config.queue.name, &config.queue.dlq_name] {
        match clients.sqs.get_queue_url().queue_name(name).send().await {
            Ok(out) => urls.push(out.queue_url.unwrap_or_default()),
            Err(e) => missing.push(format!("queue {name} ({})", short(&e))),
        }
    }
    if !missing.is_empty() {
        return Err(ProvisionError::Missing(missing));
    }
    let dlq_url = urls.pop().unwrap_or_default();
    let queue_url = urls.pop().unwrap_or_default();
    Ok(Queues { queue_url, dlq_url })
}

fn short<E: std::error::Error>(e: &E) -> String {
    let text = DisplayErrorContext(e).to_string();
    text.chars().take(160).collect()
}
