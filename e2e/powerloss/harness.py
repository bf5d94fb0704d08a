"""Drives plfs (plfs.py) from tests: mount, cut power, remount."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PLFS = Path(__file__).resolve().parent / "plfs.py"


def fusermount() -> str:
    for name in ("fusermount3", "fusermount"):
        for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/bin"]:
            p = os.path.join(d, name)
            if os.access(p, os.X_OK):
                return p
    raise RuntimeError("fusermount3 not found (apt-get install fuse3)")


def available() -> str | None:
    """None if plfs can run here, else why not."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse missing"
    try:
        fusermount()
        import mfusepy  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return str(e)
    return None


class PowerLossMount:
    """A plfs mount of `backing` at `mount`. backing is the durable state."""

    def __init__(self, backing: Path, mount: Path, log: Path | None = None, real_fsync: bool = False):
        self.backing, self.mount = Path(backing), Path(mount)
        self.log_path = log or self.backing.parent / f"{self.mount.name}.plfs.log"
        self.real_fsync = real_fsync
        self.proc: subprocess.Popen | None = None
        self.cuts: list[dict] = []

    @property
    def control(self) -> Path:
        return self.mount / ".powerloss"

    def start(self) -> "PowerLossMount":
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, str(PLFS), str(self.backing), str(self.mount)]
        if self.real_fsync:
            args.append("--real-fsync")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mount):
            if self.proc.poll() is not None:
                raise RuntimeError(f"plfs exited {self.proc.returncode}: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"plfs did not mount {self.mount}: {self.log()[-2000:]}")
            time.sleep(0.02)
        return self

    def stats(self) -> dict:
        return json.loads(self.control.read_bytes())

    def command(self, cmd: str) -> None:
        fd = os.open(self.control, os.O_WRONLY)
        try:
            os.write(fd, cmd.encode())
        finally:
            os.close(fd)

    def cut(self) -> dict:
        """Power cut: drop everything unsynced. Kill the writers first."""
        before = self.stats()
        self.command("cut")
        after = self.stats()
        rec = {
            "dropped_bytes": after["bytes_dropped_at_cuts"] - before["bytes_dropped_at_cuts"],
            "dropped_entries": after["entries_dropped_at_cuts"] - before["entries_dropped_at_cuts"],
            "written": before["bytes_written"],
            "synced": before["bytes_synced"],
            "fsync": before["fsync"],
            "fsyncdir": before["fsyncdir"],
        }
        self.cuts.append(rec)
        return rec

    def unmount(self) -> None:
        if self.proc is None:
            return
        deadline = time.monotonic() + 10
        while os.path.ismount(self.mount):
            r = subprocess.run([fusermount(), "-u", str(self.mount)], capture_output=True, text=True)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                # something still holds it (a test that failed with a file open):
                # detach it lazily rather than leak a mount, and say so
                subprocess.run([fusermount(), "-u", "-z", str(self.mount)], capture_output=True)
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                raise RuntimeError(f"cannot unmount {self.mount} (busy; detached lazily): {r.stderr}")
            time.sleep(0.2)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def power_cycle(self, crash_only: bool = False) -> dict:
        """Cut, unmount, mount fresh: what a rebooted machine sees. With
        crash_only, everything pending is kept instead (a process crash with
        the machine up: the control run for the checks themselves)."""
        if crash_only:
            self.command("sync")
        rec = self.cut()
        self.unmount()
        self.start()
        return rec

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None:
            try:
                if os.path.ismount(self.mount):
                    self.command("cut")  # never let a torn run "sync" on the way out
            except OSError:
                pass
            self.unmount()


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: Path, top: Path) -> None:
    """mkdir -p path below top, fsyncing each new directory's parent."""
    path, top = Path(path), Path(top)
    missing = []
    p = path
    while p != top and not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
        fsync_path(d)
        fsync_path(d.parent)
