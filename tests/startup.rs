//! `crunchbox serve` as a newcomer starts it, the binary itself: what the
//! banner announces, start-up failures in the user's words, and what the
//! logs say about client mistakes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const START: Duration = Duration::from_secs(60);

/// A `crunchbox serve` child on ephemeral ports; stderr goes to a file.
struct Serve {
    child: Child,
    banner: String,
    stderr: std::path::PathBuf,
}

impl Serve {
    /// Starts `serve ARGS` with `env` and waits for `Ready.`; the banner is
    /// what it printed before.
    fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Serve {
        Self::spawn(dir, name, command(args, env))
    }

    /// Starts `cmd` (made by [`command`]) and waits for `Ready.`.
    fn spawn(dir: &Path, name: &str, mut cmd: Command) -> Serve {
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn crunchbox");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = String::new();
        loop {
            match rx.recv_timeout(START) {
                Ok(line) if line == "Ready." => break,
                Ok(line) => banner.push_str(&format!("{line}\n")),
                Err(_) => {
                    let _ = child.kill();
                    panic!("no Ready. within {START:?}: {banner}\n{}", std::fs::read_to_string(&stderr).unwrap());
                }
            }
        }
        Serve { child, banner, stderr }
    }

    /// `http://127.0.0.1:PORT` after `label` in the banner.
    fn url(&self, label: &str) -> String {
        let line = self.banner.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("{}", self.banner));
        line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned()
    }

    /// SIGTERM, wait, and what it logged.
    fn stop(mut self) -> String {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let log = std::fs::read_to_string(&self.stderr).unwrap();
        assert!(status.success(), "{status}: {log}");
        log
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crunchbox"));
    cmd.arg("serve").args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("CRUNCHBOX_") || name == "RUST_LOG" || name == "NO_COLOR" {
            cmd.env_remove(name);
        }
    }
    cmd.env("CRUNCHBOX_AWS_LISTEN", "127.0.0.1:0").env("CRUNCHBOX_WEB_LISTEN", "127.0.0.1:0");
    cmd.envs(env.iter().copied());
    cmd
}

/// A loopback port nothing listens on (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_banner_names_the_running_roles_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s3 = Serve::start(tmp.path(), "s3", &["--roles", "s3", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(s3.banner.contains("crunchbox AWS (S3): http://127.0.0.1:"), "{}", s3.banner);
    assert!(s3.banner.contains(" s3 ls\n"), "{}", s3.banner);
    s3.stop();
    let sqs = Serve::start(tmp.path(), "sqs", &["--roles", "sqs", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(sqs.banner.contains("crunchbox AWS (SQS): http://127.0.0.1:"), "{}", sqs.banner);
    assert!(sqs.banner.contains(" sqs list-queues\n"), "{}", sqs.banner);
    sqs.stop();
}

/// Only `web.listen` set: the URLs handed out follow it. A `web.public_url`
/// left on another loopback port is pointed out, once.
#[test]
fn urls_follow_the_web_port() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Serve::start(tmp.path(), "derived", &["--data-dir", data.to_str().unwrap()], &[]);
    let web = server.url("crunchbox web:");
    assert!(server.banner.contains(&format!("images at {web}/a/ID")), "{}", server.banner);
    // A refused upload is logged, at info.
    let refused = http_post(&web, "/v1/avatar/upload", &[("content-type", "image/png")], b"x");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let log = server.stop();
    assert!(!log.contains("web.public_url"), "{log}");
    // A fresh start's own look-ups (buckets and queues not there yet) are routine.
    assert!(!log.contains("crunchbox::endpoint"), "{log}");
    let line = log.lines().find(|l| l.contains("refused")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(" INFO ") && line.contains("errno=104") && line.contains("/v1/avatar/upload"), "{line}");

    let stale = [("CRUNCHBOX_WEB_PUBLIC_URL", "http://127.0.0.1:8080")];
    let server = Serve::start(tmp.path(), "stale", &["--data-dir", data.to_str().unwrap()], &stale);
    assert!(server.banner.contains("images at http://127.0.0.1:8080/a/ID"), "{}", server.banner);
    let log = server.stop();
    let warned = log.lines().filter(|l| l.contains("web.public_url points at 127.0.0.1:8080")).count();
    assert_eq!(warned, 1, "{log}");
}

/// `crunchbox serve` started with `RLIMIT_NOFILE` set to `soft`/`hard`.
fn with_file_limit(args: &[&str], soft: u64, hard: u64) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = command(args, &[]);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
    cmd
}

/// The soft and hard "Max open files" of a running process.
fn file_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let n: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (n[0], n[1])
}

/// A soft open-file limit below the hard one is raised to it; a hard limit
/// below what the connection caps can use is pointed out, with the way out.
#[test]
fn the_open_file_limit_is_raised_and_a_low_one_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap()];
    let hard = crunchbox::fdlimit::current().expect("getrlimit").hard;
    let needed = 1024 + 2 * 1024 + 256;
    assert!(hard >= needed + 64, "this test needs a hard open-file limit above {needed}, not {hard}");
    let roomy = Serve::spawn(tmp.path(), "roomy", with_file_limit(&args, 512, hard));
    assert_eq!(file_limit(roomy.child.id()), (hard, hard));
    let log = roomy.stop();
    assert!(!log.contains("open-file limit"), "{log}");

    let tight = Serve::spawn(tmp.path(), "tight", with_file_limit(&args, 512, 1000));
    assert_eq!(file_limit(tight.child.id()), (1000, 1000));
    let log = tight.stop();
    let line = log.lines().find(|l| l.contains("open-file limit")).unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(" WARN ")
            && line.contains("(1000)")
            && line.contains(&format!("{needed} descriptors the connection caps")),
        "{line}"
    );
    assert!(line.contains("ulimit -Hn"), "{line}");
}

#[test]
fn a_data_dir_in_use_names_the_other_process() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = Serve::start(tmp.path(), "first", &["--roles", "s3,sqs", "--data-dir", data.to_str().unwrap()], &[]);
    let second = command(&["--roles", "s3,sqs", "--data-dir", data.to_str().unwrap()], &[]).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    let expected = format!("data dir {} is in use by another crunchbox (pid {})", data.display(), first.child.id());
    assert!(err.contains(&expected), "{err}");
    assert!(!err.contains("WouldBlock") && !err.contains("could not acquire lock"), "{err}");
    first.stop();
}

#[test]
fn web_without_s3_and_sqs_says_how_to_start_them() {
    let aws = format!("127.0.0.1:{}", free_port());
    let run = command(&["--roles", "web"], &[("CRUNCHBOX_AWS_LISTEN", &aws)]).output().unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains(&aws) && err.contains("Connection refused"), "{err}");
    assert!(err.contains("crunchbox serve --roles s3,sqs") && err.contains("--driver aws"), "{err}");
    assert!(!err.contains("dispatch failure"), "{err}");
}

#[test]
fn configuration_mistakes_exit_2_in_the_users_words() {
    let run = command(&[], &[("CRUNCHBOX_WEB_LISTN", "127.0.0.1:1")]).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(err.trim(), "crunchbox: unknown variable CRUNCHBOX_WEB_LISTN (did you mean CRUNCHBOX_WEB_LISTEN?)");
    let run = command(&[], &[("CRUNCHBOX_LOG_FORMAT", "xml")]).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("\"xml\" given, expected one of: text, json") && !err.contains("``"), "{err}");
}

/// Client mistakes (an anonymous read of a private bucket, a request
/// signed for the wrong region) are one line each at info, without colour
/// codes in a file; in JSON each line carries its request's fields.
#[test]
fn client_errors_are_one_plain_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for format in ["text", "json"] {
        let args = ["--roles", "s3,sqs", "--data-dir", data.to_str().unwrap(), "--log-format", format];
        let server = Serve::start(tmp.path(), format, &args, &[("RUST_LOG", "info")]);
        let endpoint = server.url("crunchbox AWS");
        let anonymous = http_get(&endpoint, "/private/secret.txt", &[]);
        assert!(anonymous.starts_with("HTTP/1.1 403"), "{anonymous}");
        let auth =
            "AWS4-HMAC-SHA256 Credential=crunchbox/20260101/US/s3/aws4_request, SignedHeaders=host, Signature=00";
        let wrong_region = http_get(&endpoint, "/", &[("authorization", auth), ("x-amz-date", "20260101T000000Z")]);
        assert!(wrong_region.starts_with("HTTP/1.1 400"), "{wrong_region}");
        let log = server.stop();
        assert!(!log.contains('\u{1b}'), "colour codes in a file: {log}");
        assert!(!log.contains("ERROR") && !log.contains("S3Error"), "{log}");
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
        assert_eq!(refused.len(), 2, "{log}");
        assert!(refused[0].contains("AccessDenied") && refused[1].contains("AuthorizationHeaderMalformed"), "{log}");
        if format == "json" {
            let line: serde_json::Value = serde_json::from_str(refused[0]).expect("one JSON object per line");
            let fields = &line["Fields"];
            assert_eq!(line["Severity"], 6, "{line}");
            assert_eq!(fields["method"], "GET", "{line}");
            assert_eq!(fields["path"], "/private/secret.txt", "{line}");
            assert_eq!(fields["status"], 403, "{line}");
            assert!(fields["request_id"].as_str().is_some_and(|id| id.len() == 16), "{line}");
        } else {
            assert!(refused[0].contains(" INFO "), "{log}");
        }
    }
}

/// A bare HTTP/1.1 GET; the response as text.
fn http_get(endpoint: &str, path: &str, headers: &[(&str, &str)]) -> String {
    exchange("GET", endpoint, path, headers, b"")
}

fn http_post(endpoint: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    exchange("POST", endpoint, path, headers, body)
}

fn exchange(method: &str, endpoint: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}
