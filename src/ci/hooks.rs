//! LocalStack-style init hooks: the files in `init_dir/ready.d` run in
//! name order once the endpoint answers, those in `shutdown.d` on SIGTERM
//! before the stores close. `*.sh` run with `sh`, `*.py` with `python3`,
//! other executables directly; each sees the AWS environment of the
//! embedded endpoint. A failing hook is logged with its output and shown as
//! `ERROR` in `/_localstack/init`; the server keeps serving.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use serde::Serialize;

/// A stage of the lifecycle, as `/_localstack/init` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Stage {
    Ready,
    Shutdown,
}

impl Stage {
    fn dir(self) -> &'static str {
        match self {
            Stage::Ready => "ready.d",
            Stage::Shutdown => "shutdown.d",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ScriptState {
    Unknown,
    Running,
    Successful,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Script {
    pub stage: Stage,
    pub name: String,
    pub state: ScriptState,
}

/// The hooks of one process and how far they got.
#[derive(Debug, Default)]
pub struct Hooks {
    dir: Option<PathBuf>,
    state: Mutex<Progress>,
}

#[derive(Debug, Default, Clone)]
struct Progress {
    scripts: Vec<Script>,
    ready: bool,
    shutdown: bool,
}

/// `/_localstack/init`'s answer.
#[derive(Debug, Serialize)]
pub struct Report {
    pub completed: Completed,
    pub scripts: Vec<Script>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub struct Completed {
    pub boot: bool,
    pub start: bool,
    pub ready: bool,
    pub shutdown: bool,
}

impl Hooks {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir, state: Mutex::default() }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn report(&self) -> Report {
        let p = self.progress().clone();
        Report {
            completed: Completed { boot: true, start: true, ready: p.ready, shutdown: p.shutdown },
            scripts: p.scripts,
        }
    }

    /// Runs the stage's hooks one after another (a SHUTDOWN run then marks
    /// its stage complete; READY waits for [`Self::mark_ready`]).
    /// `env` is the AWS environment they get.
    pub async fn run(&self, stage: Stage, env: &[(&str, String)]) {
        let files = match &self.dir {
            Some(dir) => hook_files(&dir.join(stage.dir())),
            None => Vec::new(),
        };
        {
            let mut p = self.progress();
            for f in &files {
                p.scripts.push(Script { stage, name: file_name(f), state: ScriptState::Unknown });
            }
        }
        for f in &files {
            self.set_state(stage, f, ScriptState::Running);
            let state = run_one(f, env).await;
            self.set_state(stage, f, state);
        }
        if stage == Stage::Shutdown {
            self.progress().shutdown = true;
        }
    }

    /// Marks the READY stage complete; `serve` calls it once it has said
    /// `Ready.`, so whoever polls `/_localstack/init` sees the line first.
    pub fn mark_ready(&self) {
        self.progress().ready = true;
    }

    fn set_state(&self, stage: Stage, file: &Path, state: ScriptState) {
        let name = file_name(file);
        if let Some(s) = self.progress().scripts.iter_mut().find(|s| s.stage == stage && s.name == name) {
            s.state = state;
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The stage directory's hooks in name order: `*.sh`, `*.py` and other
/// executable files; a missing directory has none.
fn hook_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && (interpreter(p).is_some() || is_executable(p)))
        .collect();
    files.sort();
    files
}

fn interpreter(p: &Path) -> Option<&'static str> {
    match p.extension().and_then(|e| e.to_str()) {
        Some("sh") => Some("sh"),
        Some("py") => Some("python3"),
        _ => None,
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

async fn run_one(file: &Path, env: &[(&str, String)]) -> ScriptState {
    let mut cmd = match interpreter(file) {
        Some(program) => {
            let mut c = tokio::process::Command::new(program);
            c.arg(file);
            c
        }
        None => tokio::process::Command::new(file),
    };
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).stdin(Stdio::null());
    if let Some(dir) = file.parent() {
        cmd.current_dir(dir);
    }
    let name = file.display().to_string();
    tracing::info!(hook = %name, "running init hook");
    match cmd.output().await {
        Ok(out) if out.status.success() => {
            tracing::info!(hook = %name, output = %String::from_utf8_lossy(&out.stdout).trim_end(), "init hook done");
            ScriptState::Successful
        }
        Ok(out) => {
            tracing::error!(
                hook = %name,
                status = %out.status,
                stdout = %String::from_utf8_lossy(&out.stdout).trim_end(),
                stderr = %String::from_utf8_lossy(&out.stderr).trim_end(),
                "init hook failed"
            );
            ScriptState::Error
        }
        Err(e) => {
            tracing::error!(hook = %name, error = %e, "cannot run init hook");
            ScriptState::Error
        }
    }
}
