//! SQS round trips per second (send + receive + delete of one message):
//! crunchbox's embedded SQS, durable (a send or delete is answered only after
//! a sled flush), against moto's server, side by side in one run.
//!
//!   cargo bench --bench sqs
//!
//! Four shapes: 1 and 16 concurrent producer/consumer pairs, messages sent,
//! received and deleted one at a time or in batches of 10. The loop is
//! closed (producers stay a few batches ahead), so queues stay short. Both servers get
//! the same load generator: reqwest speaking the JSON protocol, signed with
//! aws-sigv4. crunchbox runs in-process on its own runtime (so its flush
//! counter can be read); moto runs as `$CRUNCHBOX_TOOLS/venv/bin/moto_server`. Also
//! printed: sled flushes (fsyncs) per acknowledged message (group commit).

#[path = "tools.rs"]
mod tools;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::{Value, json};

const ACCESS: &str = "crunchbox";
const SECRET: &str = "crunchbox-secret";
const WARMUP: Duration = Duration::from_millis(500);
const RUN: Duration = Duration::from_millis(3000);
const SHAPES: [(usize, usize); 4] = [(1, 1), (1, 10), (16, 1), (16, 10)];
/// How many batches per pair producers may run ahead of consumers.
const BACKLOG_BATCHES: usize = 4;

/// A lean JSON-protocol SQS client.
#[derive(Clone)]
struct Sqs {
    http: reqwest::Client,
    endpoint: String,
    creds: Credentials,
}

impl Sqs {
    fn new(endpoint: &str) -> Self {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("http client");
        Self { http, endpoint: endpoint.to_owned(), creds: Credentials::new(ACCESS, SECRET, None, None, "bench") }
    }

    async fn call(&self, action: &str, input: Value) -> Result<Value, String> {
        let body = serde_json::to_vec(&input).map_err(|e| e.to_string())?;
        let target = format!("AmazonSQS.{action}");
        let url = format!("{}/", self.endpoint);
        let headers = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", target.as_str())];
        let identity = self.creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sqs")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new("POST", &url, headers.iter().copied(), SignableBody::Bytes(&body))
            .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
        let mut req = self.http.post(&url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        for (k, v) in instructions.headers() {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{action}: {status}: {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn wait_port(port: u16) -> bool {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Option<(Moto, String)> {
    // The e2e venv lives with the other cached tools (see .ci/run); an
    // in-tree `e2e/.venv` from older checkouts still works.
    let tools = tools::tools_dir();
    let exe = [
        tools.join("venv/bin/moto_server"),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/.venv/bin/moto_server"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| tools.join("venv/bin/moto_server"));
    let port = free_port();
    let child = Command::new(&exe)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("moto_server not started ({}): {e}", exe.display()))
        .ok()?;
    let moto = Moto(child);
    wait_port(port).then(|| (moto, format!("http://127.0.0.1:{port}")))
}

/// Completed round trips per second for `pairs` producer/consumer pairs
/// moving `batch` messages per request; consumers long-poll for `wait`
/// seconds (0: short polling, pausing 2 ms after an empty receive).
async fn measure(sqs: &Sqs, queue: &str, pairs: usize, batch: usize, wait: u64) -> Result<f64, String> {
    let created = sqs.call("CreateQueue", json!({"QueueName": queue})).await?;
    let url = created["QueueUrl"].as_str().ok_or("no QueueUrl")?.to_owned();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Closed loop: producers stay at most BACKLOG_BATCHES batches per pair
    // ahead of the consumers, so the queue stays short, as in the pipeline.
    let backlog = Arc::new(tokio::sync::Semaphore::new(BACKLOG_BATCHES * pairs * batch));
    let mut tasks = Vec::new();
    for p in 0..pairs {
        let (psqs, purl, pstop, pbacklog) = (sqs.clone(), url.clone(), Arc::clone(&stop), Arc::clone(&backlog));
        tasks.push(tokio::spawn(async move {
            let (sqs, url, stop, backlog) = (psqs, purl, pstop, pbacklog);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(100), backlog.acquire_many(batch as u32)).await {
                    Ok(Ok(permit)) => permit.forget(),
                    _ => continue,
                }
                let r = if batch == 1 {
                    sqs.call("SendMessage", json!({"QueueUrl": url, "MessageBody": format!("m-{p}-{i}")})).await
                } else {
                    let entries: Vec<Value> = (0..batch)
                        .map(|j| json!({"Id": format!("e{j}"), "MessageBody": format!("m-{p}-{i}-{j}")}))
                        .collect();
                    sqs.call("SendMessageBatch", json!({"QueueUrl": url, "Entries": entries})).await
                };
                r?;
                i += 1;
            }
            Ok::<(), String>(())
        }));
        let (csqs, curl, cstop, cdone) = (sqs.clone(), url.clone(), Arc::clone(&stop), Arc::clone(&done));
        let cbacklog = Arc::clone(&backlog);
        tasks.push(tokio::spawn(async move {
            let (sqs, url, stop, done, backlog) = (csqs, curl, cstop, cdone, cbacklog);
            while !stop.load(Ordering::Relaxed) {
                let got = sqs
                    .call(
                        "ReceiveMessage",
                        json!({"QueueUrl": url, "MaxNumberOfMessages": batch, "WaitTimeSeconds": wait}),
                    )
                    .await?;
                let handles: Vec<String> = got["Messages"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|m| m["ReceiptHandle"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if handles.is_empty() {
                    if wait == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    continue;
                }
                if handles.len() == 1 {
                    sqs.call("DeleteMessage", json!({"QueueUrl": url, "ReceiptHandle": handles[0]})).await?;
                } else {
                    let entries: Vec<Value> = handles
                        .iter()
                        .enumerate()
                        .map(|(i, h)| json!({"Id": format!("d{i}"), "ReceiptHandle": h}))
                        .collect();
                    sqs.call("DeleteMessageBatch", json!({"QueueUrl": url, "Entries": entries})).await?;
                }
                done.fetch_add(handles.len() as u64, Ordering::Relaxed);
                backlog.add_permits(handles.len());
            }
            Ok(())
        }));
    }
    tokio::time::sleep(WARMUP).await;
    let (start, before) = (Instant::now(), done.load(Ordering::Relaxed));
    tokio::time::sleep(RUN).await;
    let (elapsed, after) = (start.elapsed(), done.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok((after - before) as f64 / elapsed.as_secs_f64())
}

fn main() {
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");

    let dir = tempfile::Builder::new().prefix("sqs-bench").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut config = crunchbox::config::Config { data_dir: dir.path().to_owned(), ..Default::default() };
    config.aws.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let app =
        server_rt.block_on(crunchbox::app::start(config, &[crunchbox::cli::Role::Sqs])).expect("crunchbox starts");
    let ours = Sqs::new(&format!("http://{}", app.aws_addr.expect("aws listener")));
    let moto = start_moto();
    let theirs = moto.as_ref().map(|(_, endpoint)| Sqs::new(endpoint));
    if theirs.is_none() {
        println!(
            "moto_server unavailable (create $CRUNCHBOX_TOOLS/venv from e2e/requirements.txt, as .ci/run does); crunchbox only"
        );
    }

    println!(
        "SQS round trips/s (send + receive + delete), {} s per run after {} ms warm-up",
        RUN.as_secs(),
        WARMUP.as_millis()
    );
    println!("{:<22} {:>10} {:>10} {:>10} {:>8} {:>10}", "shape", "crunchbox", "moto", "moto", "ratio", "fsyncs per");
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "", "long poll", "long poll", "short poll", "(best)", "ack'd msg"
    );
    for (pairs, batch) in SHAPES {
        let shape = format!("{pairs} pair(s), batch {batch}");
        let (f0, a0) = crunchbox::queue::durability_stats();
        let ours_rate = client_rt.block_on(measure(&ours, &format!("bench-{pairs}-{batch}"), pairs, batch, 1));
        let (f1, a1) = crunchbox::queue::durability_stats();
        let fsyncs = (f1 - f0) as f64 / (a1 - a0).max(1) as f64;
        let moto_rates = theirs.as_ref().map(|t| {
            let long = client_rt.block_on(measure(t, &format!("bench-{pairs}-{batch}-l"), pairs, batch, 1));
            let short = client_rt.block_on(measure(t, &format!("bench-{pairs}-{batch}-s"), pairs, batch, 0));
            (long, short)
        });
        match (ours_rate, moto_rates) {
            (Ok(o), Some((Ok(l), Ok(s)))) => {
                println!("{shape:<22} {o:>10.0} {l:>10.0} {s:>10.0} {:>7.1}x {fsyncs:>10.3}", o / l.max(s))
            }
            (Ok(o), None) => println!("{shape:<22} {o:>10.0} {:>10} {:>10} {:>8} {fsyncs:>10.3}", "-", "-", "-"),
            (Ok(o), Some((l, s))) => println!("{shape:<22} {o:>10.0}  moto failed: {l:?} {s:?}"),
            (Err(e), _) => println!("{shape:<22} crunchbox failed: {e}"),
        }
    }
    println!("ratio = crunchbox / moto's better mode. Acknowledged messages = sends + deletes that waited for");
    println!("durability; fsyncs = sled flushes issued by group commit (sled's own 200 ms background flush aside).");
    drop(moto);
    server_rt.block_on(app.shutdown());
}
