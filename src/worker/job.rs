//! One message's lifecycle: fetch the original, crunch, upload every
//! variant, then delete the message.
//!
//! Permanent failures (the input is bad) write a failure record and delete
//! the message; transient ones (S3/SQS trouble) leave it to reappear after
//! its visibility timeout, until the queue's redrive policy moves it to the
//! dead-letter queue.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use aws_smithy_types::error::display::DisplayErrorContext;

use super::Settings;
use crate::avatar::{self, AvatarId, FailureRecord, WEBP_TYPE};
use crate::clients::{CallError, Clients};
use crate::crunch::{self, CrunchError, Variant, VariantName};
use crate::metrics as m;

/// Every variant gets its WebP twin (SPEC "Content negotiation").
const TWINS: crunch::Outputs = crunch::Outputs { webp: true };

/// Why a job did not finish; decides what happens to the message.
#[derive(Debug, thiserror::Error)]
enum JobError {
    /// The input can never be crunched: record it and drop the message.
    #[error(transparent)]
    Permanent(#[from] CrunchError),
    /// The upload was deleted (or never existed): drop the message.
    #[error("the original is gone")]
    Gone,
    /// S3 or SQS trouble: let the message come back.
    #[error(transparent)]
    Transient(#[from] CallError),
    /// The crunch task died (a panic in a decoder): let it come back.
    #[error("the crunch task failed")]
    Task(#[from] tokio::task::JoinError),
}

pub async fn handle(clients: &Clients, settings: &Settings, message: Message) {
    let Some(receipt) = message.receipt_handle() else { return };
    let receives = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    let Some(id) = message.body().and_then(AvatarId::from_message) else {
        tracing::warn!(body = ?message.body(), "dropping a message that holds no avatar id");
        delete_message(clients, settings, receipt).await;
        return;
    };
    let started = Instant::now();
    let keepalive = tokio::spawn(extend_visibility(
        clients.clone(),
        settings.queue_url.clone(),
        receipt.to_owned(),
        settings.visibility_timeout,
    ));
    let result = crunch_one(clients, settings, &id).await;
    keepalive.abort();

    match result {
        Ok(()) => {
            metrics::histogram!(m::CRUNCH_SECONDS).record(started.elapsed().as_secs_f64());
            metrics::counter!(m::CRUNCHES, "outcome" => "ready").increment(1);
            tracing::info!(id = %id, elapsed_ms = started.elapsed().as_millis() as u64, "crunched");
            delete_message(clients, settings, receipt).await;
        }
        Err(JobError::Permanent(e)) => {
            metrics::counter!(m::CRUNCHES, "outcome" => "failed").increment(1);
            metrics::counter!(m::FAILURES, "reason" => e.reason()).increment(1);
            tracing::info!(id = %id, reason = e.reason(), error = %e, "upload cannot be crunched");
            let record = FailureRecord { reason: e.reason().to_owned(), message: e.to_string() };
            match write_failure(clients, &settings.private_bucket, &id, &record).await {
                Ok(()) => delete_message(clients, settings, receipt).await,
                Err(e) => tracing::warn!(id = %id, error = %e.detail(), "cannot record the failure; will retry"),
            }
        }
        Err(JobError::Gone) => {
            tracing::info!(id = %id, "original is gone (deleted upload); dropping the message");
            delete_message(clients, settings, receipt).await;
        }
        Err(e @ (JobError::Transient(_) | JobError::Task(_))) => {
            metrics::counter!(m::CRUNCHES, "outcome" => "retry").increment(1);
            let error = crate::clients::cause_chain(&e);
            tracing::warn!(id = %id, receives, %error, "crunch failed transiently; the message will be retried");
        }
    }
}

async fn crunch_one(clients: &Clients, settings: &Settings, id: &AvatarId) -> Result<(), JobError> {
    let s3 = &clients.s3;
    // No tombstone look first: a DELETE removes the original, and one still
    // under way is caught by the look after the PUTs, so asking here would
    // cost every job a round trip to save a crunch in a rare race.
    let got = s3.get_object().bucket(&settings.private_bucket).key(id.original_key()).send().await;
    let original = match got {
        Ok(out) => out.body.collect().await.map_err(CallError::on("reading the original"))?.into_bytes(),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
            if avatar::is_deleted(s3, &settings.private_bucket, id).await? {
                // Deleted, perhaps while an earlier receive of this message
                // was crunching: make sure nothing it wrote stays behind.
                // (An original gone without a tombstone, e.g. expired by a
                // lifecycle rule, leaves its variants alone.)
                avatar::delete_variants(s3, &settings.public_bucket, id).await?;
            }
            return Err(JobError::Gone);
        }
        Err(e) => return Err(CallError::new("fetching the original", e).into()),
    };

    let limits = settings.limits;
    let variants = {
        // Never closed, so `acquire` cannot fail; without a turn the crunch
        // would merely not wait.
        let _turn = settings.cpu.acquire().await.ok();
        tokio::task::spawn_blocking(move || crunch::crunch_with(&original, &limits, TWINS)).await??
    };

    // The default variant goes last: its presence is what "ready" means,
    // so a ready avatar always has every variant and every WebP twin. The
    // rest go up together, so a job waits for one durable PUT more, not six.
    let (last, first): (Vec<_>, Vec<_>) =
        variants.into_iter().flat_map(|v| uploads(id, v)).partition(|u| u.marks_ready);
    futures_util::future::try_join_all(first.into_iter().map(|u| put(clients, settings, u))).await?;
    for u in last {
        put(clients, settings, u).await?;
    }
    if deleted_meanwhile(clients, settings, id).await? {
        // A DELETE ran while this crunch did: take the variants down again.
        // Until they are gone the tombstone keeps them from being served.
        avatar::delete_variants(s3, &settings.public_bucket, id).await?;
        return Err(JobError::Gone);
    }
    Ok(())
}

/// One object the worker writes to the public bucket.
struct Upload {
    key: String,
    /// The default variant itself: written last.
    marks_ready: bool,
    content_type: &'static str,
    bytes: Vec<u8>,
}

/// A variant and, when the crunch made one, its WebP twin.
fn uploads(id: &AvatarId, v: Variant) -> impl Iterator<Item = Upload> {
    let twin =
        v.webp.map(|bytes| Upload { key: id.twin_key(v.name), marks_ready: false, content_type: WEBP_TYPE, bytes });
    let main = Upload {
        key: id.variant_key(v.name),
        marks_ready: v.name == VariantName::Default,
        content_type: v.content_type,
        bytes: v.bytes,
    };
    twin.into_iter().chain(std::iter::once(main))
}

async fn put(clients: &Clients, settings: &Settings, u: Upload) -> Result<(), CallError> {
    clients
        .s3
        .put_object()
        .bucket(&settings.public_bucket)
        .key(u.key)
        .content_type(u.content_type)
        .cache_control(avatar::CACHE_CONTROL)
        .body(ByteStream::from(u.bytes))
        .send()
        .await
        .map(|_| ())
        .map_err(CallError::on("uploading a variant"))
}

/// After the PUTs: was the upload deleted meanwhile? A tombstone says so;
/// so does a missing original (removed by hand, or by a DELETE from a
/// version without tombstones).
async fn deleted_meanwhile(clients: &Clients, settings: &Settings, id: &AvatarId) -> Result<bool, CallError> {
    let s3 = &clients.s3;
    let original_key = id.original_key();
    let (deleted, original) = tokio::try_join!(
        avatar::is_deleted(s3, &settings.private_bucket, id),
        avatar::exists(s3, &settings.private_bucket, &original_key),
    )?;
    Ok(deleted || !original)
}

/// Records a permanent failure, unless the upload was deleted meanwhile
/// (then the record is taken down again, as variants are).
pub(super) async fn write_failure(
    clients: &Clients,
    bucket: &str,
    id: &AvatarId,
    record: &FailureRecord,
) -> Result<(), CallError> {
    let body = serde_json::to_vec(record).map_err(CallError::on("encoding the failure record"))?;
    let s3 = &clients.s3;
    s3.put_object()
        .bucket(bucket)
        .key(id.failure_key())
        .content_type("application/json")
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(CallError::on("recording the failure"))?;
    if avatar::is_deleted(s3, bucket, id).await? {
        s3.delete_object()
            .bucket(bucket)
            .key(id.failure_key())
            .send()
            .await
            .map_err(CallError::on("removing the failure record of a deleted upload"))?;
    }
    Ok(())
}

async fn delete_message(clients: &Clients, settings: &Settings, receipt: &str) {
    if let Err(e) = clients.sqs.delete_message().queue_url(&settings.queue_url).receipt_handle(receipt).send().await {
        // The message will come back and be crunched again: harmless.
        tracing::warn!(error = %DisplayErrorContext(e), "deleting the message failed");
    }
}

/// Keeps the message invisible while a long crunch runs.
async fn extend_visibility(clients: Clients, queue_url: String, receipt: String, timeout: i32) {
    // Renew at half the timeout. A renewal gets a quarter of it to be
    // answered (the worker's own attempt bound is longer than a short
    // visibility timeout), so one that hangs is given up and the next one
    // still lands before the message reappears.
    let period = Duration::from_millis(u64::try_from(timeout).unwrap_or(1).max(1) * 500);
    loop {
        tokio::time::sleep(period).await;
        let call = clients
            .sqs
            .change_message_visibility()
            .queue_url(&queue_url)
            .receipt_handle(&receipt)
            .visibility_timeout(timeout)
            .send();
        match tokio::time::timeout(period / 2, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %DisplayErrorContext(e), "extending visibility failed"),
            Err(_) => tracing::warn!(within = ?period / 2, "extending visibility got no answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: VariantName, webp: Option<&[u8]>) -> Variant {
        Variant {
            name,
            bytes: b"jpeg".to_vec(),
            content_type: "image/jpeg",
            width: 1,
            height: 1,
            webp: webp.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn twins_go_up_beside_their_variants_and_only_the_default_marks_ready() {
        let id = AvatarId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let all: Vec<_> = [variant(VariantName::Default, Some(b"webp")), variant(VariantName::Small, None)]
            .into_iter()
            .flat_map(|v| uploads(&id, v))
            .map(|u| (u.key, u.content_type, u.marks_ready, u.bytes))
            .collect();
        let id = id.as_str();
        assert_eq!(
            all,
            [
                (format!("{id}.webp"), WEBP_TYPE, false, b"webp".to_vec()),
                (id.to_owned(), "image/jpeg", true, b"jpeg".to_vec()),
                (format!("{id}_small"), "image/jpeg", false, b"jpeg".to_vec()),
            ]
        );
    }
}
