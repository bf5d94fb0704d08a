//! Inputs the fuzzers (`fuzz/`) found, kept so they stay fixed. Each test
//! names the target that found it; the inputs are built here rather than
//! stored as files so they read as what they are.

/// A request head for the SQS protocol parsers.
fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

/// sqs_protocols: a Query parameter whose name has 100 000 dots nested the
/// parameter tree that deep, and converting (and dropping) it recursed
/// until the stack overflowed, killing the process.
#[test]
fn sqs_query_deeply_dotted_parameter_names() {
    let key = "A.".repeat(100_000);
    let body = format!("Action=SendMessage&{key}=1");
    let p = parts("POST", "/", &[("content-type", "application/x-www-form-urlencoded")]);
    std::thread::Builder::new()
        // A tokio worker's default stack.
        .stack_size(2 << 20)
        .spawn(move || crunchbox::queue::QueueService::fuzz_protocols(&p, body.as_bytes()))
        .expect("thread")
        .join()
        .expect("no panic, no overflow");
}

/// sqs_protocols: deeply nested JSON stays within serde_json's recursion
/// limit and is refused, not crashed on.
#[test]
fn sqs_json_deeply_nested_body() {
    let body = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let p = parts("POST", "/", &[("x-amz-target", "AmazonSQS.SendMessage")]);
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || crunchbox::queue::QueueService::fuzz_protocols(&p, body.as_bytes()))
        .expect("thread")
        .join()
        .expect("no panic, no overflow");
}
