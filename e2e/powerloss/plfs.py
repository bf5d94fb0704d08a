#!/usr/bin/env python3
"""plfs: a power-loss file system (LazyFS-like) on FUSE, for tests.

    python3 plfs.py BACKING MOUNTPOINT [--real-fsync] [--debug]

Passes through to BACKING, but BACKING only ever holds the *durable* state:
what a real disk would still have after a power cut. Everything not yet made
durable lives in this process's memory and is served from there (a process
sees its own writes, sizes, names at once). Writing `cut` to the control file
`MOUNTPOINT/.powerloss` drops all of it: a power cut.

Durability model (strict POSIX, the rules a program must follow to be safe
on any Linux file system, not the extra ext4 happens to give):

- File data and size (write, truncate, fallocate) become durable only by
  fsync or fdatasync of that file (any descriptor of it). Both are treated
  alike (fdatasync also persists the size). Nothing else does: not close,
  not sync_file_range (FUSE never even hears of it), not msync, not sync(2)
  or syncfs, not an fsync of another file or of the directory.
- A directory entry change (create, mknod, mkdir, symlink, link, unlink,
  rmdir, rename) becomes durable only by fsync of the directory that holds
  the entry. fsync of a new file does NOT make its name durable: a file
  created, written and fsynced but whose directory was never fsynced is gone
  after a cut. A rename is durable on each side when that side's directory
  is fsynced (within one directory: atomically). A name made durable before
  its file's data was synced comes back as an empty (or older) file.
- Directories are the exception that cannot be helped: a directory has one
  backing location, so making a renamed directory's new entry durable moves
  it out of its old parent too (and making its old parent durable first
  hides it until the new parent is synced).
- Attributes (mode, times) are kept in memory and written with the file's
  fsync. Ownership changes are passed through. xattrs: not supported.

Power cut: writing `cut` to `MOUNTPOINT/.powerloss` discards every pending
write, size change and directory change at once (handles still open then get
EIO), so BACKING is exactly what survived. Kill the programs first, then cut,
then unmount (`fusermount3 -u MOUNTPOINT`) and mount again fresh. Other
commands: `sync` (make everything durable, like a clean shutdown) and
reading the control file gives counters as JSON. Unmounting without a cut
syncs everything first (a clean shutdown).

Hidden state: BACKING/.plstash holds the synced data of files that have no
durable name yet (and directories not yet linked in) — on a real disk those
are orphan inodes, so a cut and every mount empty it. The mount never shows
it.

Kernel caching: FUSE writeback cache is off (libfuse3's default; every
write(2) reaches this process before it returns), attr/entry/negative
timeouts are 0, and page cache is not kept across opens, so the kernel hides
nothing; remounting after a cut drops its caches entirely. The page cache is
used for reads and mmap (SQLite's -shm needs MAP_SHARED), which direct_io
would forbid.
"""

import argparse
import errno
import json
import logging
import os
import resource
import shutil
import stat
import sys
import threading
import time

import mfusepy as fuse

BLOCK = 64 * 1024
CONTROL = ".powerloss"
STASH = ".plstash"


def err(code):
    return fuse.FuseOSError(code)


class Node:
    _next = [1]

    def __init__(self, mode, uid=0, gid=0, times=None):
        self.ino = Node._next[0]
        Node._next[0] += 1
        self.mode = mode
        self.uid, self.gid = uid, gid
        now = time.time_ns()
        self.atime, self.mtime, self.ctime = times or (now, now, now)
        self.nlink = 0  # pending names
        self.opens = 0

    def touch(self, m=True):
        now = time.time_ns()
        if m:
            self.mtime = now
        self.ctime = now

    def attrs(self):
        return {
            "st_mode": self.mode,
            "st_nlink": max(self.nlink, 1) if not isinstance(self, Dir) else 2,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_size": self.size_(),
            "st_blocks": (self.size_() + 511) // 512,
            "st_blksize": 4096,
            "st_atime": self.atime,
            "st_mtime": self.mtime,
            "st_ctime": self.ctime,
        }

    def size_(self):
        return 0


class File(Node):
    """Pending content = backing bytes [0, floor) overlaid with dirty blocks,
    zeros elsewhere, cut at size. Invariant: floor <= size; dirty bytes at or
    past size are zero."""

    def __init__(self, mode, **kw):
        super().__init__(mode, **kw)
        self.has_backing = False  # BACKING/.plstash/f<ino> links the backing inode
        self.fd = None
        self.size = 0
        self.floor = 0
        self.dirty: dict[int, bytearray] = {}
        self.meta_dirty = False

    def size_(self):
        return self.size


class Dir(Node):
    def __init__(self, mode, **kw):
        super().__init__(mode, **kw)
        self.entries = None  # name -> Node, loaded lazily from backing
        self.fd = None  # fd of its backing directory
        self.bparent = None  # Dir holding the backing dir, or None = stash
        self.bname = None
        self.alive = True


class Symlink(Node):
    def __init__(self, target, **kw):
        super().__init__(stat.S_IFLNK | 0o777, **kw)
        self.target = target

    def size_(self):
        return len(self.target.encode())


class Handle:
    def __init__(self, node, epoch):
        self.node, self.epoch = node, epoch


class PowerLossFS(fuse.Operations):
    use_ns = True

    def __init__(self, backing, real_fsync=False):
        self.backing = os.path.abspath(backing)
        self.real_fsync = real_fsync
        self._mu = threading.RLock()
        self.epoch = 0
        self.stats = {"cuts": 0, "writes": 0, "bytes_written": 0, "bytes_read": 0, "fsync": 0, "fsyncdir": 0,
                      "bytes_synced": 0, "bytes_dropped_at_cuts": 0, "entries_dropped_at_cuts": 0}
        self.cut_state = False
        self._reset()

    # ---- state ------------------------------------------------------------

    def _reset(self):
        stash = os.path.join(self.backing, STASH)
        shutil.rmtree(stash, ignore_errors=True)
        os.mkdir(stash)
        self.stash_fd = os.open(stash, os.O_RDONLY | os.O_DIRECTORY)
        st = os.stat(self.backing)
        self.root = Dir(st.st_mode, uid=st.st_uid, gid=st.st_gid, times=(st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns))
        self.root.fd = os.open(self.backing, os.O_RDONLY | os.O_DIRECTORY)
        self.root.nlink = 1
        self.handles: dict[int, Handle] = {}
        self.next_fh = 1 + (self.epoch << 32)
        self.bfiles: dict[int, File] = {}  # backing st_ino -> File
        self.bdirs: dict[int, Dir] = {os.fstat(self.root.fd).st_ino: self.root}
        self.files: set[File] = set()
        self.dirs: set[Dir] = {self.root}

    def _close_all(self):
        for f in self.files:
            if f.fd is not None:
                os.close(f.fd)
                f.fd = None
        for d in self.dirs:
            if d.fd is not None:
                os.close(d.fd)
                d.fd = None
        os.close(self.stash_fd)

    def cut(self):
        """Power cut: everything pending is gone; BACKING is what survived."""
        dropped = sum(len(b) for f in self.files for b in f.dirty.values())
        entries = 0
        for d in self.dirs:
            if d.entries is not None and d.fd is not None:
                names = set(self._backing_names(d))
                entries += len(names.symmetric_difference(d.entries))
        self.stats["bytes_dropped_at_cuts"] += dropped
        self.stats["entries_dropped_at_cuts"] += entries
        self.stats["cuts"] += 1
        self._close_all()
        self.epoch += 1
        Node._next[0] = 1
        self._reset()
        # (no os.sync() here: it would write back this mount's own dirty mmap
        # pages and wait for this single-threaded daemon: a deadlock)
        return {"dropped_bytes": dropped, "dropped_entries": entries}

    def sync_all(self):
        for f in list(self.files):
            if f.dirty or f.meta_dirty or f.size != f.floor or (f.nlink > 0 and not f.has_backing):
                self._fsync_file(f)
        # top-down, so a parent links a child that then links its own
        for d in self._dirs_top_down():
            self._fsync_dir(d)

    def _dirs_top_down(self):
        out, todo = [], [self.root]
        while todo:
            d = todo.pop()
            out.append(d)
            if d.entries is not None:
                todo.extend(c for c in d.entries.values() if isinstance(c, Dir))
        return out

    # ---- backing helpers -------------------------------------------------

    def _backing_names(self, d):
        names = os.listdir(d.fd)
        if d is self.root:
            names = [n for n in names if n != STASH]
        return names

    def _load(self, d):
        if d.entries is not None:
            return d.entries
        d.entries = {}
        for name in self._backing_names(d):
            st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
            t = dict(uid=st.st_uid, gid=st.st_gid, times=(st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns))
            if stat.S_ISDIR(st.st_mode):
                c = Dir(st.st_mode, **t)
                c.fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=d.fd)
                c.bparent, c.bname = d, name
                self.bdirs[st.st_ino] = c
                self.dirs.add(c)
            elif stat.S_ISREG(st.st_mode):
                c = self.bfiles.get(st.st_ino)
                if c is None or c not in self.files:  # unknown, or a dropped inode's surviving hard link
                    c = File(st.st_mode, **t)
                    c.size = c.floor = st.st_size
                    os.link(name, f"f{c.ino}", src_dir_fd=d.fd, dst_dir_fd=self.stash_fd, follow_symlinks=False)
                    c.has_backing = True
                    self.bfiles[st.st_ino] = c
                    self.files.add(c)
            elif stat.S_ISLNK(st.st_mode):
                c = Symlink(os.readlink(name, dir_fd=d.fd), **t)
            else:
                continue  # fifos, sockets, devices: not supported
            c.nlink += 1
            d.entries[name] = c
        return d.entries

    def _bfd(self, f):
        """fd of the file's backing inode, created empty if it has none."""
        if f.fd is None:
            flags = os.O_RDWR
            if not f.has_backing:
                flags |= os.O_CREAT | os.O_EXCL
            f.fd = os.open(f"f{f.ino}", flags, stat.S_IMODE(f.mode) | 0o600, dir_fd=self.stash_fd)
            if not f.has_backing:
                f.has_backing = True
                self.bfiles[os.fstat(f.fd).st_ino] = f
        return f.fd

    def _drop_file(self, f):
        """No name and no open handle: the inode is gone (its durable names,
        if any, stay in BACKING until their directories are synced)."""
        if f.fd is not None:
            os.close(f.fd)
            f.fd = None
        if f.has_backing:
            try:
                os.unlink(f"f{f.ino}", dir_fd=self.stash_fd)
            except FileNotFoundError:
                pass
            f.has_backing = False
        f.dirty.clear()
        self.files.discard(f)

    # ---- file content ----------------------------------------------------

    def _base(self, f, start, n):
        """Bytes [start, start+n) of the file as of its last sync (backing
        content below floor), zero-padded."""
        out = bytearray(n)
        lim = min(start + n, f.floor)
        if f.has_backing and lim > start:
            data = os.pread(self._bfd(f), lim - start, start)
            out[: len(data)] = data
        return out

    def _read(self, f, size, off):
        end = min(off + size, f.size)
        if end <= off:
            return b""
        buf = self._base(f, off, end - off) if not f.dirty else None
        if buf is None:
            # only read the backing where there is no dirty block
            buf = bytearray(end - off)
            b0, b1 = off // BLOCK, (end - 1) // BLOCK
            run = None
            for b in range(b0, b1 + 2):
                if b <= b1 and b not in f.dirty:
                    if run is None:
                        run = b
                    continue
                if run is not None:
                    s, e = max(run * BLOCK, off), min(b * BLOCK, end)
                    buf[s - off : e - off] = self._base(f, s, e - s)
                    run = None
                if b <= b1:
                    blk = f.dirty[b]
                    s, e = max(b * BLOCK, off), min((b + 1) * BLOCK, end)
                    buf[s - off : e - off] = blk[s - b * BLOCK : e - b * BLOCK]
        self.stats["bytes_read"] += len(buf)
        return bytes(buf)

    def _block(self, f, b, whole):
        blk = f.dirty.get(b)
        if blk is None:
            blk = bytearray(BLOCK) if whole else self._base(f, b * BLOCK, BLOCK)
            if not whole:
                # bytes at or past size read as zeros (invariant for dirty blocks)
                cut = f.size - b * BLOCK
                if 0 <= cut < BLOCK:
                    blk[cut:] = bytes(BLOCK - cut)
            f.dirty[b] = blk
        return blk

    def _write(self, f, data, off):
        n = len(data)
        mv = memoryview(data)
        pos = 0
        while pos < n:
            a = off + pos
            b, o = divmod(a, BLOCK)
            k = min(BLOCK - o, n - pos)
            blk = self._block(f, b, o == 0 and k == BLOCK)
            blk[o : o + k] = mv[pos : pos + k]
            pos += k
        f.size = max(f.size, off + n)
        f.touch()
        self.stats["writes"] += 1
        self.stats["bytes_written"] += n
        return n

    def _truncate(self, f, length):
        if length < f.size:
            f.floor = min(f.floor, length)
            for b in [b for b in f.dirty if b * BLOCK >= length]:
                del f.dirty[b]
            b, o = divmod(length, BLOCK)
            if o and b in f.dirty:
                f.dirty[b][o:] = bytes(BLOCK - o)
        f.size = length
        f.touch()

    def _fsync_file(self, f):
        fd = self._bfd(f)
        synced = 0
        if os.fstat(fd).st_size > f.floor:
            os.ftruncate(fd, f.floor)
        for b in sorted(f.dirty):
            s = b * BLOCK
            if s >= f.size:
                continue
            chunk = f.dirty[b][: min(BLOCK, f.size - s)]
            os.pwrite(fd, chunk, s)
            synced += len(chunk)
        os.ftruncate(fd, f.size)
        if f.meta_dirty:
            os.fchmod(fd, stat.S_IMODE(f.mode))
        os.utime(fd, ns=(f.atime, f.mtime))
        if self.real_fsync:
            os.fsync(fd)
        f.dirty.clear()
        f.floor = f.size
        f.meta_dirty = False
        self.stats["fsync"] += 1
        self.stats["bytes_synced"] += synced

    # ---- directory durability --------------------------------------------

    def _evict(self, d, name):
        """Remove BACKING entry d/name; whatever still lives on keeps its
        backing (files through their stash link, directories moved to the
        stash)."""
        st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=d.fd)
            return
        x = self.bdirs.get(st.st_ino)
        if x is not None and x.alive:
            os.rename(name, f"d{x.ino}", src_dir_fd=d.fd, dst_dir_fd=self.stash_fd)
            x.bparent, x.bname = None, f"d{x.ino}"
            return
        # a removed directory: its durable contents go with it
        sub = x if x is not None and x.fd is not None else None
        fd = sub.fd if sub else os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=d.fd)
        tmp = Dir(0o40755)
        tmp.fd = fd
        for n in os.listdir(fd):
            self._evict(tmp, n)
        if not sub:
            os.close(fd)
        os.rmdir(name, dir_fd=d.fd)
        if sub:
            os.close(sub.fd)
            sub.fd = None
            self.bdirs.pop(st.st_ino, None)
            self.dirs.discard(sub)

    def _fsync_dir(self, d):
        """The directory's pending entries become its durable entries."""
        self.stats["fsyncdir"] += 1
        if d.entries is None or d.fd is None:
            return
        want = d.entries
        have = {}
        for name in self._backing_names(d):
            have[name] = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
        for name, st in have.items():
            c = want.get(name)
            if c is None or not self._is(c, st):
                self._evict(d, name)
                have[name] = None
        for name, c in want.items():
            if have.get(name) is not None:
                continue
            if isinstance(c, File):
                if not c.has_backing:
                    self._bfd(c)  # an empty file: its data was never synced
                os.link(f"f{c.ino}", name, src_dir_fd=self.stash_fd, dst_dir_fd=d.fd, follow_symlinks=False)
            elif isinstance(c, Dir):
                # from the stash, or from its old backing parent (it moves: see the model)
                src = c.bparent.fd if c.bparent is not None else self.stash_fd
                try:
                    os.rename(c.bname, name, src_dir_fd=src, dst_dir_fd=d.fd)
                except OSError as e:
                    logging.error("cannot move backing dir %s -> %s: %s", c.bname, name, e)
                    continue
                c.bparent, c.bname = d, name
            elif isinstance(c, Symlink):
                os.symlink(c.target, name, dir_fd=d.fd)
        if self.real_fsync:
            os.fsync(d.fd)

    def _is(self, c, st):
        if isinstance(c, File):
            return stat.S_ISREG(st.st_mode) and self.bfiles.get(st.st_ino) is c
        if isinstance(c, Dir):
            return stat.S_ISDIR(st.st_mode) and self.bdirs.get(st.st_ino) is c
        if isinstance(c, Symlink):
            return stat.S_ISLNK(st.st_mode)
        return False

    # ---- namespace -------------------------------------------------------

    def _lookup(self, path):
        node = self.root
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not isinstance(node, Dir):
                raise err(errno.ENOTDIR)
            node = self._load(node).get(part)
            if node is None:
                raise err(errno.ENOENT)
        return node

    def _parent(self, path):
        head, name = os.path.split(path.rstrip("/"))
        d = self._lookup(head or "/")
        if not isinstance(d, Dir):
            raise err(errno.ENOTDIR)
        if d is self.root and name in (STASH, CONTROL):
            raise err(errno.EPERM)
        return d, name

    def _node(self, path, fh=None):
        if fh is not None and fh in self.handles:
            return self._handle(fh).node
        return self._lookup(path)

    def _handle(self, fh):
        h = self.handles.get(fh)
        if h is None or h.epoch != self.epoch:
            raise err(errno.EIO)
        return h

    def _new_fh(self, node):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = Handle(node, self.epoch)
        node.opens += 1
        return fh

    def _unref(self, node):
        if isinstance(node, File) and node.nlink <= 0 and node.opens <= 0:
            self._drop_file(node)

    def _new_dir(self, mode):
        d = Dir(stat.S_IFDIR | (mode & 0o7777))
        d.entries = {}
        d.bname = f"d{d.ino}"
        os.mkdir(d.bname, stat.S_IMODE(d.mode) | 0o700, dir_fd=self.stash_fd)
        d.fd = os.open(d.bname, os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.stash_fd)
        self.bdirs[os.fstat(d.fd).st_ino] = d
        self.dirs.add(d)
        return d

    # ---- FUSE operations -------------------------------------------------

    def init_with_config(self, conn, config):
        if config is not None:
            config.attr_timeout = 0
            config.entry_timeout = 0
            config.negative_timeout = 0
            config.hard_remove = 1
            config.kernel_cache = 0
            config.auto_cache = 0
            config.direct_io = 0

    def destroy(self, path):
        with self._mu:
            if not self.cut_state:
                self.sync_all()
            self._close_all()
            if not self.cut_state:
                shutil.rmtree(os.path.join(self.backing, STASH), ignore_errors=True)

    def getattr(self, path, fh=None):
        with self._mu:
            if path == "/" + CONTROL:
                now = time.time_ns()
                return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": 0,
                        "st_atime": now, "st_mtime": now, "st_ctime": now}
            return self._node(path, fh).attrs()

    def access(self, path, amode):
        with self._mu:
            if path != "/" + CONTROL:
                self._lookup(path)
        return 0

    def statfs(self, path):
        st = os.statvfs(self.backing)
        return {k: getattr(st, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                                           "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def readdir(self, path, fh):
        with self._mu:
            d = self._lookup(path)
            if not isinstance(d, Dir):
                raise err(errno.ENOTDIR)
            return [".", ".."] + list(self._load(d))

    def opendir(self, path):
        with self._mu:
            d = self._lookup(path)
            if not isinstance(d, Dir):
                raise err(errno.ENOTDIR)
            return self._new_fh(d)

    def releasedir(self, path, fh):
        with self._mu:
            h = self.handles.pop(fh, None)
            if h is not None:
                h.node.opens -= 1
        return 0

    def fsyncdir(self, path, datasync, fh):
        with self._mu:
            h = self._handle(fh)
            self._fsync_dir(h.node)
        return 0

    def readlink(self, path):
        with self._mu:
            n = self._lookup(path)
            if not isinstance(n, Symlink):
                raise err(errno.EINVAL)
            return n.target

    def symlink(self, target, source):
        # mfusepy passes (link path, link target)
        with self._mu:
            d, name = self._parent(target)
            if name in self._load(d):
                raise err(errno.EEXIST)
            c = Symlink(source)
            c.nlink = 1
            d.entries[name] = c
            d.touch()
        return 0

    def mkdir(self, path, mode):
        with self._mu:
            d, name = self._parent(path)
            if name in self._load(d):
                raise err(errno.EEXIST)
            c = self._new_dir(mode)
            c.nlink = 1
            d.entries[name] = c
            d.touch()
        return 0

    def rmdir(self, path):
        with self._mu:
            d, name = self._parent(path)
            c = self._load(d).get(name)
            if c is None:
                raise err(errno.ENOENT)
            if not isinstance(c, Dir):
                raise err(errno.ENOTDIR)
            if self._load(c):
                raise err(errno.ENOTEMPTY)
            del d.entries[name]
            c.alive = False
            d.touch()
        return 0

    def create(self, path, mode, flags=0):
        with self._mu:
            d, name = self._parent(path)
            ents = self._load(d)
            c = ents.get(name)
            if c is not None:
                if flags & os.O_EXCL:
                    raise err(errno.EEXIST)
                if isinstance(c, Dir):
                    raise err(errno.EISDIR)
                if flags & os.O_TRUNC:
                    self._truncate(c, 0)
                return self._new_fh(c)
            c = File(stat.S_IFREG | (mode & 0o7777))
            c.meta_dirty = True
            c.nlink = 1
            ents[name] = c
            self.files.add(c)
            d.touch()
            return self._new_fh(c)

    def mknod(self, path, mode, dev):
        if not stat.S_ISREG(mode):
            raise err(errno.EPERM)
        fh = self.create(path, mode, os.O_EXCL)
        self.release(path, fh)
        return 0

    def open(self, path, flags):
        with self._mu:
            if path == "/" + CONTROL:
                return 0
            n = self._lookup(path)
            if isinstance(n, Dir) and flags & (os.O_WRONLY | os.O_RDWR):
                raise err(errno.EISDIR)
            if isinstance(n, File) and flags & os.O_TRUNC:
                self._truncate(n, 0)
            return self._new_fh(n)

    def release(self, path, fh):
        with self._mu:
            h = self.handles.pop(fh, None)
            if h is not None:
                h.node.opens -= 1
                self._unref(h.node)
        return 0

    def flush(self, path, fh):
        return 0

    def read(self, path, size, offset, fh):
        with self._mu:
            if fh == 0 and path == "/" + CONTROL:
                data = json.dumps(self._stats()).encode() + b"\n"
                return data[offset : offset + size]
            n = self._handle(fh).node
            if not isinstance(n, File):
                raise err(errno.EISDIR)
            return self._read(n, size, offset)

    def write(self, path, data, offset, fh):
        with self._mu:
            if fh == 0 and path == "/" + CONTROL:
                return self._control(data)
            n = self._handle(fh).node
            if not isinstance(n, File):
                raise err(errno.EISDIR)
            return self._write(n, data, offset)

    def truncate(self, path, length, fh=None):
        with self._mu:
            if path == "/" + CONTROL:
                return 0
            n = self._node(path, fh)
            if not isinstance(n, File):
                raise err(errno.EISDIR)
            self._truncate(n, length)
        return 0

    def fallocate(self, path, mode, offset, size, fh):
        with self._mu:
            n = self._handle(fh).node
            if mode & ~1:  # only FALLOC_FL_KEEP_SIZE
                raise err(errno.EOPNOTSUPP)
            if not mode & 1 and offset + size > n.size:
                n.size = offset + size  # zeros: dirty bytes past the old size are zero
                n.touch()
        return 0

    def fsync(self, path, datasync, fh):
        with self._mu:
            if fh == 0:
                return 0
            n = self._handle(fh).node
            if isinstance(n, File):
                self._fsync_file(n)
            elif isinstance(n, Dir):
                self._fsync_dir(n)
        return 0

    def unlink(self, path):
        with self._mu:
            d, name = self._parent(path)
            c = self._load(d).get(name)
            if c is None:
                raise err(errno.ENOENT)
            if isinstance(c, Dir):
                raise err(errno.EISDIR)
            del d.entries[name]
            c.nlink -= 1
            c.touch(m=False)
            d.touch()
            self._unref(c)
        return 0

    def link(self, target, source):
        # mfusepy passes (new name, existing path)
        with self._mu:
            n = self._lookup(source)
            if not isinstance(n, File):
                raise err(errno.EPERM)
            d, name = self._parent(target)
            if name in self._load(d):
                raise err(errno.EEXIST)
            d.entries[name] = n
            n.nlink += 1
            n.touch(m=False)
            d.touch()
        return 0

    def rename(self, old, new, flags=0):
        with self._mu:
            od, oname = self._parent(old)
            nd, nname = self._parent(new)
            c = self._load(od).get(oname)
            if c is None:
                raise err(errno.ENOENT)
            ents = self._load(nd)
            t = ents.get(nname)
            if flags & 2:  # RENAME_EXCHANGE
                raise err(errno.EINVAL)
            if t is not None and flags & 1:  # RENAME_NOREPLACE
                raise err(errno.EEXIST)
            if t is c:
                return 0
            if isinstance(c, Dir):
                # not into itself
                x = nd
                chain = set()
                stack = [c]
                while stack:
                    y = stack.pop()
                    chain.add(id(y))
                    if y.entries:
                        stack.extend(z for z in y.entries.values() if isinstance(z, Dir))
                if id(x) in chain:
                    raise err(errno.EINVAL)
            if t is not None:
                if isinstance(t, Dir):
                    if not isinstance(c, Dir):
                        raise err(errno.EISDIR)
                    if self._load(t):
                        raise err(errno.ENOTEMPTY)
                    t.alive = False
                elif isinstance(c, Dir):
                    raise err(errno.ENOTDIR)
                t.nlink -= 1
                self._unref(t)
            del od.entries[oname]
            ents[nname] = c
            c.touch(m=False)
            od.touch()
            nd.touch()
        return 0

    def chmod(self, path, mode):
        with self._mu:
            n = self._lookup(path)
            n.mode = (n.mode & ~0o7777) | (mode & 0o7777)
            n.touch(m=False)
            if isinstance(n, File):
                n.meta_dirty = True
        return 0

    def chown(self, path, uid, gid):
        with self._mu:
            n = self._lookup(path)
            if uid != -1 and uid != 0xFFFFFFFF:
                n.uid = uid
            if gid != -1 and gid != 0xFFFFFFFF:
                n.gid = gid
            n.touch(m=False)
        return 0

    def utimens(self, path, times=None):
        with self._mu:
            if path == "/" + CONTROL:
                return 0
            n = self._lookup(path)
            if times is None:
                now = time.time_ns()
                times = (now, now)
            n.atime, n.mtime = times
            n.touch(m=False)
        return 0

    # ---- control ---------------------------------------------------------

    def _stats(self):
        s = dict(self.stats)
        s["pending_bytes"] = sum(len(b) for f in self.files for b in f.dirty.values())
        s["epoch"] = self.epoch
        return s

    def _control(self, data):
        cmd = data.decode(errors="replace").strip()
        if cmd == "cut":
            res = self.cut()
            self.cut_state = True
            logging.warning("power cut: %s", res)
        elif cmd == "sync":
            self.sync_all()
        elif cmd:
            raise err(errno.EINVAL)
        return len(data)


class PLFUSE(fuse.FUSE):
    """mfusepy, plus: ftruncate gets its handle; the control file is direct_io."""

    def truncate_fuse_3(self, path, length, fip):
        fh = fip.contents.fh if fip else None
        p = None if path is None else path.decode(self.encoding, self.errors)
        return self.operations.truncate(p, length, fh)

    def open(self, path, fip):
        fi = fip.contents
        p = path.decode(self.encoding, self.errors)
        fi.fh = self.operations.open(p, fi.flags)
        if p == "/" + CONTROL:
            fi.direct_io = 1
        return 0

    def create(self, path, mode, fip):
        fi = fip.contents
        fi.fh = self.operations.create(path.decode(self.encoding, self.errors), mode, fi.flags)
        return 0

    def rename_fuse_3(self, old, new, flags):
        return self.operations.rename(old.decode(self.encoding, self.errors), new.decode(self.encoding, self.errors),
                                      flags)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("backing")
    ap.add_argument("mountpoint")
    ap.add_argument("--real-fsync", action="store_true", help="also fsync BACKING when a sync applies (slower)")
    ap.add_argument("--debug", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.WARNING, format="plfs: %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ops = PowerLossFS(a.backing, real_fsync=a.real_fsync)
    PLFUSE(ops, a.mountpoint, foreground=True, nothreads=True, fsname="plfs", subtype="plfs",
           debug=a.debug)


if __name__ == "__main__":
    sys.exit(main())
