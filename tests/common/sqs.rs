//! SQS helpers shared by the SQS test files.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use crunchbox::cli::Role;

use super::TestServer;

/// A server running only the SQS role, and an SDK client for it.
pub async fn server() -> (TestServer, Client) {
    let server = TestServer::start(&[Role::Sqs]).await;
    let client = server.sqs().await;
    (server, client)
}

/// Creates `name` with `attrs`; returns its URL.
pub async fn create(client: &Client, name: &str, attrs: &[(QueueAttributeName, &str)]) -> String {
    let mut req = client.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), *v);
    }
    req.send().await.expect("create queue").queue_url.expect("queue url")
}
