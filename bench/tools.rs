//! Where benchmarks find the tools they compare against: installed once into
//! `$CRUNCHBOX_TOOLS` (default `~/.cache/crunchbox-tools`), the same folder
//! `.ci/run` fills (the e2e venv with moto is `venv/` there).

use std::path::PathBuf;

pub fn tools_dir() -> PathBuf {
    std::env::var_os("CRUNCHBOX_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/crunchbox-tools")
    })
}
