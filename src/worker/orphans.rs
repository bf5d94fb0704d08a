//! Sweeps orphaned originals: `originals/{id}` whose id never reached the
//! crunch queue (the web role was killed between storing the original and
//! queueing its id, or the queue refused and the clean-up delete failed).
//! The upload was never acknowledged, and nothing would ever crunch or
//! report it.
//!
//! SQS cannot be asked whether a message for an id exists, so age decides.
//! SQS drops every message at the end of its retention period, in flight or
//! not, so an original older than the crunch queue's retention plus its
//! visibility timeout can have no message left; without a variant, a
//! failure record or a tombstone it is an orphan. `queue.orphan_after_secs`
//! sets a shorter age, which is safe only while no message ever waits in
//! the queue that long.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::QueueAttributeName;

use super::Settings;
use crate::avatar::{self, AvatarId};
use crate::clients::{CallError, Clients};
use crate::crunch::VariantName;
use crate::metrics as m;
use crate::shutdown::Shutdown;

/// Originals looked at per round; the next round goes on from there.
const PAGE: i32 = 1000;
/// Bounds of the pause between rounds (half the orphan age, clamped).
const MIN_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(3600);
/// Pause before asking the queue for its retention again.
const RETRY: Duration = Duration::from_secs(60);

/// Runs sweep rounds until `shutdown`.
pub async fn run(clients: Clients, settings: Arc<Settings>, mut shutdown: Shutdown) {
    let mut cursor: Option<String> = None;
    let mut known_age: Option<Duration> = None;
    loop {
        let age = match known_age {
            Some(age) => age,
            None => match orphan_age(&clients, &settings).await {
                Ok(age) => {
                    tracing::info!(after_secs = age.as_secs(), "sweeping originals that were never queued");
                    *known_age.insert(age)
                }
                Err(e) => {
                    tracing::warn!(error = %e.detail(), "cannot read the crunch queue's retention; orphan sweep waits");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => continue,
                        () = shutdown.wait() => return,
                    }
                }
            },
        };
        tokio::select! {
            () = tokio::time::sleep((age / 2).clamp(MIN_PAUSE, MAX_PAUSE)) => {}
            () = shutdown.wait() => return,
        }
        match round(&clients, &settings, age, &mut cursor).await {
            Ok(0) => {}
            Ok(swept) => tracing::info!(swept, "removed originals that were never queued"),
            Err(e) => tracing::warn!(error = %e.detail(), "orphan sweep failed; retrying next round"),
        }
    }
}

/// The configured age, or the crunch queue's retention plus visibility timeout.
async fn orphan_age(clients: &Clients, settings: &Settings) -> Result<Duration, CallError> {
    if let Some(age) = settings.orphan_after {
        return Ok(age);
    }
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&settings.queue_url)
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(CallError::on("reading the crunch queue's attributes"))?;
    Ok(safe_age(out.attributes()))
}

/// Retention plus visibility timeout, from GetQueueAttributes; AWS's
/// maxima (14 days, 12 hours) where an attribute is missing or unreadable.
fn safe_age(attributes: Option<&std::collections::HashMap<QueueAttributeName, String>>) -> Duration {
    let get = |name: QueueAttributeName, max: u64| {
        attributes.and_then(|a| a.get(&name)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(max)
    };
    let retention = get(QueueAttributeName::MessageRetentionPeriod, 14 * 24 * 3600);
    let visibility = get(QueueAttributeName::VisibilityTimeout, 12 * 3600);
    Duration::from_secs(retention + visibility)
}

/// Looks at up to [`PAGE`] originals after `cursor` and removes the orphans
/// among them; returns how many it removed.
async fn round(
    clients: &Clients,
    settings: &Settings,
    age: Duration,
    cursor: &mut Option<String>,
) -> Result<usize, CallError> {
    let s3 = &clients.s3;
    let page = s3
        .list_objects_v2()
        .bucket(&settings.private_bucket)
        .prefix("originals/")
        .set_start_after(cursor.clone())
        .max_keys(PAGE)
        .send()
        .await
        .map_err(CallError::on("listing originals"))?;
    let cutoff = SystemTime::now().checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut swept = 0;
    for object in page.contents() {
        let Some(key) = object.key() else { continue };
        let old_enough = object
            .last_modified()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .is_some_and(|modified| modified < cutoff);
        let Some(id) = key.strip_prefix("originals/").and_then(AvatarId::parse) else { continue };
        if old_enough && is_orphan(clients, settings, &id).await? {
            s3.delete_object()
                .bucket(&settings.private_bucket)
                .key(key)
                .send()
                .await
                .map_err(CallError::on("removing an orphaned original"))?;
            metrics::counter!(m::ORPHANS_SWEPT).increment(1);
            tracing::debug!(id = %id, "orphaned original removed");
            swept += 1;
        }
    }
    // On to the next page, or from the start once the listing is done.
    *cursor = if page.is_truncated() == Some(true) {
        page.contents().last().and_then(|o| o.key()).map(str::to_owned)
    } else {
        None
    };
    Ok(swept)
}

/// No variant, no failure record, no tombstone (a DELETE in progress owns it).
async fn is_orphan(clients: &Clients, settings: &Settings, id: &AvatarId) -> Result<bool, CallError> {
    let s3 = &clients.s3;
    let (variant_key, failure_key) = (id.variant_key(VariantName::Default), id.failure_key());
    let (variant, failed, deleted) = tokio::try_join!(
        avatar::exists(s3, &settings.public_bucket, &variant_key),
        avatar::exists(s3, &settings.private_bucket, &failure_key),
        avatar::is_deleted(s3, &settings.private_bucket, id),
    )?;
    Ok(!variant && !failed && !deleted)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_safe_age_outlives_every_message() {
        let attrs = HashMap::from([
            (QueueAttributeName::MessageRetentionPeriod, "345600".to_owned()),
            (QueueAttributeName::VisibilityTimeout, "60".to_owned()),
        ]);
        assert_eq!(safe_age(Some(&attrs)), Duration::from_secs(345_660));
        // Unknown: assume AWS's longest retention and visibility.
        assert_eq!(safe_age(None), Duration::from_secs(14 * 24 * 3600 + 12 * 3600));
    }
}
