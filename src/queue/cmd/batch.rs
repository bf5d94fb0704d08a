//! What every batch action checks before touching an entry, and how a
//! failed entry is reported.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::queue::error::{Code, SqsError};
use crate::queue::params::Input;

/// AWS's limit on entries per batch request.
pub const MAX_ENTRIES: usize = 10;

/// Checks count, id format and distinctness; returns the entries.
pub fn entries(input: &Input, entry_name: &str) -> Result<Vec<Input>, SqsError> {
    let entries = input.entries("Entries")?;
    if entries.is_empty() {
        return Err(SqsError::new(
            Code::EmptyBatchRequest,
            format!("There should be at least one {entry_name} in the request."),
        ));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(SqsError::new(
            Code::TooManyEntriesInBatchRequest,
            format!("Maximum number of entries per request are {MAX_ENTRIES}. You have sent {}.", entries.len()),
        ));
    }
    let mut seen = HashSet::new();
    for e in &entries {
        let id = e.required_str("Id")?;
        let valid =
            (1..=80).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(SqsError::new(
                Code::InvalidBatchEntryId,
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at \
                 most 80 letters long.",
            ));
        }
        if !seen.insert(id.to_owned()) {
            return Err(SqsError::new(Code::BatchEntryIdsNotDistinct, format!("Id {id} repeated.")));
        }
    }
    Ok(entries)
}

/// A `BatchResultErrorEntry`.
pub fn failed(id: &str, e: &SqsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": e.code.fault() == "Sender",
        "Code": e.code.query_code(),
        "Message": e.message,
    })
}

/// `{"Successful": [...], "Failed": [...]}`.
pub fn result(successful: Vec<Value>, failed: Vec<Value>) -> Value {
    json!({ "Successful": successful, "Failed": failed })
}
