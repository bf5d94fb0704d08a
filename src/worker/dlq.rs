//! Drains the dead-letter queue: a message lands there after
//! `max_receive_count` transient failures, and its upload then reads as
//! failed. Writing the record here (not in the job) means it is written
//! even when S3 was down during every attempt.

use std::sync::Arc;

use aws_smithy_types::error::display::DisplayErrorContext;

use super::{RECEIVE_BACKOFF, Settings, WAIT_SECONDS, job};
use crate::avatar::{AvatarId, FailureRecord};
use crate::clients::Clients;
use crate::metrics as m;
use crate::shutdown::Shutdown;

pub async fn drain(clients: Clients, settings: Arc<Settings>, mut shutdown: Shutdown) {
    loop {
        let receive = clients
            .sqs
            .receive_message()
            .queue_url(&settings.dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(WAIT_SECONDS)
            .send();
        let out = tokio::select! {
            out = receive => out,
            () = shutdown.wait() => return,
        };
        let messages = match out {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(e), "dead-letter receive failed");
                tokio::select! {
                    () = tokio::time::sleep(RECEIVE_BACKOFF) => continue,
                    () = shutdown.wait() => return,
                }
            }
        };
        for message in messages {
            let Some(receipt) = message.receipt_handle() else { continue };
            if let Some(id) = message.body().and_then(AvatarId::from_message) {
                let record = FailureRecord {
                    reason: "dead_lettered".into(),
                    message: format!(
                        "crunching failed {} times because storage or the queue was unavailable",
                        settings.max_receive_count
                    ),
                };
                if let Err(e) = job::write_failure(&clients, &settings.private_bucket, &id, &record).await {
                    tracing::warn!(id = %id, error = %e.detail(), "cannot record a dead-lettered upload; will retry");
                    continue;
                }
                metrics::counter!(m::FAILURES, "reason" => "dead_lettered").increment(1);
                tracing::warn!(id = %id, "upload dead-lettered and marked failed");
            }
            let _ = clients.sqs.delete_message().queue_url(&settings.dlq_url).receipt_handle(receipt).send().await;
        }
    }
}
