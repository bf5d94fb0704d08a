//! Blob files: the bytes of file-backed objects and of multipart parts.
//!
//! A blob is named by a random id (`blobs/ab/ab12…`), never by its key, so
//! no key can reach a path outside the store. Blobs are immutable once
//! renamed into place; a record in sled is what makes one visible. Every
//! step that must be durable (`fsync` of the file, `rename`, `fsync` of the
//! directory) runs on the blocking pool, before the request is answered.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// The two directories blobs live in: `tmp/` (being written) and `blobs/`.
#[derive(Debug)]
pub struct BlobDir {
    blobs: PathBuf,
    tmp: PathBuf,
}

/// A temp file that removes itself unless it was renamed into place, so an
/// aborted or failed upload leaves nothing behind.
pub struct TmpFile {
    pub file: File,
    path: PathBuf,
    armed: bool,
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl BlobDir {
    /// Creates the layout and clears `tmp/` (leftovers of a crash).
    pub fn open(root: &Path) -> io::Result<Self> {
        let blobs = root.join("blobs");
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        // Temp files need no durable names: a crash discards them anyway.
        fs::create_dir_all(&tmp)?;
        // The shards must exist after a power cut, or no blob renamed into
        // one would (done once; afterwards they exist).
        let shards: Vec<String> = (0..=255u8).map(|shard| format!("{shard:02x}")).collect();
        crate::durable::create_children_durable(&blobs, &shards)?;
        Ok(Self { blobs, tmp })
    }

    /// A fresh random blob id (128 bits, hex).
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Where blob `id` lives. Ids are our own hex strings; anything else
    /// (a corrupt record) maps to a name that cannot exist.
    pub fn path(&self, id: &str) -> PathBuf {
        if id.len() >= 2 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.blobs.join(&id[..2]).join(id)
        } else {
            self.blobs.join("invalid-blob-id")
        }
    }

    pub fn create_tmp(&self) -> io::Result<TmpFile> {
        let path = self.tmp.join(Self::new_id());
        // Readable too: a spooled body (`spool`) is read back through it.
        let file = fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        Ok(TmpFile { file, path, armed: true })
    }

    /// Makes a written temp file a durable blob: fsync, rename, fsync dir.
    pub fn commit(&self, mut tmp: TmpFile) -> io::Result<String> {
        tmp.file.sync_data()?;
        let id = Self::new_id();
        let dst = self.path(&id);
        fs::rename(&tmp.path, &dst)?;
        tmp.armed = false;
        sync_parent(&dst)?;
        Ok(id)
    }

    /// A second name for an existing (immutable) blob: CopyObject without
    /// copying bytes. Deleting either name leaves the other intact.
    pub fn link(&self, src: &str) -> io::Result<String> {
        let id = Self::new_id();
        let dst = self.path(&id);
        fs::hard_link(self.path(src), &dst)?;
        sync_parent(&dst)?;
        Ok(id)
    }

    /// Concatenates blobs into a new durable blob (CompleteMultipartUpload).
    pub fn concat(&self, parts: &[String]) -> io::Result<String> {
        let mut tmp = self.create_tmp()?;
        for id in parts {
            let mut part = File::open(self.path(id))?;
            io::copy(&mut part, &mut tmp.file)?;
        }
        self.commit(tmp)
    }

    /// Best effort: a blob that fails to go is an orphan the next start sweeps.
    pub fn remove(&self, id: &str) {
        if let Err(e) = fs::remove_file(self.path(id))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(blob = id, error = %e, "cannot remove blob");
        }
    }

    /// Every blob id on disk (for the orphan sweep at start).
    pub fn all_ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for shard in fs::read_dir(&self.blobs)? {
            for entry in fs::read_dir(shard?.path())? {
                if let Some(name) = entry?.file_name().to_str() {
                    ids.push(name.to_owned());
                }
            }
        }
        Ok(ids)
    }

    /// Reads `len` bytes at `start` of blob `id` in one go.
    pub fn read_range(&self, id: &str, start: u64, len: usize) -> io::Result<Bytes> {
        let mut file = File::open(self.path(id))?;
        if start > 0 {
            file.seek(SeekFrom::Start(start))?;
        }
        let mut buf = vec![0; len];
        file.read_exact(&mut buf)?;
        Ok(Bytes::from(buf))
    }
}

impl TmpFile {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }
}

/// `fsync` of the directory holding `path`, so a rename or link survives a crash.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => crate::durable::sync_dir(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_link_concat_and_tmp_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        let mut t = blobs.create_tmp().unwrap();
        t.write(b"hello ").unwrap();
        let a = blobs.commit(t).unwrap();
        let b = blobs.link(&a).unwrap();
        let c = blobs.concat(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(blobs.read_range(&c, 0, 12).unwrap(), Bytes::from_static(b"hello hello "));
        blobs.remove(&a);
        assert_eq!(blobs.read_range(&b, 1, 4).unwrap(), Bytes::from_static(b"ello"));
        drop(blobs.create_tmp().unwrap());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(blobs.path("../x"), dir.path().join("blobs").join("invalid-blob-id"));
    }
}
