//! Typed reads of an action's input. Both wire protocols hand actions the
//! JSON protocol's shape; Query strings arrive as strings, so numbers and
//! booleans accept either spelling.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::SqsError;

/// An action's input: a JSON object.
#[derive(Debug, Clone, Default)]
pub struct Input(pub Map<String, Value>);

impl Input {
    pub fn from_value(v: Value) -> Result<Self, SqsError> {
        match v {
            Value::Object(m) => Ok(Input(m)),
            Value::Null => Ok(Input::default()),
            _ => Err(SqsError::new(super::error::Code::Serialization, "The request body must be a JSON object.")),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>, SqsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    pub fn required_str(&self, key: &str) -> Result<&str, SqsError> {
        self.str(key)?.ok_or_else(|| SqsError::missing(key))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, SqsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| wrong_type(key)),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| wrong_type(key)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    /// An integer parameter that must lie in `range`.
    pub fn int_in(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, SqsError> {
        match self.int(key)? {
            Some(v) if !range.contains(&v) => Err(SqsError::invalid(format!(
                "Value {v} for parameter {key} is invalid. Reason: Must be between {} and {}, if provided.",
                range.start(),
                range.end()
            ))),
            other => Ok(other),
        }
    }

    pub fn str_list(&self, key: &str) -> Result<Vec<String>, SqsError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                items.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| wrong_type(key))).collect()
            }
            Some(_) => Err(wrong_type(key)),
        }
    }

    pub fn str_map(&self, key: &str) -> Result<BTreeMap<String, String>, SqsError> {
        match self.get(key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(n) => Ok((k.clone(), n.to_string())),
                    Value::Bool(b) => Ok((k.clone(), b.to_string())),
                    _ => Err(wrong_type(key)),
                })
                .collect(),
            Some(_) => Err(wrong_type(key)),
        }
    }

    pub fn object(&self, key: &str) -> Result<Option<&Map<String, Value>>, SqsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    /// A list of structures (batch entries).
    pub fn entries(&self, key: &str) -> Result<Vec<Input>, SqsError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| Input::from_value(v.clone())).collect(),
            Some(_) => Err(wrong_type(key)),
        }
    }
}

fn wrong_type(key: &str) -> SqsError {
    SqsError::invalid(format!("Value for parameter {key} is invalid."))
}
