//! Process-wide Prometheus recorder. Installed once, even when tests start
//! several apps in one process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Crunch durations span milliseconds (thumbnails) to seconds (12 MP photos).
const CRUNCH_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The handle that renders `/metrics`; `None` if another recorder was
/// installed first (then metrics are simply not exported).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &CRUNCH_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Names shared by the web role and the worker.
pub const UPLOADS: &str = "crunchbox_uploads_total";
pub const CRUNCHES: &str = "crunchbox_crunches_total";
pub const CRUNCH_SECONDS: &str = "crunchbox_crunch_duration_seconds";
pub const FAILURES: &str = "crunchbox_crunch_failures_total";
pub const QUEUE_DEPTH: &str = "crunchbox_queue_depth";
pub const ORPHANS_SWEPT: &str = "crunchbox_orphans_swept_total";
