//! The progress bar of `crunchbox upload`: bytes while the file streams, a
//! spinner while the worker crunches. indicatif draws on stderr and hides
//! itself when stderr is not a terminal, so scripts see only the URLs.

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-counting bar for one file of `len` bytes.
pub fn transfer(path: &Path, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(name(path));
    bar
}

/// Turns the finished transfer bar into a spinner while we poll.
pub fn crunching(bar: &ProgressBar, id: &str) {
    let style =
        ProgressStyle::with_template("{msg} {spinner} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(format!("crunching {id}"));
    bar.enable_steady_tick(Duration::from_millis(120));
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
