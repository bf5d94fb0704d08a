//! S3 PUT/GET throughput and latency: crunchbox's embedded S3 (durable:
//! fsync before every acknowledgement) against s3s-fs 0.14.1 (the s3s
//! reference backend, which does not fsync), side by side on loopback.
//!
//!   cargo bench --bench s3
//!
//! Both servers run as separate processes with the same credentials; the
//! load generator is a lean reqwest client signing SigV4 by hand with
//! `UNSIGNED-PAYLOAD`, so neither side pays for payload hashing on the
//! client and the generator stays cheap. s3s-fs is installed on first use
//! into $CRUNCHBOX_TOOLS (default ~/.cache/crunchbox-tools).
//!
//! s3s-fs leaves Nagle's algorithm on (crunchbox sets TCP_NODELAY), so its
//! small responses wait ~40 ms for the client's delayed ACK: a socket
//! option, not storage speed. By default the reference therefore runs with
//! a tiny LD_PRELOAD shim that sets TCP_NODELAY on each accepted socket
//! (built with `cc`); `S3_BENCH_STOCK=1` measures s3s-fs exactly as shipped.

#[path = "tools.rs"]
mod tools;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ACCESS: &str = "crunchbox";
const SECRET: &str = "crunchbox-secret";
const BUCKET: &str = "bench";
/// Wall time per measured run (after a short warm-up).
const RUN: Duration = Duration::from_millis(3500);
const WARMUP: Duration = Duration::from_millis(400);

struct Server {
    name: &'static str,
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn wait_port(port: u16) {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server on port {port} did not start");
}

fn s3s_fs_binary() -> PathBuf {
    let tools = tools::tools_dir();
    let bin = tools.join("bin").join("s3s-fs");
    if !bin.exists() {
        eprintln!("installing s3s-fs 0.14.1 into {} (one-time)", tools.display());
        let status = Command::new("cargo")
            .args(["install", "s3s-fs", "--version", "0.14.1", "--features", "binary", "--locked", "--root"])
            .arg(&tools)
            .env("CARGO_TARGET_DIR", tools.join("target"))
            .status()
            .expect("run cargo install");
        assert!(status.success(), "cargo install s3s-fs failed");
    }
    bin
}

fn start_crunchbox() -> Server {
    let dir = tempfile::tempdir_in(bench_root()).expect("tempdir");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crunchbox"));
    // Cargo exports build-script variables (CRUNCHBOX_GIT_COMMIT, ...) to
    // benches; they are not config keys, so keep them from the server.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CRUNCHBOX_") {
            cmd.env_remove(key);
        }
    }
    let child = cmd
        .args(["serve", "--roles", "s3", "--data-dir"])
        .arg(dir.path())
        .env("CRUNCHBOX_AWS_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start crunchbox");
    wait_port(port);
    Server { name: "crunchbox", child, endpoint: format!("127.0.0.1:{port}"), _dir: dir }
}

/// C source of the TCP_NODELAY shim: wraps accept/accept4.
const NODELAY_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
static void nodelay(int fd) { int one = 1; if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }
int accept4(int s, struct sockaddr *a, socklen_t *l, int f) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) real = dlsym(RTLD_NEXT, "accept4");
    int fd = real(s, a, l, f); nodelay(fd); return fd;
}
int accept(int s, struct sockaddr *a, socklen_t *l) { return accept4(s, a, l, 0); }
"#;

/// Builds the shim into the bench dir; `None` (stock s3s-fs) if asked or if `cc` fails.
fn nodelay_shim() -> Option<PathBuf> {
    if std::env::var("S3_BENCH_STOCK").is_ok_and(|v| v == "1") {
        return None;
    }
    let src = bench_root().join("nodelay.c");
    let lib = bench_root().join("libnodelay.so");
    std::fs::write(&src, NODELAY_SHIM).ok()?;
    let ok = Command::new("cc").args(["-shared", "-fPIC", "-O2", "-o"]).arg(&lib).arg(&src).arg("-ldl").status();
    if ok.is_ok_and(|s| s.success()) {
        Some(lib)
    } else {
        eprintln!("cc failed: measuring stock s3s-fs (Nagle on)");
        None
    }
}

fn start_s3s_fs(shim: Option<&Path>) -> Server {
    let dir = tempfile::tempdir_in(bench_root()).expect("tempdir");
    let port = free_port();
    let mut cmd = Command::new(s3s_fs_binary());
    if let Some(lib) = shim {
        cmd.env("LD_PRELOAD", lib);
    }
    let child = cmd
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", ACCESS, "--secret-key", SECRET])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    wait_port(port);
    Server { name: "s3s-fs", child, endpoint: format!("127.0.0.1:{port}"), _dir: dir }
}

/// Data dirs live on the same disk as the project (not tmpfs), so fsync is real.
fn bench_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench-s3");
    let _ = std::fs::create_dir_all(&root);
    root
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// SigV4 header auth with an unsigned payload, as S3 clients send over TLS.
fn signed(client: &reqwest::Client, method: reqwest::Method, host: &str, path: &str) -> reqwest::RequestBuilder {
    let now = time::OffsetDateTime::now_utc();
    let date = format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day());
    let amz_date = format!("{date}T{:02}{:02}{:02}Z", now.hour(), now.minute(), now.second());
    let payload = "UNSIGNED-PAYLOAD";
    let headers = format!("host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n");
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!("{method}\n{path}\n\n{headers}\n{signed_headers}\n{payload}");
    let scope = format!("{date}/us-east-1/s3/aws4_request");
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{SECRET}").as_bytes(), &date);
    for part in ["us-east-1", "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS}/{scope}, SignedHeaders={signed_headers}, Signature={}",
        hex::encode(hmac(&key, &to_sign))
    );
    client
        .request(method, format!("http://{host}{path}"))
        .header("x-amz-date", amz_date)
        .header("x-amz-content-sha256", payload)
        .header("authorization", auth)
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Put,
    Get,
}

struct Stats {
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    first_error: Option<String>,
    /// CPU the load generator (this process) used, in cores.
    generator_cores: f64,
    /// CPU the server process used, in cores.
    server_cores: f64,
}

/// User + system CPU seconds of this process.
fn own_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// User + system CPU seconds of process `pid` (fields 14 and 15 of /proc/PID/stat).
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Runs `op` with `concurrency` workers for `RUN`; GET worker `w` reads the
/// keys `0..keys` that PUT worker `w` wrote in the run before.
async fn measure(server: &Server, op: Op, size: usize, concurrency: usize, keys: usize) -> (Stats, usize) {
    let host = server.endpoint.as_str();
    let server_pid = server.child.id();
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build().expect("client");
    let body = bytes::Bytes::from(vec![0x5au8; size]);
    let host: Arc<str> = host.into();
    let mut tasks = Vec::new();
    let started = Instant::now();
    let measure_from = started + WARMUP;
    let until = measure_from + RUN;
    for worker in 0..concurrency {
        let (client, body, host) = (client.clone(), body.clone(), Arc::clone(&host));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut first_error = None;
            let mut i = 0usize;
            let mut written = 0usize;
            while Instant::now() < until {
                let key = match op {
                    Op::Put => format!("/{BUCKET}/s{size}-w{worker}-{i}"),
                    Op::Get => format!("/{BUCKET}/s{size}-w{worker}-{}", i % keys.max(1)),
                };
                let t = Instant::now();
                let outcome: Result<(), String> = match op {
                    Op::Put => match signed(&client, reqwest::Method::PUT, &host, &key).body(body.clone()).send().await
                    {
                        Ok(r) if r.status().is_success() => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(e) => Err(format!("{e:?}")),
                    },
                    Op::Get => match signed(&client, reqwest::Method::GET, &host, &key).send().await {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(b) if b.len() == size => Ok(()),
                            Ok(b) => Err(format!("{} bytes instead of {size}", b.len())),
                            Err(e) => Err(e.to_string()),
                        },
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(e) => Err(format!("{e:?}")),
                    },
                };
                let elapsed = t.elapsed();
                if let Err(e) = outcome {
                    errors += 1;
                    first_error.get_or_insert(format!("{e} after {elapsed:?}"));
                } else if t >= measure_from {
                    // Only successful requests count towards ops/s and latency.
                    lat.push(elapsed);
                }
                written += 1;
                i += 1;
            }
            (lat, errors, written, first_error)
        }));
    }
    // CPU is sampled over the measured window only (after the warm-up).
    tokio::time::sleep_until(measure_from.into()).await;
    let (gen0, srv0) = (own_cpu(), process_cpu(server_pid));
    tokio::time::sleep_until(until.into()).await;
    let (gen1, srv1) = (own_cpu(), process_cpu(server_pid));
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut per_worker_written = usize::MAX;
    for t in tasks {
        let (l, e, w, f) = t.await.expect("worker");
        lat.extend(l);
        errors += e;
        first_error = first_error.or(f);
        per_worker_written = per_worker_written.min(w);
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let secs = RUN.as_secs_f64();
    let stats = Stats {
        ops_per_s: lat.len() as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
        first_error,
        generator_cores: (gen1 - gen0) / secs,
        server_cores: (srv1 - srv0) / secs,
    };
    (stats, per_worker_written)
}

async fn create_bucket(host: &str) {
    let client = reqwest::Client::new();
    let r = signed(&client, reqwest::Method::PUT, host, &format!("/{BUCKET}")).send().await.expect("create bucket");
    assert!(r.status().is_success(), "create bucket on {host}: {}", r.status());
}

/// `S3_BENCH_SIZES=4096,1048576` and `S3_BENCH_CONC=1,32` narrow the run (defaults: the issue's grid).
fn list_env(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let shim = nodelay_shim();
    let servers = [start_crunchbox(), start_s3s_fs(shim.as_deref())];
    rt.block_on(async {
        for s in &servers {
            create_bucket(&s.endpoint).await;
        }
        println!(
            "S3 benchmark: crunchbox (fsync before ack) vs s3s-fs 0.14.1 (no fsync{}), {:?} per run, {} cores, load {}",
            if shim.is_some() { ", TCP_NODELAY shim" } else { ", stock: Nagle on" },
            RUN,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg()
        );
        println!(
            "{:<4} {:>5} {:>4} | {:>25} | {:>25} | {:>7} | {:>14}",
            "op", "size", "conc", "crunchbox ops/s p50/p99ms", "s3s-fs ops/s p50/p99ms", "ratio", "CPU gen/server"
        );
        let mut failures = Vec::new();
        for size in list_env("S3_BENCH_SIZES", &[4096, 1 << 20]) {
            let label = if size >= 1 << 20 { format!("{}MiB", size >> 20) } else { format!("{}KiB", size >> 10) };
            for concurrency in list_env("S3_BENCH_CONC", &[1, 32]) {
                let mut written = [0usize; 2];
                for op in [Op::Put, Op::Get] {
                    let mut results = Vec::new();
                    for (i, s) in servers.iter().enumerate() {
                        let (stats, w) = measure(s, op, size, concurrency, written[i]).await;
                        if op == Op::Put {
                            written[i] = w;
                        }
                        results.push(stats);
                    }
                    let cell = |s: &Stats| format!("{:>9.0} {:>6.2}/{:>7.2}", s.ops_per_s, s.p50_ms, s.p99_ms);
                    let ratio = results[0].ops_per_s / results[1].ops_per_s.max(1e-9);
                    let opname = if op == Op::Put { "PUT" } else { "GET" };
                    // Generator CPU (this process) while driving each server, then that server's CPU.
                    let cpu = format!(
                        "{:.2}/{:.2} {:.2}/{:.2}",
                        results[0].generator_cores,
                        results[0].server_cores,
                        results[1].generator_cores,
                        results[1].server_cores
                    );
                    let errs = results.iter().map(|s| s.errors).sum::<usize>();
                    println!(
                        "{:<4} {:>5} {:>4} | {:>25} | {:>25} | {:>6.2}x | {}{}",
                        opname,
                        label,
                        concurrency,
                        cell(&results[0]),
                        cell(&results[1]),
                        ratio,
                        cpu,
                        if errs > 0 { format!("  ({errs} errors)") } else { String::new() }
                    );
                    for (s, r) in servers.iter().zip(&results) {
                        if let Some(e) = &r.first_error {
                            failures.push(format!(
                                "{opname} {label} c{concurrency} {}: {} errors, first: {e}",
                                s.name, r.errors
                            ));
                        }
                    }
                }
            }
        }
        println!(
            "CPU gen/server: cores used by the load generator / by the server while crunchbox | s3s-fs was driven"
        );
        println!("load after: {}", loadavg());
        for f in &failures {
            println!("error: {f}");
        }
        for s in &servers {
            eprintln!("({} at {})", s.name, s.endpoint);
        }
    });
}
