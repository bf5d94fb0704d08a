"""Shared fixtures for the end-to-end tests: the real release binary, started
on free loopback ports over a temporary data dir, and real clients (boto3,
aws-cli) pointed at it."""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

ROOT = Path(__file__).resolve().parent.parent
BINARY = Path(
    os.environ.get("CRUNCHBOX_BIN", Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "crunchbox")
)
CORPUS = Path(os.environ.get("CRUNCHBOX_CORPUS", ROOT.parent / "shared" / "corpus"))
ACCESS_KEY = "crunchbox"
SECRET_KEY = "crunchbox-secret"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


class Server:
    """One `crunchbox serve` process. kill9() and start() keep the data dir,
    so a test can crash it and bring it back."""

    def __init__(
        self,
        data_dir: Path,
        roles: str = "s3,sqs,web,worker",
        env: dict | None = None,
        args: list[str] | None = None,
        ephemeral: bool = False,
        split_stdout: bool = False,
    ):
        """`env` values of None remove that variable from the inherited
        environment. `args` go after the usual flags. `ephemeral` runs
        `serve --ephemeral` instead of `--data-dir` (data_dir then only names
        the log). `split_stdout` keeps stdout (banner, `Ready.`) apart in
        stdout_path; the log then holds stderr only."""
        self.data_dir = data_dir
        self.roles = roles
        self.aws_port = free_port()
        self.web_port = free_port()
        self.extra_env = env or {}
        self.args = list(args or [])
        self.ephemeral = ephemeral
        self.split_stdout = split_stdout
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.stdout_path = data_dir.parent / f"{data_dir.name}.stdout"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            {
                "CRUNCHBOX_AWS_LISTEN": f"127.0.0.1:{self.aws_port}",
                "CRUNCHBOX_WEB_LISTEN": f"127.0.0.1:{self.web_port}",
                "CRUNCHBOX_WEB_PUBLIC_URL": self.web,
                "RUST_LOG": env.get("RUST_LOG", "info"),
            }
        )
        for key, value in self.extra_env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def start(self) -> "Server":
        log = open(self.log_path, "ab")
        out = open(self.stdout_path, "ab") if self.split_stdout else log
        where = ["--ephemeral"] if self.ephemeral else ["--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--roles", self.roles, *where, *self.args],
            env=self.env(),
            stdout=out,
            stderr=log if self.split_stdout else subprocess.STDOUT,
        )
        if "s3" in self.roles or "sqs" in self.roles:
            wait_for_port(self.aws_port)
        if "web" in self.roles:
            wait_for_port(self.web_port)
        return self

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int:
        """Graceful stop (SIGTERM); returns the exit code."""
        if not self.proc:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stdout(self) -> str:
        """What the server printed on stdout (with split_stdout; else the
        merged log)."""
        if not self.split_stdout:
            return self.log()
        try:
            return self.stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    def s3(self, **kw):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=kw.get("access", ACCESS_KEY),
            aws_secret_access_key=kw.get("secret", SECRET_KEY),
            region_name=REGION,
            config=BotoConfig(
                s3={"addressing_style": kw.get("addressing_style", "path")},
                retries={"max_attempts": 2},
                # botocore presigns S3 URLs with Signature Version 2 unless told.
                signature_version=kw.get("signature_version"),
            ),
        )

    def sqs(self, **kw):
        return boto3.client(
            "sqs",
            endpoint_url=self.endpoint,
            aws_access_key_id=kw.get("access", ACCESS_KEY),
            aws_secret_access_key=kw.get("secret", SECRET_KEY),
            region_name=REGION,
        )

    def aws_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs aws-cli against this server with the default credentials."""
        env = dict(os.environ)
        env.update(
            {
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_PAGER": "",
            }
        )
        aws = shutil.which("aws", path=str(Path(os.environ.get("VIRTUAL_ENV", "/nonexistent")) / "bin")) or "aws"
        return subprocess.run(
            [aws, "--endpoint-url", self.endpoint, *args], env=env, capture_output=True, text=True, check=check
        )

    def http(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """Plain HTTP to the web role; returns (status, headers, body)."""
        req = urllib.request.Request(self.web + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()


@pytest.fixture
def server_factory(tmp_path):
    """Makes servers over data dirs in tmp_path; stops them all afterwards."""
    servers: list[Server] = []

    def make(roles: str = "s3,sqs,web,worker", name: str = "data", env: dict | None = None, **kw) -> Server:
        srv = Server(tmp_path / name, roles=roles, env=env, **kw)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def server(server_factory):
    """A started server with every role."""
    return server_factory().start()


@pytest.fixture
def corpus() -> Path:
    assert CORPUS.is_dir(), f"corpus missing at {CORPUS}"
    return CORPUS
