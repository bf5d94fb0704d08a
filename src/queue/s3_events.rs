//! The embedded SQS as the destination of S3 event notifications: S3's
//! delivery task hands each record here, as AWS's S3 sends to SQS. A
//! record goes in like any sent message (the queue's delay applies) and is
//! acknowledged to S3 only once durable, so the outbox entry is dropped
//! only after the message is safe.

use futures_util::future::BoxFuture;

use super::QueueService;
use super::md5;
use super::store::StoreError;
use super::store::model::StoredMessage;
use crate::s3compat::events::deliver::{EventSink, SinkError};

/// The sender S3's messages carry (`SenderId`), as AWS shows its service principal.
const S3_SENDER: &str = "AIDAIS3EVENTNOTIFICATIONS";

impl EventSink for QueueService {
    fn accepts(&self, queue_arn: &str) -> bool {
        let Some(q) = self.inner.store.queue_by_arn(queue_arn) else { return false };
        // AWS sends S3 events to standard queues only.
        q.meta().is_ok_and(|(_, settings)| !settings.fifo)
    }

    fn send(&self, queue_arn: &str, body: String) -> Result<bool, SinkError> {
        let store = &self.inner.store;
        let Some(q) = store.queue_by_arn(queue_arn) else { return Ok(false) };
        let delay = match q.meta() {
            Ok((_, settings)) => settings.delay_secs,
            Err(StoreError::NoQueue) => return Ok(false),
            Err(e) => return Err(SinkError(e.to_string())),
        };
        let msg = StoredMessage {
            id: uuid::Uuid::new_v4().to_string(),
            md5_body: md5::of_body(&body),
            body,
            attributes: Default::default(),
            system_attributes: Default::default(),
            md5_attributes: None,
            md5_system: None,
            sent_at: 0,
            sender_id: S3_SENDER.to_owned(),
            group_id: None,
            dedup_id: None,
            sequence_number: None,
            dlq_source_arn: None,
        };
        match store.send(&q, msg, delay) {
            Ok(_) => Ok(true),
            Err(StoreError::NoQueue) => Ok(false),
            Err(e) => Err(SinkError(e.to_string())),
        }
    }

    fn durable(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { self.inner.store.durable(0).await.map_err(|e| SinkError(e.to_string())) })
    }
}
