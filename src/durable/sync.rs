//! The syncs sled leaves out, done from outside it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// What must be synced after a sled flush for it to be power-safe: the log
/// file's data (`fdatasync` through a descriptor of our own; any descriptor
/// of a file makes its data durable), every file sled created under
/// `blobs/` since the last time (new or grown), and the directory entries of
/// both directories whenever they changed.
#[derive(Debug)]
pub struct SyncPoint {
    dir: PathBuf,
    log: File,
    /// Name → size at its last sync, per directory.
    known_root: HashMap<OsString, u64>,
    known_blobs: HashMap<OsString, u64>,
}

impl SyncPoint {
    pub fn new(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: dir.to_owned(),
            log: File::open(dir.join("db"))?,
            known_root: HashMap::new(),
            known_blobs: HashMap::new(),
        })
    }

    /// Call after each `db.flush()`: afterwards everything that flush wrote
    /// survives a power cut. The first call syncs every file there is.
    pub fn after_flush(&mut self) -> io::Result<()> {
        self.log.sync_data()?;
        let blobs = self.dir.join("blobs");
        if sync_new_files(&blobs, &mut self.known_blobs)? {
            sync_dir(&blobs)?;
        }
        // `conf`, `db`, snapshots (`snap.*`, written and synced by sled, but
        // renamed into place without a directory sync) and `blobs/` itself.
        if sync_new_files(&self.dir, &mut self.known_root)? {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// `fdatasync`s every regular file in `dir` that is new or changed size
/// since `known` saw it; forgets files that are gone. True if the set of
/// names changed (so the directory itself needs a sync). A missing `dir`
/// has nothing to sync.
fn sync_new_files(dir: &Path, known: &mut HashMap<OsString, u64>) -> io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut seen = HashMap::with_capacity(known.len());
    let mut names_changed = false;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Removed (an obsolete blob, an old snapshot) while we looked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !known.contains_key(&name) {
            names_changed = true;
        }
        if meta.is_file() && known.get(&name) != Some(&meta.len()) {
            match File::open(entry.path()) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        seen.insert(name, meta.len());
    }
    names_changed |= seen.len() != known.len();
    *known = seen;
    Ok(names_changed)
}

/// `fsync` of a directory: makes the entries created, renamed or removed in
/// it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all`, with every directory it creates made durable (each new
/// directory and the entry for it in its parent).
pub fn create_dir_all_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(dir)?;
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

/// Creates the missing `children` of `parent` durably, as
/// [`create_dir_all_durable`] would one by one, but with one `fsync` of the
/// parent for all of them: a fresh store's 256 blob shards cost 257 syncs
/// instead of 512, which is what a fresh data dir (`--ephemeral`) waits on.
pub fn create_children_durable<S: AsRef<Path>>(parent: &Path, children: &[S]) -> io::Result<()> {
    create_dir_all_durable(parent)?;
    let mut created = false;
    for child in children {
        let dir = parent.join(child);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                sync_dir(&dir)?;
                created = true;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if created { sync_dir(parent) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("a/b");
        create_children_durable(&parent, &["x", "y"]).unwrap();
        std::fs::write(parent.join("x/kept"), b"1").unwrap();
        create_children_durable(&parent, &["x", "y", "z"]).unwrap();
        assert!(parent.join("x/kept").exists() && parent.join("y").is_dir() && parent.join("z").is_dir());
    }

    #[test]
    fn new_and_grown_files_are_noticed_and_gone_ones_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut known = HashMap::new();
        assert!(!sync_new_files(&dir.path().join("missing"), &mut known).unwrap());
        std::fs::write(dir.path().join("a"), b"1").unwrap();
        assert!(sync_new_files(dir.path(), &mut known).unwrap(), "a new name");
        assert!(!sync_new_files(dir.path(), &mut known).unwrap(), "nothing new");
        std::fs::write(dir.path().join("a"), b"12").unwrap();
        assert!(!sync_new_files(dir.path(), &mut known).unwrap(), "grown, same name");
        assert_eq!(known[&OsString::from("a")], 2);
        std::fs::remove_file(dir.path().join("a")).unwrap();
        assert!(sync_new_files(dir.path(), &mut known).unwrap(), "a name went");
        assert!(known.is_empty());
    }

    #[test]
    fn nested_directories_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("x/y/z");
        create_dir_all_durable(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all_durable(&deep).unwrap();
    }
}
