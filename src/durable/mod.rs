//! The one durable layer under both stores (S3 metadata and the queue):
//! how a sled database is opened, how writes become power-safe, the clock.
//!
//! "Acknowledged" means power-safe (SPEC): every byte an acknowledgement
//! depends on went through `fsync`/`fdatasync`, file data and directory
//! entry both. sled 0.34 alone does not give that: it syncs its log with
//! `sync_file_range` (no metadata, no disk cache; on some file systems
//! nothing at all), writes its `conf` and its blob files without a sync, and
//! never syncs a directory. Its recovery is sound once its bytes are really
//! on disk, so this layer supplies the missing syncs from outside, without
//! forking sled: [`open`] syncs what sled wrote at open, and the
//! [`Committer`] follows every flush with an `fdatasync` of the log and a
//! sync of every new file and directory entry (see [`SyncPoint`]).

mod commit;
mod sync;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use commit::{CommitError, CommitFailure, Committer};
pub use sync::{SyncPoint, create_children_durable, create_dir_all_durable, sync_dir};

/// Why the durable layer failed. Each case names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is in use by another crunchbox{}", dir.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { dir: PathBuf, pid: Option<u32> },
}

impl DurableError {
    pub fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self + use<> {
        let path = path.to_owned();
        move |source| Self::Io { what, path, source }
    }
}

/// Milliseconds since the epoch: the one clock of both stores.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How long [`open`] keeps retrying a lock a just-closed instance (in this
/// process, say a restart in tests) may still hold.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// Opens the sled database in `dir` (creating it, and every missing parent,
/// durably) and makes what sled wrote while opening durable. Blocks: call
/// it off the async threads (`spawn_blocking`). A held lock is retried for
/// a while, then reported as [`DurableError::Locked`].
pub fn open(dir: &Path, config: sled::Config) -> Result<(sled::Db, SyncPoint), DurableError> {
    create_dir_all_durable(dir).map_err(DurableError::io("cannot create", dir))?;
    let config = config.path(dir);
    let started = std::time::Instant::now();
    let db = loop {
        match config.open() {
            Ok(db) => break db,
            Err(sled::Error::Io(e)) if is_lock_error(&e) => {
                // Another process will not let go soon; only a just-closed
                // instance of this one is worth waiting for.
                let holder = lock_holder(dir);
                if holder.is_some_and(|pid| pid != std::process::id()) || started.elapsed() > LOCK_PATIENCE {
                    return Err(DurableError::Locked { dir: dir.to_owned(), pid: holder });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut point = SyncPoint::new(dir).map_err(DurableError::io("cannot open the log of", dir))?;
    // sled writes `conf` at open without a sync; make it and every entry
    // sled created (conf, db, blobs/) durable before anything is acknowledged.
    point.after_flush().map_err(DurableError::io("cannot sync", dir))?;
    Ok((db, point))
}

/// The segment size a database in `dir` was created with (sled refuses to
/// open it with another), or `wanted` for a new one.
pub fn segment_size(dir: &Path, wanted: usize) -> usize {
    let Ok(conf) = std::fs::read_to_string(dir.join("conf")) else { return wanted };
    conf.lines()
        .find_map(|line| line.strip_prefix("segment_size:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(wanted)
}

/// The process that holds the lock sled takes on the database in `dir`
/// (an `flock` of its `db` file), as `/proc/locks` tells; `None` when it is
/// not locked, or the system does not say.
pub fn lock_holder(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.join("db")).ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    // glibc's encoding of a dev_t (major and minor are split in two parts).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let wanted = format!("{major:02x}:{minor:02x}:{ino}");
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 1442 fe:00:10027376 0 EOF`; waiters
        // (`1: -> FLOCK …`) hold nothing.
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, kind, _, _, pid, file, ..] if *kind != "->" && file.eq_ignore_ascii_case(&wanted) => {
                pid.parse().ok().filter(|pid| *pid != 0)
            }
            _ => None,
        }
    })
}

fn is_lock_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.to_string().contains("lock")
}
