#!/usr/bin/env bash
# Run moto's own SQS test suite (tests/test_sqs from moto's sdist, in moto's
# "server mode") against moto_server and against crunchbox's embedded SQS, then
# print pass counts and every crunchbox failure with a one-line reason.
#
#   bench/moto_sqs_suite.sh [extra pytest args, e.g. -k fifo]
#
# Environment:
#   CRUNCHBOX_BIN      crunchbox binary (default target/release/crunchbox, relative to the repo)
#   CRUNCHBOX_TOOLS    cache dir (default ~/.cache/crunchbox-tools): the suite venv
#                      (moto-suite-venv) and the unpacked moto tests (moto-sqs-tests/)
#   MOTO_VERSION       moto version (default: the one in $CRUNCHBOX_TOOLS/venv, else 5.2.5)
#   MOTO_SQS_TARGETS   which runs, in order (default "moto crunchbox"; also crunchbox-reset);
#                      crunchbox-reset = crunchbox again, with moto's reset emulated
#                      by deleting every queue (tells which failures come only from
#                      crunchbox not implementing POST /moto-api/reset)
#   MOTO_SQS_PORT      port for the server under test (default 5000 if free: two tests
#                      hard-code http://localhost:5000 in server mode; else a free port)
#   MOTO_SQS_OUT       where junit XML, pytest and server logs go (default /tmp/moto-sqs-suite)
#   MOTO_SQS_CRUNCHBOX_LOG  copy of the crunchbox pytest output (default /tmp/moto_sqs_crunchbox.log)
#   MOTO_SQS_TIMEOUT   per-test timeout in seconds (pytest-timeout; default 90)
#   MOTO_SQS_INCLUDE_INPROCESS=1  also run tests/test_sqs/test_server.py, whose tests
#                      drive moto's Flask app in-process and never reach the target
#                      (excluded by default so they don't count as crunchbox passes)
#
# The machine may have few cores: the targets run one after another.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${CRUNCHBOX_TOOLS:-$HOME/.cache/crunchbox-tools}"
BIN="${CRUNCHBOX_BIN:-target/release/crunchbox}"
[[ "$BIN" = /* ]] || BIN="$REPO/$BIN"
OUT="${MOTO_SQS_OUT:-/tmp/moto-sqs-suite}"
CB_LOG_COPY="${MOTO_SQS_CRUNCHBOX_LOG:-/tmp/moto_sqs_crunchbox.log}"
TIMEOUT="${MOTO_SQS_TIMEOUT:-90}"
TARGETS="${MOTO_SQS_TARGETS:-moto crunchbox}"
SUITE_VENV="$TOOLS/moto-suite-venv"
PY="$SUITE_VENV/bin/python"
# moto's server mode signs with these (moto/core/models.py, MockAWS._fake_creds).
MOTO_KEY=FOOBARKEY
MOTO_SECRET=FOOBARSECRET
ACCOUNT_ID=123456789012 # moto's DEFAULT_ACCOUNT_ID, which the tests assert on

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'moto_sqs_suite: %s\n' "$*" >&2; exit 1; }

mkdir -p "$TOOLS" "$OUT"

# ---------------------------------------------------------------- moto version
if [[ -z "${MOTO_VERSION:-}" ]]; then
	MOTO_VERSION="$("$TOOLS/venv/bin/pip" show moto 2>/dev/null | awk '/^Version:/{print $2}')" || true
	MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
fi

# ---------------------------------------------------------------- suite venv
venv_moto_version() { "$PY" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true; }
ensure_venv() { # $1 = moto version
	if [[ ! -x "$PY" ]]; then
		log "creating $SUITE_VENV"
		python3 -m venv "$SUITE_VENV"
		"$PY" -m pip install -q --upgrade pip >/dev/null
	fi
	if [[ "$(venv_moto_version)" != "$1" ]] \
		|| ! "$PY" -c 'import pytest, pytest_timeout, freezegun, flask, boto3' 2>/dev/null; then
		log "installing moto[server]==$1 pytest pytest-timeout freezegun into $SUITE_VENV"
		"$PY" -m pip install -q "moto[server]==$1" pytest pytest-timeout freezegun
	fi
}

# ---------------------------------------------------------------- moto's tests, from its sdist
TESTS_CACHE="$TOOLS/moto-sqs-tests"
fetch_tests() { # $1 = version; succeeds iff the sdist holds tests/test_sqs
	local v="$1" dest="$TESTS_CACHE/moto-$1" tmp
	[[ -f "$dest/tests/test_sqs/test_sqs.py" ]] && return 0
	tmp="$(mktemp -d)"
	log "downloading moto $v sdist"
	if ! "$PY" -m pip download -q --no-binary :all: --no-deps "moto==$v" -d "$tmp" >/dev/null 2>&1; then
		rm -rf "$tmp"
		return 1
	fi
	local sdist
	sdist="$(ls "$tmp"/moto-*.tar.gz 2>/dev/null | head -1)"
	# (grep without -q: with pipefail, an early grep exit would SIGPIPE tar)
	if [[ -z "$sdist" ]] || ! tar tzf "$sdist" | grep "^moto-$v/tests/test_sqs/test_sqs.py$" >/dev/null; then
		log "moto $v sdist has no tests/test_sqs"
		rm -rf "$tmp"
		return 1
	fi
	mkdir -p "$TESTS_CACHE"
	# Only tests/ (not moto/, so `import moto` is the venv's) and the pytest config.
	tar xzf "$sdist" -C "$tmp" "moto-$v/tests" "moto-$v/pyproject.toml"
	rm -rf "$dest"
	mv "$tmp/moto-$v" "$dest"
	rm -rf "$tmp"
}

ensure_venv "$MOTO_VERSION"
if ! fetch_tests "$MOTO_VERSION"; then
	# Older sdists: newest first, a handful at most; the venv follows the tests' version.
	found=""
	for v in $("$PY" -m pip index versions moto 2>/dev/null | sed -n 's/^Available versions: //p' | tr -d ',' \
		| tr ' ' '\n' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+$' | awk -v cur="$MOTO_VERSION" 'f{print} $0==cur{f=1}' | head -5); do
		if fetch_tests "$v"; then found="$v"; break; fi
	done
	[[ -n "$found" ]] || die "no moto sdist with tests/test_sqs found (tried $MOTO_VERSION and older)"
	log "using moto $found (its sdist has the tests)"
	MOTO_VERSION="$found"
	ensure_venv "$MOTO_VERSION"
fi
TESTS_ROOT="$TESTS_CACHE/moto-$MOTO_VERSION"

# A pytest plugin that stands in for moto's POST /moto-api/reset (which moto
# issues before and after every test and whose answer it ignores): delete every
# queue through the SQS API. Used only by the crunchbox-reset run.
PLUGIN_DIR="$TESTS_CACHE/plugins"
mkdir -p "$PLUGIN_DIR"
cat >"$PLUGIN_DIR/crunchbox_reset_shim.py" <<'PYEOF'
"""Emulate moto's /moto-api/reset against an SQS endpoint that lacks it."""
import os

import botocore.session
from moto.core import models

_client = None


def _sqs():
    global _client
    if _client is None:
        _client = botocore.session.Session().create_client(
            "sqs",
            region_name="us-east-1",
            endpoint_url=os.environ["TEST_SERVER_MODE_ENDPOINT"],
            aws_access_key_id="FOOBARKEY",
            aws_secret_access_key="FOOBARSECRET",
        )
    return _client


def _reset(self):
    c = _sqs()
    for _ in range(20):
        urls = c.list_queues(MaxResults=1000).get("QueueUrls", [])
        if not urls:
            return
        for url in urls:
            try:
                c.delete_queue(QueueUrl=url)
            except Exception:
                pass


models.ServerModeMockAWS.reset = _reset
PYEOF

# ---------------------------------------------------------------- ports and servers
port_free() { "$PY" -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
if [[ -n "${MOTO_SQS_PORT:-}" ]]; then
	PORT="$MOTO_SQS_PORT"
elif port_free 5000; then
	PORT=5000
else
	PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
	log "port 5000 busy, using $PORT (test_create_queues_in_multiple_region and test_get_queue_with_prefix"
	log "hard-code http://localhost:5000 in server mode and will fail on every target)"
fi
ENDPOINT="http://localhost:$PORT"

SERVER_PID=""
stop_server() {
	if [[ -n "$SERVER_PID" ]]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
	fi
}
trap stop_server EXIT

wait_port() { # $1 = server log
	local i
	for i in $(seq 1 150); do
		kill -0 "$SERVER_PID" 2>/dev/null || { cat "$1" >&2; die "server exited before listening"; }
		"$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$PORT" 2>/dev/null && return 0
		sleep 0.2
	done
	die "server not listening on $PORT after 30 s"
}

start_moto() {
	port_free "$PORT" || die "port $PORT is taken"
	"$SUITE_VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$OUT/moto.server.log" 2>&1 &
	SERVER_PID=$!
	wait_port "$OUT/moto.server.log"
}

start_crunchbox() { # $1 = run name
	[[ -x "$BIN" ]] || die "no crunchbox binary at $BIN (set CRUNCHBOX_BIN)"
	port_free "$PORT" || die "port $PORT is taken"
	local dir="$OUT/$1.data"
	rm -rf "$dir"
	mkdir -p "$dir"
	# crunchbox accepts any region in the SigV4 scope but keeps one queue
	# namespace; region only sets its ARNs. us-east-1 is what the tests assert.
	cat >"$OUT/$1.toml" <<EOF
data_dir = "$dir"

[aws]
listen = "127.0.0.1:$PORT"
account_id = "$ACCOUNT_ID"
region = "us-east-1"
extra_credentials = ["$MOTO_KEY:$MOTO_SECRET"]
EOF
	"$BIN" serve --roles sqs --config "$OUT/$1.toml" >"$OUT/$1.server.log" 2>&1 &
	SERVER_PID=$!
	wait_port "$OUT/$1.server.log"
}

# ---------------------------------------------------------------- pytest
PYTEST_ARGS=(-p no:cacheprovider -q --color=no -rfEs --timeout "$TIMEOUT")
[[ "${MOTO_SQS_INCLUDE_INPROCESS:-0}" = 1 ]] || PYTEST_ARGS+=(--ignore=tests/test_sqs/test_server.py)
if docker info >/dev/null 2>&1; then DOCKER_SKIP=""; else DOCKER_SKIP=true; fi

run_pytest() { # $1 = run name, rest = extra pytest args
	local name="$1"
	shift
	log "pytest tests/test_sqs against $name at $ENDPOINT"
	local rc=0
	(
		cd "$TESTS_ROOT"
		# A clean AWS environment: nothing from the caller's profile or endpoints.
		for v in $(env | sed -n 's/^\(AWS_[A-Z0-9_]*\)=.*/\1/p'); do unset "$v"; done
		export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
		export AWS_ACCESS_KEY_ID="$MOTO_KEY" AWS_SECRET_ACCESS_KEY="$MOTO_SECRET" AWS_DEFAULT_REGION=us-east-1
		export TEST_SERVER_MODE=true TEST_SERVER_MODE_ENDPOINT="$ENDPOINT"
		[[ -z "$DOCKER_SKIP" ]] || export TESTS_SKIP_REQUIRES_DOCKER=true
		export PYTHONPATH="$PLUGIN_DIR${PYTHONPATH:+:$PYTHONPATH}"
		exec "$PY" -m pytest "${PYTEST_ARGS[@]}" --junitxml "$OUT/$name.xml" "$@" tests/test_sqs
	) >"$OUT/$name.log" 2>&1 || rc=$?
	tail -n 1 "$OUT/$name.log" >&2
	# pytest: 0 all passed, 1 some failed; anything else is a broken run.
	[[ $rc -le 1 ]] || { tail -n 30 "$OUT/$name.log" >&2; die "pytest against $name exited $rc"; }
}

log "moto $MOTO_VERSION tests from $TESTS_ROOT; crunchbox $BIN; results in $OUT"
REPORT_ARGS=()
for t in $TARGETS; do
	rm -f "$OUT/$t.xml"
	case "$t" in
	moto)
		start_moto
		run_pytest moto "$@"
		;;
	crunchbox)
		start_crunchbox crunchbox
		run_pytest crunchbox "$@"
		cp "$OUT/crunchbox.log" "$CB_LOG_COPY"
		;;
	crunchbox-reset)
		start_crunchbox crunchbox-reset
		run_pytest crunchbox-reset -p crunchbox_reset_shim "$@"
		;;
	*) die "unknown target $t (moto, crunchbox, crunchbox-reset)" ;;
	esac
	stop_server
	REPORT_ARGS+=("$t=$OUT/$t.xml")
done

"$PY" "$REPO/bench/moto_sqs_suite_report.py" --tests-root "$TESTS_ROOT" "${REPORT_ARGS[@]}" | tee "$OUT/summary.txt"
echo "full logs: $OUT/{$(echo $TARGETS | tr ' ' ',')}.log; crunchbox pytest output also in $CB_LOG_COPY"
