//! SQS's error codes, and how each protocol spells them.
//!
//! One [`SqsError`] carries a [`Code`]; the Query protocol sends the code's
//! legacy name in `<Code>`, the JSON protocol sends the shape name in
//! `__type` and the legacy name in `x-amzn-query-error`, which is what
//! aws-sdk-rust and botocore match typed errors on.

use http::StatusCode;

use super::store::StoreError;
use crate::endpoint::sigv4::AuthError;

/// Every error SQS answers with. Names are AWS's shape names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    QueueDoesNotExist,
    QueueNameExists,
    QueueDeletedRecently,
    PurgeQueueInProgress,
    ReceiptHandleIsInvalid,
    MessageNotInflight,
    InvalidMessageContents,
    TooManyEntriesInBatchRequest,
    EmptyBatchRequest,
    BatchEntryIdsNotDistinct,
    InvalidBatchEntryId,
    BatchRequestTooLong,
    UnsupportedOperation,
    ResourceNotFound,
    InvalidAttributeName,
    InvalidAttributeValue,
    OverLimit,
    InvalidParameterValue,
    MissingParameter,
    InvalidAction,
    UnknownOperation,
    Serialization,
    Auth(&'static str, u16),
    InternalFailure,
}

impl Code {
    /// The Query protocol's `<Code>` (and the first half of `x-amzn-query-error`).
    pub fn query_code(self) -> &'static str {
        match self {
            Code::QueueDoesNotExist => "AWS.SimpleQueueService.NonExistentQueue",
            Code::QueueNameExists => "QueueAlreadyExists",
            Code::QueueDeletedRecently => "AWS.SimpleQueueService.QueueDeletedRecently",
            Code::PurgeQueueInProgress => "AWS.SimpleQueueService.PurgeQueueInProgress",
            Code::ReceiptHandleIsInvalid => "ReceiptHandleIsInvalid",
            Code::MessageNotInflight => "AWS.SimpleQueueService.MessageNotInflight",
            Code::InvalidMessageContents => "InvalidMessageContents",
            Code::TooManyEntriesInBatchRequest => "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            Code::EmptyBatchRequest => "AWS.SimpleQueueService.EmptyBatchRequest",
            Code::BatchEntryIdsNotDistinct => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            Code::InvalidBatchEntryId => "AWS.SimpleQueueService.InvalidBatchEntryId",
            Code::BatchRequestTooLong => "AWS.SimpleQueueService.BatchRequestTooLong",
            Code::UnsupportedOperation => "AWS.SimpleQueueService.UnsupportedOperation",
            Code::ResourceNotFound => "ResourceNotFoundException",
            Code::InvalidAttributeName => "InvalidAttributeName",
            Code::InvalidAttributeValue => "InvalidAttributeValue",
            Code::OverLimit => "OverLimit",
            Code::InvalidParameterValue => "InvalidParameterValue",
            Code::MissingParameter => "MissingParameter",
            Code::InvalidAction => "InvalidAction",
            Code::UnknownOperation => "UnknownOperationException",
            Code::Serialization => "SerializationException",
            Code::Auth(code, _) => code,
            Code::InternalFailure => "InternalFailure",
        }
    }

    /// The JSON protocol's `__type` shape name.
    pub fn shape(self) -> &'static str {
        match self {
            Code::QueueDoesNotExist => "QueueDoesNotExist",
            Code::QueueNameExists => "QueueNameExists",
            Code::QueueDeletedRecently => "QueueDeletedRecently",
            Code::PurgeQueueInProgress => "PurgeQueueInProgress",
            Code::MessageNotInflight => "MessageNotInflight",
            Code::TooManyEntriesInBatchRequest => "TooManyEntriesInBatchRequest",
            Code::EmptyBatchRequest => "EmptyBatchRequest",
            Code::BatchEntryIdsNotDistinct => "BatchEntryIdsNotDistinct",
            Code::InvalidBatchEntryId => "InvalidBatchEntryId",
            Code::BatchRequestTooLong => "BatchRequestTooLong",
            Code::UnsupportedOperation => "UnsupportedOperation",
            other => other.query_code(),
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::Auth(_, status) => StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            Code::InternalFailure => StatusCode::INTERNAL_SERVER_ERROR,
            // AddPermission's "n Actions were found" answers 403, as on AWS;
            // these statuses are the ones AWS's service model gives.
            Code::OverLimit | Code::PurgeQueueInProgress => StatusCode::FORBIDDEN,
            Code::ReceiptHandleIsInvalid | Code::ResourceNotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// `Sender` or `Receiver`: whose fault it was.
    pub fn fault(self) -> &'static str {
        if self == Code::InternalFailure { "Receiver" } else { "Sender" }
    }
}

/// An SQS error answer: a code and AWS-style human text.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct SqsError {
    pub code: Code,
    pub message: String,
}

impl SqsError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidParameterValue, message)
    }

    pub fn missing(param: &str) -> Self {
        Self::new(Code::MissingParameter, format!("The request must contain the parameter {param}."))
    }

    pub fn no_queue() -> Self {
        Self::new(Code::QueueDoesNotExist, "The specified queue does not exist.")
    }
}

impl From<StoreError> for SqsError {
    #[track_caller]
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoQueue => SqsError::no_queue(),
            StoreError::InvalidHandle(h) => SqsError::new(
                Code::ReceiptHandleIsInvalid,
                format!("The input receipt handle \"{h}\" is not a valid receipt handle."),
            ),
            StoreError::NotAvailable(h) => SqsError::invalid(format!(
                "Value {h} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not \
                 available for visibility timeout change."
            )),
            StoreError::VisibilityTooLong => SqsError::invalid(
                "Value for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message \
                 is beyond the limit [43200 seconds]",
            ),
            StoreError::NotInflight => SqsError::new(Code::MessageNotInflight, "The message is not in flight."),
            StoreError::MoveRunning => SqsError::new(
                Code::UnsupportedOperation,
                "There is already a task running. Only one active task is allowed for a source queue arn at a given \
                 time.",
            ),
            StoreError::NoMoveTask => SqsError::new(Code::ResourceNotFound, "Task does not exist."),
            StoreError::MoveNotRunning => {
                SqsError::new(Code::UnsupportedOperation, "Only a task in RUNNING status can be cancelled.")
            }
            other => {
                let at = std::panic::Location::caller();
                tracing::error!(error = %other, %at, "queue store failed");
                SqsError::new(Code::InternalFailure, "We encountered an internal error. Please try again.")
            }
        }
    }
}

impl From<&AuthError> for SqsError {
    fn from(e: &AuthError) -> Self {
        SqsError::new(Code::Auth(e.code(), e.status().as_u16()), e.to_string())
    }
}
