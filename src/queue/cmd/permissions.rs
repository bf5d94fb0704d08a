//! AddPermission and RemovePermission. AWS keeps each grant as one statement
//! of the queue's `Policy` attribute, labelled by its `Sid`, so what
//! GetQueueAttributes shows and what these actions change are one document.

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::queue::error::{Code, SqsError};
use crate::queue::params::Input;

/// The actions a grant may name (without the `SQS:` prefix).
const GRANTABLE: [&str; 9] = [
    "*",
    "ChangeMessageVisibility",
    "DeleteMessage",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "SendMessage",
];

/// AWS's cap on actions in one AddPermission.
const MAX_ACTIONS: usize = 7;

/// Up to 80 alphanumerics, hyphens and underscores.
fn valid_label(label: &str) -> bool {
    (1..=80).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One value, or a list when there are several (AWS's own spelling).
fn one_or_many(items: Vec<String>) -> Value {
    match <[String; 1]>::try_from(items) {
        Ok([one]) => Value::String(one),
        Err(many) => many.into_iter().map(Value::String).collect(),
    }
}

/// The queue's policy as an object with a `Statement` list; a new one when
/// it has none (SetQueueAttributes accepts only an object).
fn policy(current: Option<&String>, id: &str) -> Map<String, Value> {
    let parsed = current.and_then(|p| serde_json::from_str::<Value>(p).ok());
    let mut doc = match parsed {
        Some(Value::Object(doc)) => doc,
        _ => Map::from_iter([("Version".to_owned(), json!("2012-10-17")), ("Id".to_owned(), json!(id))]),
    };
    // IAM's grammar allows one statement without a list around it.
    let statement = match doc.remove("Statement") {
        Some(Value::Array(list)) => Value::Array(list),
        Some(one @ Value::Object(_)) => Value::Array(vec![one]),
        _ => Value::Array(Vec::new()),
    };
    doc.insert("Statement".into(), statement);
    doc
}

fn statements(doc: &mut Map<String, Value>) -> &mut Vec<Value> {
    match doc.get_mut("Statement") {
        Some(Value::Array(list)) => list,
        _ => unreachable!("policy() always leaves a Statement list"),
    }
}

fn has_label(statements: &[Value], label: &str) -> bool {
    statements.iter().any(|s| s.get("Sid").and_then(Value::as_str) == Some(label))
}

fn label_error(label: &str, reason: &str) -> SqsError {
    SqsError::invalid(format!("Value {label} for parameter Label is invalid. Reason: {reason}"))
}

pub async fn add(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let label = input.required_str("Label")?;
    let accounts = input.str_list("AWSAccountIds")?;
    let actions = input.str_list("Actions")?;
    if !valid_label(label) {
        return Err(label_error(
            label,
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    if accounts.is_empty() {
        return Err(SqsError::invalid("Value [] for parameter PrincipalId is invalid. Reason: Unable to verify."));
    }
    if actions.is_empty() {
        return Err(SqsError::missing("Actions"));
    }
    if actions.len() > MAX_ACTIONS {
        return Err(SqsError::new(
            Code::OverLimit,
            format!("{} Actions were found, maximum allowed is {MAX_ACTIONS}.", actions.len()),
        ));
    }
    if let Some(bad) = actions.iter().find(|a| !GRANTABLE.contains(&a.as_str())) {
        return Err(SqsError::invalid(format!(
            "Value SQS:{bad} for parameter ActionName is invalid. Reason: Only the queue owner is allowed to invoke \
             this action."
        )));
    }
    let arn = ctx.queue_arn(&q.name);
    let statement = json!({
        "Sid": label,
        "Effect": "Allow",
        "Principal": {"AWS": one_or_many(accounts.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect())},
        "Action": one_or_many(actions.iter().map(|a| format!("SQS:{a}")).collect()),
        "Resource": arn,
    });
    ctx.store()
        .update_meta(&q, |meta| {
            let mut doc = policy(meta.attributes.get("Policy"), &format!("{arn}/SQSDefaultPolicy"));
            let list = statements(&mut doc);
            if has_label(list, label) {
                return Err(label_error(label, "Already exists."));
            }
            list.push(statement);
            meta.attributes.insert("Policy".into(), Value::Object(doc).to_string());
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

pub async fn remove(ctx: &Ctx<'_>, input: &Input) -> Result<Value, SqsError> {
    let q = ctx.queue(input)?;
    let label = input.required_str("Label")?;
    let arn = ctx.queue_arn(&q.name);
    ctx.store()
        .update_meta(&q, |meta| {
            let mut doc = policy(meta.attributes.get("Policy"), &format!("{arn}/SQSDefaultPolicy"));
            let list = statements(&mut doc);
            if !has_label(list, label) {
                return Err(label_error(label, "can't find label on existing policy."));
            }
            list.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(label));
            // A policy left without statements is no policy (as AWS shows it).
            if list.is_empty() {
                meta.attributes.remove("Policy");
            } else {
                meta.attributes.insert("Policy".into(), Value::Object(doc).to_string());
            }
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(valid_label("grant_1-a"));
        assert!(!valid_label(""));
        assert!(!valid_label("has space"));
        assert!(!valid_label(&"x".repeat(81)));
    }

    #[test]
    fn one_value_is_not_a_list() {
        assert_eq!(one_or_many(vec!["a".into()]), json!("a"));
        assert_eq!(one_or_many(vec!["a".into(), "b".into()]), json!(["a", "b"]));
    }

    #[test]
    fn policy_keeps_foreign_statements() {
        let existing = r#"{"Version":"2012-10-17","Statement":[{"Sid":"mine"}]}"#.to_owned();
        let mut doc = policy(Some(&existing), "id");
        assert!(has_label(statements(&mut doc), "mine"));
        let mut fresh = policy(None, "id");
        assert!(statements(&mut fresh).is_empty());
        assert_eq!(fresh["Id"], "id");
        let single = r#"{"Statement":{"Sid":"one"}}"#.to_owned();
        let mut doc = policy(Some(&single), "id");
        assert!(has_label(statements(&mut doc), "one"), "a lone statement is kept");
    }
}
