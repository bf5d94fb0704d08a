//! Creates (or, in aws mode at start, only checks) what the pipeline needs:
//! the private and public buckets, the crunch queue and its dead-letter queue
//! with the redrive policy.
//!
//! `ensure` is idempotent: it creates what is missing, brings an existing
//! queue's visibility timeout and redrive policy to the configured values,
//! and says per resource whether it was created, found or updated. `check`
//! never writes, so the stateless tiers can run with roles that may not
//! create anything, and names every missing piece at once.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;

mod notify;

use crate::clients::{CallError, Clients, cause_chain};
use crate::config::{Config, Driver, Trigger};

/// Where the queues are, once they exist.
#[derive(Debug, Clone)]
pub struct Queues {
    pub queue_url: String,
    pub dlq_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Aws mode at start: some resources do not exist (or cannot be checked).
    #[error("{}", not_ready_text(.target, .missing, .failed, .command))]
    NotReady { target: String, missing: Vec<String>, failed: Vec<String>, command: String },
    /// No answer at all: wrong endpoint, nothing listening, no network.
    /// `detail` is the operator's one line; the SDK error is the source.
    #[error("cannot reach {target}: {detail}")]
    Unreachable {
        target: String,
        detail: String,
        #[source]
        source: CallError,
    },
    /// The service answered with an error (or with something unusable).
    #[error("{what} at {target}: {detail}")]
    Call {
        what: String,
        target: String,
        detail: String,
        #[source]
        source: Option<CallError>,
    },
}

fn not_ready_text(target: &str, missing: &[String], failed: &[String], command: &str) -> String {
    let cannot_check = format!("cannot check {}", failed.join("; "));
    match (missing.is_empty(), failed.is_empty()) {
        (false, true) => format!("not provisioned at {target}: missing {}; run `{command}` first", missing.join(", ")),
        (false, false) => format!(
            "not provisioned at {target}: missing {}; {cannot_check}; run `{command}` first",
            missing.join(", ")
        ),
        _ => {
            format!("{cannot_check} at {target}; check the credentials and the role's permissions, or run `{command}`")
        }
    }
}

/// How a resource stood before `ensure` touched it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Found,
    /// Found with other settings, which were brought to the configured ones.
    Updated,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Found => "found",
            Outcome::Updated => "updated",
        })
    }
}

/// The command that creates the resources, as a user would type it.
pub fn provision_command(config: &Config) -> String {
    match (config.driver, &config.aws.endpoint_url) {
        (Driver::Embedded, _) => "crunchbox provision".into(),
        (Driver::Aws, None) => "crunchbox provision --driver aws".into(),
        (Driver::Aws, Some(url)) => format!("crunchbox provision --driver aws --aws-endpoint-url {url}"),
    }
}

/// A failed call, sorted into "nobody answered" and "the service said no".
fn call_err<E>(clients: &Clients, what: impl Into<String>, e: SdkError<E>) -> ProvisionError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (what, detail, target) = (what.into(), describe(&e), clients.target.clone());
    if is_unreachable(&e) {
        ProvisionError::Unreachable { target, detail, source: CallError::new(what, e) }
    } else {
        ProvisionError::Call { what: what.clone(), target, detail, source: Some(CallError::new(what, e)) }
    }
}

/// One line about an SDK error: the service's code and message when it
/// answered, else the cause chain, shortened.
fn describe<E>(e: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            match (se.err().code(), se.err().message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                // HEAD answers carry no error body.
                _ if status == 403 => "access denied (HTTP 403): wrong credentials, or no permission".into(),
                _ => format!("HTTP {status}"),
            }
        }
        // Only the innermost cause says what happened ("Connection refused");
        // the layers above it name the SDK's plumbing.
        SdkError::DispatchFailure(_) => {
            let mut cause: &(dyn std::error::Error + 'static) = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            cause.to_string()
        }
        other => cause_chain(other),
    };
    if text.chars().count() > 240 { format!("{}…", text.chars().take(240).collect::<String>()) } else { text }
}

fn is_unreachable<E>(e: &SdkError<E>) -> bool {
    matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_))
}

/// Creates whatever is missing; returns the queues and one line per resource
/// saying whether it was created or found.
pub async fn ensure(clients: &Clients, config: &Config) -> Result<(Queues, Vec<String>), ProvisionError> {
    let mut report = Vec::new();
    for bucket in [&config.buckets.private, &config.buckets.public] {
        let outcome = ensure_bucket(clients, bucket).await?;
        report.push(format!("bucket {bucket}: {outcome}"));
    }

    let (dlq_url, outcome) = ensure_queue(clients, &config.queue.dlq_name, HashMap::new()).await?;
    report.push(format!("queue {}: {outcome} {dlq_url}", config.queue.dlq_name));
    let dlq_arn = queue_arn(clients, &dlq_url).await?;

    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": config.queue.max_receive_count.to_string(),
    })
    .to_string();
    let wanted = HashMap::from([
        (QueueAttributeName::RedrivePolicy, redrive),
        (QueueAttributeName::VisibilityTimeout, config.queue.visibility_timeout.to_string()),
    ]);
    let (queue_url, outcome) = ensure_queue(clients, &config.queue.name, wanted).await?;
    report.push(format!(
        "queue {}: {outcome} {queue_url} (visibility timeout {}s; redrive to {} {dlq_url} after maxReceiveCount {})",
        config.queue.name, config.queue.visibility_timeout, config.queue.dlq_name, config.queue.max_receive_count
    ));
    let arn = queue_arn(clients, &queue_url).await?;
    if let Some(outcome) = notify::ensure(clients, config, &queue_url, &arn).await? {
        let what = match config.pipeline.trigger {
            Trigger::S3Event => "ObjectCreated under originals/ to",
            Trigger::Message => "removed (pipeline.trigger = message); was to",
        };
        report.push(format!(
            "notification {} on bucket {}: {outcome} ({what} {})",
            notify::CONFIG_ID,
            config.buckets.private,
            config.queue.name
        ));
    }
    Ok((Queues { queue_url, dlq_url }, report))
}

async fn ensure_bucket(clients: &Clients, bucket: &str) -> Result<Outcome, ProvisionError> {
    match clients.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(Outcome::Found),
        Err(e) if bucket_missing(&e) => {}
        Err(e) => {
            let what = format!("checking bucket {bucket}");
            return Err(match refusal(clients, &e).await {
                Some(detail) => ProvisionError::Call {
                    what: what.clone(),
                    target: clients.target.clone(),
                    detail,
                    source: Some(CallError::new(what, e)),
                },
                None => call_err(clients, what, e),
            });
        }
    }
    let mut req = clients.s3.create_bucket().bucket(bucket);
    // us-east-1 is the one region that refuses an explicit constraint.
    if let Some(region) = clients.region().filter(|r| r != "us-east-1") {
        let constraint = aws_sdk_s3::types::BucketLocationConstraint::from(region.as_str());
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(constraint).build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(Outcome::Created),
        // Another provision (or process) won the race.
        Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(Outcome::Found),
        Err(e) => Err(call_err(clients, format!("creating bucket {bucket}"), e)),
    }
}

/// HeadBucket's 403 has no body; these are its usual reasons. Bucket names
/// are global, so a default name is likely someone else's.
const BUCKET_FORBIDDEN: &str = "access denied (HTTP 403): wrong credentials, no s3:ListBucket permission, \
     or the name belongs to another account's bucket (names are global: set buckets.private / buckets.public)";

/// Why HeadBucket was refused (400 or 403, neither with a body), in the
/// user's words; `None` for any other failure. A refused signature comes
/// first (see [`signature_refused`]); else a 403's usual reasons, or what
/// the 400 said.
async fn refusal(
    clients: &Clients,
    e: &SdkError<aws_sdk_s3::operation::head_bucket::HeadBucketError>,
) -> Option<String> {
    let status = e.raw_response()?.status().as_u16();
    if status != 400 && status != 403 {
        return None;
    }
    Some(match signature_refused(clients).await {
        Some(why) => why,
        None if status == 403 => BUCKET_FORBIDDEN.into(),
        None => describe(e),
    })
}

/// Why the endpoint refused the request's signature, when it did. HeadBucket's
/// refusal has no body, so one with a body (ListBuckets) asks again: a
/// signature error there (a wrong secret or key, a wrong region) is the
/// reason, not the bucket; anything else leaves the bucket's usual reasons.
async fn signature_refused(clients: &Clients) -> Option<String> {
    let err = clients.s3.list_buckets().send().await.err()?;
    let service = err.as_service_error()?;
    let (code, message) = (service.code()?, service.message().unwrap_or(""));
    let hint = match code {
        "SignatureDoesNotMatch" => "aws.secret_access_key is not the secret of aws.access_key_id there",
        "InvalidAccessKeyId" => "aws.access_key_id is not a key known there",
        "AuthorizationHeaderMalformed" => "set aws.region to the region it expects",
        _ => return None,
    };
    let said = if message.is_empty() { code.to_owned() } else { format!("{code}: {message}") };
    Some(format!("the signature was refused ({said}): {hint}"))
}

fn bucket_missing(e: &SdkError<aws_sdk_s3::operation::head_bucket::HeadBucketError>) -> bool {
    e.as_service_error().is_some_and(|s| s.is_not_found())
        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

fn queue_missing<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    // JSON protocol: QueueDoesNotExist; legacy Query: the long name.
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c.ends_with("QueueDoesNotExist") || c.ends_with("NonExistentQueue"))
}

/// Finds or creates a queue and brings `wanted` attributes to their values.
async fn ensure_queue(
    clients: &Clients,
    name: &str,
    wanted: HashMap<QueueAttributeName, String>,
) -> Result<(String, Outcome), ProvisionError> {
    let url = match clients.sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => out.queue_url,
        Err(e) if queue_missing(&e) => None,
        Err(e) => return Err(call_err(clients, format!("looking up queue {name}"), e)),
    };
    let url = match url {
        Some(url) => url,
        None => {
            let created = clients
                .sqs
                .create_queue()
                .queue_name(name)
                .set_attributes((!wanted.is_empty()).then(|| wanted.clone()))
                .send()
                .await;
            match created {
                Ok(out) => return Ok((out.queue_url.unwrap_or_default(), Outcome::Created)),
                // Created meanwhile with other attributes: fall through to update.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_name_exists()) => {
                    queue_url(clients, name).await?
                }
                Err(e) => return Err(call_err(clients, format!("creating queue {name}"), e)),
            }
        }
    };
    if wanted.is_empty() {
        return Ok((url, Outcome::Found));
    }
    let current = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .set_attribute_names(Some(wanted.keys().cloned().collect()))
        .send()
        .await
        .map_err(|e| call_err(clients, format!("reading the attributes of queue {name}"), e))?
        .attributes
        .unwrap_or_default();
    let stale: HashMap<_, _> =
        wanted.into_iter().filter(|(k, v)| !same_attribute(k, current.get(k).map(String::as_str), v)).collect();
    if stale.is_empty() {
        return Ok((url, Outcome::Found));
    }
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(Some(stale))
        .send()
        .await
        .map_err(|e| call_err(clients, format!("updating the attributes of queue {name}"), e))?;
    Ok((url, Outcome::Updated))
}

/// Attribute equality as SQS means it: a redrive policy is JSON whose
/// `maxReceiveCount` may come back as a number or a string.
fn same_attribute(name: &QueueAttributeName, current: Option<&str>, wanted: &str) -> bool {
    let Some(current) = current else { return false };
    if *name != QueueAttributeName::RedrivePolicy {
        return current == wanted;
    }
    let parse = |s: &str| -> Option<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let arn = v.get("deadLetterTargetArn")?.as_str()?.to_owned();
        let count = match v.get("maxReceiveCount")? {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some((arn, count))
    };
    parse(current).is_some() && parse(current) == parse(wanted)
}

async fn queue_url(clients: &Clients, name: &str) -> Result<String, ProvisionError> {
    let out = clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| call_err(clients, format!("looking up queue {name}"), e))?;
    Ok(out.queue_url.unwrap_or_default())
}

async fn queue_arn(clients: &Clients, url: &str) -> Result<String, ProvisionError> {
    let what = "reading a queue's ARN";
    clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| call_err(clients, what, e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| ProvisionError::Call {
            what: what.into(),
            target: clients.target.clone(),
            detail: "no QueueArn".into(),
            source: None,
        })
}

/// Checks that everything exists without creating anything (aws mode at
/// start), naming every missing piece.
pub async fn check(clients: &Clients, config: &Config) -> Result<Queues, ProvisionError> {
    let mut missing = Vec::new();
    let mut failed = Vec::new();
    for bucket in [&config.buckets.private, &config.buckets.public] {
        match clients.s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) if bucket_missing(&e) => missing.push(format!("bucket {bucket}")),
            Err(e) if is_unreachable(&e) => return Err(call_err(clients, "", e)),
            Err(e) => {
                let why = refusal(clients, &e).await.unwrap_or_else(|| describe(&e));
                failed.push(format!("bucket {bucket} ({why})"));
            }
        }
    }
    let mut urls = HashMap::new();
    for name in [&config.queue.name, &config.queue.dlq_name] {
        match clients.sqs.get_queue_url().queue_name(name).send().await {
            Ok(out) => {
                urls.insert(name.as_str(), out.queue_url.unwrap_or_default());
            }
            Err(e) if queue_missing(&e) => missing.push(format!("queue {name}")),
            Err(e) if is_unreachable(&e) => return Err(call_err(clients, "", e)),
            Err(e) => failed.push(format!("queue {name} ({})", describe(&e))),
        }
    }
    if let (Some(url), Some(_)) = (urls.get(config.queue.name.as_str()), urls.get(config.queue.dlq_name.as_str()))
        && !has_redrive(clients, url, &config.queue.dlq_name).await
    {
        missing.push(format!("redrive policy on queue {} (to {})", config.queue.name, config.queue.dlq_name));
    }
    if config.pipeline.trigger == Trigger::S3Event
        && let Some(url) = urls.get(config.queue.name.as_str())
        && missing.is_empty()
    {
        let arn = queue_arn(clients, url).await?;
        match notify::is_set(clients, config, &arn).await {
            Ok(true) => {}
            Ok(false) => missing.push(format!(
                "event notification on bucket {} to queue {} (pipeline.trigger = s3-event)",
                config.buckets.private, config.queue.name
            )),
            Err(e) => failed.push(format!("the notification of bucket {} ({e})", config.buckets.private)),
        }
    }
    if !missing.is_empty() || !failed.is_empty() {
        return Err(ProvisionError::NotReady {
            target: clients.target.clone(),
            missing,
            failed,
            command: provision_command(config),
        });
    }
    let queue_url = urls.remove(config.queue.name.as_str()).unwrap_or_default();
    let dlq_url = urls.remove(config.queue.dlq_name.as_str()).unwrap_or_default();
    Ok(Queues { queue_url, dlq_url })
}

/// Whether the queue dead-letters into `dlq_name`. A role that may not read
/// queue attributes gets the benefit of the doubt (with a warning): the
/// check must not demand more permissions than running does.
async fn has_redrive(clients: &Clients, url: &str, dlq_name: &str) -> bool {
    let got = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await;
    match got {
        Ok(out) => out
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned())
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
            .and_then(|v| v.get("deadLetterTargetArn").and_then(|a| a.as_str()).map(str::to_owned))
            .is_some_and(|arn| arn.rsplit(':').next() == Some(dlq_name)),
        Err(e) => {
            tracing::warn!(error = %describe(&e), "cannot read the crunch queue's redrive policy; assuming it is set");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_compare_by_meaning() {
        let name = QueueAttributeName::RedrivePolicy;
        let wanted = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"5"}"#;
        let numeric = r#"{"maxReceiveCount": 5, "deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:dlq"}"#;
        assert!(same_attribute(&name, Some(numeric), wanted));
        let other = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"3"}"#;
        assert!(!same_attribute(&name, Some(other), wanted));
        assert!(!same_attribute(&name, None, wanted));
        assert!(!same_attribute(&name, Some("not json"), wanted));
        assert!(same_attribute(&QueueAttributeName::VisibilityTimeout, Some("60"), "60"));
    }

    #[test]
    fn not_ready_names_everything_missing() {
        let text = not_ready_text(
            "AWS (region eu-west-1)",
            &["bucket a".into(), "queue q".into()],
            &["bucket b (AccessDenied: no)".into()],
            "crunchbox provision --driver aws",
        );
        assert_eq!(
            text,
            "not provisioned at AWS (region eu-west-1): missing bucket a, queue q; \
             cannot check bucket b (AccessDenied: no); run `crunchbox provision --driver aws` first"
        );
        let text = not_ready_text("X", &[], &["queue q (AccessDenied: no)".into()], "crunchbox provision");
        assert_eq!(
            text,
            "cannot check queue q (AccessDenied: no) at X; \
             check the credentials and the role's permissions, or run `crunchbox provision`"
        );
    }
}
