//! Log setup: human-readable by default, Mozilla's mozlog JSON with
//! `--log-format json`, so log pipelines built for Mozilla services (and
//! anything that reads one JSON object per line) take crunchbox as is.

use std::fmt;
use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default level.
/// Colours only on a terminal (and never with `NO_COLOR` set): a log file or
/// collector gets plain text.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_ansi(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // Span fields recorded as JSON, so each line carries its request's.
        LogFormat::Json => builder.event_format(MozLog::new()).fmt_fields(JsonFields::new()).try_init(),
    };
}

/// The level filter: `RUST_LOG`, or info with the chatty crates turned down.
/// s3s logs every S3 error response twice at ERROR, as debug structs, client
/// mistakes included, and a malformed XML body whole (a client could fill
/// the log with megabytes a request): it is silenced unless `RUST_LOG`
/// names it, and the endpoint logs one line per error response itself (see
/// `endpoint`), at a level that says whose fault it was.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let spec = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("info,sled=warn,aws=warn");
    let filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info,sled=warn,aws=warn"));
    if spec.contains("s3s") {
        return filter;
    }
    ["s3s::ops=off", "s3s::http=off"].into_iter().fold(filter, |filter, quiet| match quiet.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    })
}

/// Colours only on a terminal, and not when `NO_COLOR` is set to anything.
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Formats each event as one mozlog object: `Timestamp` (ns since the
/// epoch), `Type` (the event's target), `Logger`, `Hostname`, `Severity`
/// (syslog number), `Pid`, `Fields` (the event's fields, message as `msg`)
/// and `EnvVersion` "2.0".
pub struct MozLog {
    hostname: String,
    pid: u32,
}

impl MozLog {
    pub fn new() -> Self {
        MozLog { hostname: hostname(), pid: std::process::id() }
    }
}

impl Default for MozLog {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, N> FormatEvent<S, N> for MozLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Map::new();
        event.record(&mut EventFields(&mut fields));
        // The spans an event happened in name its context (e.g. one request)
        // and lend it their fields (its request id, method, path, and once
        // known its status and duration); the event's own win a clash.
        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            for span in scope.from_root() {
                spans.push(span.name());
                let extensions = span.extensions();
                let Some(recorded) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(recorded.as_str()) {
                    for (name, value) in span_fields {
                        fields.entry(name).or_insert(value);
                    }
                }
            }
            if !spans.is_empty() {
                fields.insert("spans".into(), Value::from(spans.join(":")));
            }
        }
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let line = json!({
            "Timestamp": timestamp,
            "Type": if meta.target().is_empty() { "crunchbox" } else { meta.target() },
            "Logger": "crunchbox",
            "Hostname": self.hostname,
            "EnvVersion": "2.0",
            "Severity": severity(meta.level()),
            "Pid": self.pid,
            "Fields": fields,
        });
        writeln!(writer, "{line}")
    }
}

/// Syslog severities, as mozlog wants them.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Collects an event's fields as JSON values, keeping numbers and booleans typed.
struct EventFields<'a>(&'a mut Map<String, Value>);

impl EventFields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            other => other,
        };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for EventFields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// The machine's name for `Hostname`; `HOSTNAME` or "localhost" if the OS won't say.
fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its whole length; gethostname writes at most that much.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            if end > 0 {
                return String::from_utf8_lossy(&buf[..end]).into_owned();
            }
        }
    }
    std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` into a shared buffer, to read back what was logged.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(emit: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_writer(move || writer.clone())
            .event_format(MozLog::new())
            .fmt_fields(JsonFields::new())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).expect("each line is one JSON object")).collect()
    }

    #[test]
    fn events_have_the_mozlog_shape() {
        let lines = capture(|| {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            tracing::warn!(target: "crunchbox::web", id = "abc", bytes = 42u64, ok = true, "upload refused");
        });
        assert_eq!(lines.len(), 1);
        let line = lines[0].as_object().unwrap();
        let mut keys: Vec<&str> = line.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["EnvVersion", "Fields", "Hostname", "Logger", "Pid", "Severity", "Timestamp", "Type"]);
        assert_eq!(line["Type"], "crunchbox::web");
        assert_eq!(line["Logger"], "crunchbox");
        assert_eq!(line["EnvVersion"], "2.0");
        assert_eq!(line["Severity"], 4);
        assert_eq!(line["Pid"], std::process::id());
        assert!(!line["Hostname"].as_str().unwrap().is_empty());
        // Nanoseconds since the epoch: an integer past 2020-01-01 in ns.
        assert!(line["Timestamp"].as_u64().unwrap() > 1_577_836_800_000_000_000);
        let fields = &line["Fields"];
        assert_eq!(fields["msg"], "upload refused");
        assert_eq!(fields["id"], "abc");
        assert_eq!(fields["bytes"], 42);
        assert_eq!(fields["ok"], true);
        assert_eq!(fields["spans"], "request");
    }

    /// A request's span lends every line logged within it its fields, those
    /// recorded late (status, duration) included, as typed JSON values.
    #[test]
    fn lines_carry_their_request_span_fields() {
        let lines = capture(|| {
            let span = tracing::info_span!(
                "request",
                listener = "aws",
                request_id = "000000000000002a",
                method = %http::Method::GET,
                path = "/b/k",
                status = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            );
            let _entered = span.enter();
            tracing::info!(code = "AccessDenied", "s3 request refused");
            span.record("status", 403u64);
            span.record("duration_ms", 7u64);
            tracing::debug!("done");
        });
        let (first, last) = (&lines[0]["Fields"], &lines[1]["Fields"]);
        assert_eq!(first["request_id"], "000000000000002a");
        assert_eq!(first["method"], "GET");
        assert_eq!(first["path"], "/b/k");
        assert_eq!(first["code"], "AccessDenied");
        assert_eq!(first["spans"], "request");
        assert_eq!((&last["status"], &last["duration_ms"]), (&json!(403), &json!(7)));
    }

    #[test]
    fn s3s_is_quiet_unless_asked_for() {
        for spec in [None, Some("info"), Some("debug,sled=warn")] {
            let filter = filter(spec).to_string();
            assert!(filter.contains("s3s::ops=off") && filter.contains("s3s::http=off"), "{spec:?}");
        }
        assert!(!filter(Some("info,s3s=debug")).to_string().contains("s3s::ops=off"));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None));
        assert!(!colour(true, Some(std::ffi::OsStr::new("1"))));
        assert!(colour(true, Some(std::ffi::OsStr::new(""))));
    }

    #[test]
    fn severities_follow_syslog() {
        let lines = capture(|| {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
            tracing::trace!("t");
        });
        let got: Vec<u64> = lines.iter().map(|l| l["Severity"].as_u64().unwrap()).collect();
        assert_eq!(got, [3, 4, 6, 7, 7]);
    }

    #[test]
    fn displayed_and_debugged_fields_become_strings() {
        let addr: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lines = capture(|| tracing::info!(listen = %addr, roles = ?["web"], "up"));
        assert_eq!(lines[0]["Fields"]["listen"], "127.0.0.1:8080");
        assert_eq!(lines[0]["Fields"]["roles"], "[\"web\"]");
    }
}
