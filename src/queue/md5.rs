//! The MD5 digests SQS returns so clients can check what it stored:
//! `MD5OfMessageBody` and `MD5OfMessageAttributes` (computed exactly as AWS
//! documents: attributes sorted by name, each length-prefixed).

use std::collections::BTreeMap;

use base64::Engine;
use md5::{Digest, Md5};

use super::store::model::AttrValue;

/// Hex MD5 of the body's UTF-8 bytes.
pub fn of_body(body: &str) -> String {
    hex::encode(Md5::digest(body.as_bytes()))
}

/// Hex MD5 of message attributes, or `None` when there are none.
/// Binary values are base64 in `AttrValue` and hashed decoded.
pub fn of_attributes(attributes: &BTreeMap<String, AttrValue>) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut h = Md5::new();
    fn put(h: &mut Md5, bytes: &[u8]) {
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    }
    // BTreeMap iterates in name order, as AWS requires.
    for (name, value) in attributes {
        put(&mut h, name.as_bytes());
        put(&mut h, value.data_type.as_bytes());
        if value.data_type.starts_with("Binary") {
            let raw = value
                .binary_value
                .as_deref()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default();
            h.update([2u8]);
            put(&mut h, &raw);
        } else {
            h.update([1u8]);
            put(&mut h, value.string_value.as_deref().unwrap_or("").as_bytes());
        }
    }
    Some(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str, v: &str) -> AttrValue {
        AttrValue { data_type: t.into(), string_value: Some(v.into()), binary_value: None }
    }

    #[test]
    fn body_digest() {
        assert_eq!(of_body("hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn attribute_digest_matches_aws() {
        // Digest moto (an independent implementation of AWS's algorithm)
        // returned for the same attributes in the e2e diff.
        let mut attrs = BTreeMap::new();
        attrs.insert("s".to_owned(), s("String", "v1"));
        attrs.insert("n".to_owned(), s("Number", "42"));
        attrs.insert("c".to_owned(), s("String.custom", "ünïcode"));
        attrs.insert(
            "b".to_owned(),
            AttrValue { data_type: "Binary".into(), string_value: None, binary_value: Some("AAH/".into()) },
        );
        assert_eq!(of_attributes(&attrs).as_deref(), Some("330829ea21402f28aecc40293c83fe20"));
        assert_eq!(of_attributes(&BTreeMap::new()), None);
    }
}
