//! The legacy Query protocol (`Action=…` form parameters, XML answers).
//!
//! Requests are turned into the JSON protocol's input shape and answers are
//! rendered from the JSON protocol's output shape, so the actions know only
//! one shape. The renames below are the whole difference between the two.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use super::error::{Code, SqsError};
use super::params::Input;

const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// Flattened maps in the Query protocol: `Attribute.N.Name/Value` etc.
/// `(query name, key field, JSON name)`.
const MAPS: [(&str, &str, &str); 4] = [
    ("Attribute", "Name", "Attributes"),
    ("MessageAttribute", "Name", "MessageAttributes"),
    ("MessageSystemAttribute", "Name", "MessageSystemAttributes"),
    ("Tag", "Key", "Tags"),
];

/// Flattened lists of strings: `AttributeName.N`.
const LISTS: [(&str, &str); 6] = [
    ("AttributeName", "AttributeNames"),
    ("AWSAccountId", "AWSAccountIds"),
    ("ActionName", "Actions"),
    ("MessageAttributeName", "MessageAttributeNames"),
    ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
    ("TagKey", "TagKeys"),
];

/// Dotted parts a parameter name may have; AWS's deepest is 7
/// (`SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringListValue.1`).
const MAX_NAME_DEPTH: usize = 12;

/// A parsed `A.1.B=…` parameter tree.
#[derive(Debug, Default)]
struct Node {
    value: Option<String>,
    children: BTreeMap<String, Node>,
}

/// The action and its input, from the query string and a form body.
pub fn parse(parts: &Parts, body: &[u8]) -> Result<(String, Input), SqsError> {
    let mut root = Node::default();
    let mut action = None;
    let query = parts.uri.query().unwrap_or("").as_bytes();
    for (k, v) in form_urlencoded::parse(query).chain(form_urlencoded::parse(body)) {
        // A name given twice would make the request mean what its last
        // copy says, while the signature's canonical form sorts the copies:
        // reordering them would change the meaning, not the signature.
        let twice = || SqsError::invalid(format!("The parameter {k:.64} is given more than once."));
        if k == "Action" {
            if action.replace(v.into_owned()).is_some() {
                return Err(twice());
            }
            continue;
        }
        // The tree is converted (and dropped) recursively: bound its depth
        // so a name of many dots cannot overflow the stack.
        if k.split('.').nth(MAX_NAME_DEPTH).is_some() {
            return Err(SqsError::invalid(format!("The parameter name {k:.64} has too many parts.")));
        }
        let mut node = &mut root;
        for seg in k.split('.') {
            node = node.children.entry(seg.to_owned()).or_default();
        }
        if node.value.replace(v.into_owned()).is_some() {
            return Err(twice());
        }
    }
    let action = action.ok_or_else(|| SqsError::missing("Action"))?;
    let mut input = convert(root);
    // CreateQueue spells its tags `tags` in JSON; TagQueue spells them `Tags`.
    if action == "CreateQueue"
        && let Some(tags) = input.remove("Tags")
    {
        input.insert("tags".into(), tags);
    }
    Ok((action, Input(input)))
}

fn by_index(children: BTreeMap<String, Node>) -> Vec<Node> {
    let mut items: Vec<(u64, Node)> =
        children.into_iter().filter_map(|(k, n)| k.parse::<u64>().ok().map(|i| (i, n))).collect();
    items.sort_by_key(|(i, _)| *i);
    items.into_iter().map(|(_, n)| n).collect()
}

fn convert(node: Node) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, mut child) in node.children {
        if let Some((_, key_field, json_name)) = MAPS.iter().find(|(q, _, _)| *q == name) {
            let mut map = Map::new();
            for mut entry in by_index(child.children) {
                let key = entry.children.remove(*key_field).and_then(|n| n.value);
                let value = entry.children.remove("Value").map(leaf_or_struct);
                if let (Some(k), Some(v)) = (key, value) {
                    map.insert(k, v);
                }
            }
            out.insert((*json_name).to_owned(), Value::Object(map));
        } else if let Some((_, json_name)) = LISTS.iter().find(|(q, _)| *q == name) {
            let items = by_index(child.children).into_iter().filter_map(|n| n.value).map(Value::String).collect();
            out.insert((*json_name).to_owned(), Value::Array(items));
        } else if name.ends_with("BatchRequestEntry") {
            let items = by_index(child.children).into_iter().map(|n| Value::Object(convert(n))).collect();
            out.insert("Entries".to_owned(), Value::Array(items));
        } else if child.children.is_empty() {
            out.insert(name, child.value.take().map(Value::String).unwrap_or(Value::Null));
        } else {
            out.insert(name, Value::Object(convert(child)));
        }
    }
    out
}

fn leaf_or_struct(n: Node) -> Value {
    if n.children.is_empty() { n.value.map(Value::String).unwrap_or(Value::Null) } else { Value::Object(convert(n)) }
}

/// Renders an action's result (in the JSON protocol's shape) as XML.
pub fn respond(action: &str, result: Result<Value, SqsError>, request_id: &str) -> Response<s3s::Body> {
    let (status, xml) = match result {
        Ok(v) => {
            let mut inner = String::new();
            if let Value::Object(m) = &v {
                render_members(action, m, &mut inner);
            }
            let result = if inner.is_empty() && v.as_object().is_none_or(Map::is_empty) {
                String::new()
            } else {
                format!("<{action}Result>{inner}</{action}Result>")
            };
            let xml = format!(
                "<?xml version=\"1.0\"?><{action}Response xmlns=\"{XMLNS}\">{result}<ResponseMetadata><RequestId>\
                 {request_id}</RequestId></ResponseMetadata></{action}Response>"
            );
            (StatusCode::OK, xml)
        }
        Err(e) => (e.code.status(), error_xml(e.code, &e.message, request_id)),
    };
    let mut resp = Response::new(s3s::Body::from(Bytes::from(xml)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

fn error_xml(code: Code, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}\
         </Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        code.fault(),
        code.query_code(),
        escape(message)
    )
}

fn render_members(action: &str, m: &Map<String, Value>, out: &mut String) {
    for (name, value) in m {
        match (name.as_str(), value) {
            ("Attributes", Value::Object(map)) => render_map(map, "Attribute", "Name", out),
            ("MessageAttributes", Value::Object(map)) => render_map(map, "MessageAttribute", "Name", out),
            ("Tags", Value::Object(map)) => render_map(map, "Tag", "Key", out),
            ("QueueUrls" | "queueUrls", Value::Array(items)) => render_list(items, "QueueUrl", action, out),
            ("Messages", Value::Array(items)) => render_list(items, "Message", action, out),
            // Batch successes and ListMessageMoveTasks's results.
            ("Successful" | "Results", Value::Array(items)) => {
                let tag = format!("{action}ResultEntry");
                render_list(items, &tag, action, out);
            }
            ("Failed", Value::Array(items)) => render_list(items, "BatchResultErrorEntry", action, out),
            (_, v) => render_element(name, v, action, out),
        }
    }
}

fn render_map(map: &Map<String, Value>, tag: &str, key_field: &str, out: &mut String) {
    for (k, v) in map {
        out.push_str(&format!("<{tag}><{key_field}>{}</{key_field}>", escape(k)));
        render_element("Value", v, "", out);
        out.push_str(&format!("</{tag}>"));
    }
}

fn render_list(items: &[Value], tag: &str, action: &str, out: &mut String) {
    for item in items {
        render_element(tag, item, action, out);
    }
}

fn render_element(tag: &str, v: &Value, action: &str, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            out.push_str(&format!("<{tag}>"));
            render_members(action, m, out);
            out.push_str(&format!("</{tag}>"));
        }
        Value::Array(items) => render_list(items, tag, action, out),
        Value::String(s) => out.push_str(&format!("<{tag}>{}</{tag}>", escape(s))),
        other => out.push_str(&format!("<{tag}>{other}</{tag}>")),
    }
}

/// XML text escaping that also keeps `\r` (XML parsers would fold it).
fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).replace('\r', "&#xD;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_body(body: &str) -> (String, Value) {
        let parts = http::Request::post("/").body(()).unwrap().into_parts().0;
        let (action, input) = parse(&parts, body.as_bytes()).unwrap();
        (action, Value::Object(input.0))
    }

    #[test]
    fn maps_lists_and_entries_take_the_json_shape() {
        let (action, v) = parse_body(
            "Action=SendMessageBatch&QueueUrl=u&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.\
             2.MessageBody=y&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=x&\
             SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k&SendMessageBatchRequestEntry.1.\
             MessageAttribute.1.Value.StringValue=v&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.\
             DataType=String",
        );
        assert_eq!(action, "SendMessageBatch");
        assert_eq!(v["Entries"][0]["Id"], "a");
        assert_eq!(v["Entries"][1]["Id"], "b");
        assert_eq!(v["Entries"][0]["MessageAttributes"]["k"]["StringValue"], "v");
        let (_, v) = parse_body("Action=ReceiveMessage&AttributeName.1=All&MaxNumberOfMessages=5");
        assert_eq!(v["AttributeNames"][0], "All");
        assert_eq!(v["MaxNumberOfMessages"], "5");
    }

    #[test]
    fn renders_flattened_xml() {
        let out = serde_json::json!({"Messages": [{"Body": "a<b", "Attributes": {"SenderId": "x"}}]});
        let resp = respond("ReceiveMessage", Ok(out), "rid");
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
