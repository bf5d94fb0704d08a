"""The README's Quick start, followed literally on a clean clone: its
`<!-- readme:run -->` command starts everything, the banner says where, the
web role answers there, the banner's `try:` line works as printed, and
SIGTERM stops it cleanly. The web port is not the default and only
`web.listen` says so, as a newcomer would set it: every URL handed out must
follow. The README's s3cmd line works as printed (its port aside)."""

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import io
import json
import urllib.request
from pathlib import Path

from PIL import Image

from conftest import free_port

HERE = Path(__file__).resolve().parent
# Room for a rebuild of the crunchbox crate when the shared target dir is not
# up to date with the clone (a few minutes on a busy 2-core machine); with a
# fresh target dir (CI builds right before e2e) the command starts at once.
START_TIMEOUT = 600


def repo_root() -> Path:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=HERE, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def readme_block(readme: str, marker: str) -> list[str]:
    """The commands of the fenced block right after `<!-- readme:MARKER -->`."""
    m = re.search(rf"<!--\s*readme:{marker}\s*-->\s*\n```[a-z]*\n(.*?)\n```", readme, re.S)
    assert m, f"README has no <!-- readme:{marker} --> block"
    return [line for line in m.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def keep_unchanged_files_fresh(clone: Path, root: Path) -> None:
    """Gives each file of the clone whose bytes equal the working tree's the
    working tree's mtime, so cargo (which judges freshness by mtime) sees the
    sources it already built in the shared target dir and does not rebuild
    them only because `git clone` just wrote them. A file that differs keeps
    its new mtime and is rebuilt, as it must be. `.git/HEAD` and the branch
    refs count too: build.rs records the commit and reruns when they change."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=clone, capture_output=True, check=True).stdout
    paths = [p.decode() for p in tracked.split(b"\0") if p]
    paths += [".git/HEAD"] + [str(p.relative_to(clone)) for p in (clone / ".git/refs/heads").rglob("*") if p.is_file()]
    same_refs = True
    for rel in paths:
        ours, theirs = clone / rel, root / rel
        try:
            same = ours.read_bytes() == theirs.read_bytes()
        except OSError:
            same = False
        if same:
            st = theirs.stat()
            os.utime(ours, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif rel.startswith(".git/"):
            same_refs = False
    if same_refs:
        st = (root / ".git/refs/heads").stat()
        os.utime(clone / ".git/refs/heads", ns=(st.st_atime_ns, st.st_mtime_ns))


def forget_clone_build(target: Path, since: float) -> None:
    """The clone was built from HEAD into the shared target dir while the
    working tree has uncommitted edits older than that build: cargo would
    now take those edits as built. Dropping the dep-info files that build
    wrote makes the next build in the working tree compile them again."""
    for dep_info in (target / "release" / ".fingerprint").glob("crunchbox-*/dep-*"):
        try:
            if dep_info.stat().st_mtime >= since:
                dep_info.unlink()
        except OSError:
            pass


def test_readme_quick_start_on_a_clean_clone(tmp_path):
    root = repo_root()
    started = time.time() - 1
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    readme = (root / "README.md").read_text()
    run = readme_block(readme, "run")
    assert len(run) == 1 and run[0].startswith("cargo run ") and " serve" in run[0], run

    clone = tmp_path / "crunchbox"
    subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
    assert not (clone / "target").exists()
    keep_unchanged_files_fresh(clone, root)

    web_port, aws_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            # Reuse the repository's own target dir so the release build is not redone from
            # cold (hundreds of crates, far too slow for a test); the clone is still built and
            # run by the README's command. (When the clone differs from what that dir was last
            # built from, cargo rebuilds the crunchbox crate there, from HEAD.)
            "CARGO_TARGET_DIR": str(root / "target"),
            # Free ports instead of the defaults (8080/4566), which another server may hold;
            # the environment is a documented way to configure, the command stays as written.
            # No CRUNCHBOX_WEB_PUBLIC_URL: the URLs handed out must follow web.listen.
            "CRUNCHBOX_WEB_LISTEN": f"127.0.0.1:{web_port}",
            "CRUNCHBOX_AWS_LISTEN": f"127.0.0.1:{aws_port}",
            "RUST_LOG": "info",
        }
    )
    env.pop("CRUNCHBOX_DATA_DIR", None)
    env.pop("CRUNCHBOX_WEB_PUBLIC_URL", None)
    cargo_log = tmp_path / "cargo-and-logs.txt"
    # cargo run exec()s the program on Unix, so this pid becomes crunchbox's.
    proc = subprocess.Popen(
        shlex.split(run[0]), cwd=clone, env=env, stdout=subprocess.PIPE, stderr=open(cargo_log, "wb"), text=True
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        banner = []
        deadline = time.monotonic() + START_TIMEOUT
        while not any(line.lstrip().startswith("try:") for line in banner):
            assert proc.poll() is None, f"exited with {proc.returncode}:\n{cargo_log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no banner after {START_TIMEOUT}s:\n{cargo_log.read_text()[-3000:]}"
            try:
                banner.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        text = "".join(banner)
        print(text)

        web = re.search(r"^crunchbox web:\s+(http://\S+)", text, re.M)
        assert web, text
        assert web.group(1) == f"http://127.0.0.1:{web_port}"
        assert f"images at http://127.0.0.1:{web_port}/a/ID" in text, text
        for path in ("/__lbheartbeat__", "/__heartbeat__"):
            with urllib.request.urlopen(web.group(1) + path, timeout=30) as resp:
                assert resp.status == 200, path
        with urllib.request.urlopen(web.group(1) + "/", timeout=30) as resp:
            assert resp.status == 200 and b"<html" in resp.read()

        try_line = re.search(r"^\s*try:\s*(.+)$", text, re.M).group(1)
        assert f"--endpoint-url http://127.0.0.1:{aws_port}" in try_line, try_line
        # A shell command line as printed; aws-cli from the e2e venv (the one running pytest).
        venv_bins = [Path(os.environ.get("VIRTUAL_ENV", "/nonexistent")) / "bin", Path(sys.executable).parent]
        shell_env = {
            "PATH": ":".join([*map(str, venv_bins), os.environ.get("PATH", "/usr/bin:/bin")]),
            "HOME": str(tmp_path),  # no ~/.aws of the person running the tests
            "AWS_PAGER": "",
        }
        result = subprocess.run(
            ["/bin/sh", "-c", try_line], cwd=tmp_path, env=shell_env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        buckets = {line.split()[-1] for line in result.stdout.splitlines() if line.strip()}
        assert {"crunchbox-uploads", "crunchbox-public"} <= buckets, result.stdout

        upload_follows_the_port(web.group(1))
        upload_cli_follows_the_port(root / "target" / "release" / "crunchbox", web.group(1), web_port, tmp_path)
        s3cmd_as_printed(readme, aws_port, tmp_path, shell_env)

        assert (clone / "crunchbox-data").is_dir(), "data_dir default is ./crunchbox-data"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, cargo_log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if dirty and "Compiling crunchbox" in cargo_log.read_text(errors="replace"):
            forget_clone_build(root / "target", started)


def upload_follows_the_port(web: str) -> None:
    """An upload's `url`, its status's variants, and the variants themselves
    are on the port the web role listens on, not the default 8080."""
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    req = urllib.request.Request(
        web + "/v1/avatar/upload",
        data=buf.getvalue(),
        method="POST",
        headers={"Authorization": "Bearer dev-token", "Content-Type": "image/png"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        created = json.load(resp)
    assert created["url"] == f"{web}/a/{created['id']}", created
    deadline = time.monotonic() + 120
    while True:
        with urllib.request.urlopen(f"{web}/v1/avatar/{created['id']}", timeout=30) as resp:
            status = json.load(resp)
        if status["status"] != "pending":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "ready", status
    for name, url in status["variants"].items():
        assert url.startswith(web + "/a/"), (name, url)
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and resp.read(), url


def upload_cli_follows_the_port(binary: Path, web: str, web_port: int, tmp_path: Path) -> None:
    """`crunchbox upload` run with only the same `CRUNCHBOX_WEB_LISTEN` (no
    --endpoint) reaches that web role, and prints URLs on its port."""
    photo = tmp_path / "cli.png"
    Image.new("RGB", (48, 32), (20, 160, 40)).save(photo, "PNG")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRUNCHBOX_")}
    env["CRUNCHBOX_WEB_LISTEN"] = f"127.0.0.1:{web_port}"
    done = subprocess.run(
        [str(binary), "upload", "--wait-secs", "100", str(photo)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    urls = re.findall(r"http://\S+", done.stdout)
    assert len(urls) == 3 and all(u.startswith(f"{web}/a/") for u in urls), done.stdout


def s3cmd_block(readme: str) -> str:
    """The README's s3cmd command, continuation lines joined."""
    m = re.search(r"\*\*s3cmd\*\*\s*\n+```sh\n(.*?)\n```", readme, re.S)
    assert m, "README has no s3cmd example"
    return m.group(1).replace("\\\n", " ")


def s3cmd_as_printed(readme: str, aws_port: int, tmp_path: Path, shell_env: dict) -> None:
    """The s3cmd line as the README prints it (only the port is ours) lists
    the buckets, and makes one with `mb`; without `--region` too, where
    s3cmd signs for `US` and must be told the region to retry with."""
    line = s3cmd_block(readme).replace("127.0.0.1:4566", f"127.0.0.1:{aws_port}")
    assert line.count(f"127.0.0.1:{aws_port}") == 2 and line.split()[0] == "s3cmd", line

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["/bin/sh", "-c", command], cwd=tmp_path, env=shell_env, capture_output=True, text=True, timeout=60
        )

    listed = run(line)
    assert listed.returncode == 0, listed.stderr
    assert "s3://crunchbox-uploads" in listed.stdout and "s3://crunchbox-public" in listed.stdout, listed.stdout
    made = run(re.sub(r" ls$", " mb s3://from-s3cmd", line.strip()))
    assert made.returncode == 0, made.stderr
    assert "s3://from-s3cmd" in run(line).stdout

    bare = re.sub(r"\s--region=\S+", "", line)
    assert "--region" not in bare
    for command in (bare, re.sub(r" ls$", " mb s3://from-s3cmd-us", bare.strip())):
        result = run(command)
        assert result.returncode == 0, (command, result.stderr)
    assert "s3://from-s3cmd-us" in run(bare).stdout
