#!/usr/bin/env bash
# Runs the s3s project's own conformance suite (s3s-e2e 0.14.1) against the
# release binary's embedded S3. Exits non-zero on any failure except the
# cases listed in ALLOWED_FAILURES: features SPEC leaves out.
#
#   e2e/s3s_e2e.sh            (needs $CARGO_TARGET_DIR/release/crunchbox, or CRUNCHBOX_BIN)
#
# s3s-e2e is installed once into $CRUNCHBOX_TOOLS (default ~/.cache/crunchbox-tools),
# built in its own target dir so it never contends with the main build.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${CRUNCHBOX_TOOLS:-$HOME/.cache/crunchbox-tools}"
BIN="${CRUNCHBOX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/crunchbox}"
E2E="$TOOLS/bin/s3s-e2e"

# Features outside SPEC (see README): STS AssumeRole.
ALLOWED_FAILURES=(
  "Advanced/STS/test_assume_role"
)

if [[ ! -x "$E2E" ]]; then
  echo "installing s3s-e2e 0.14.1 into $TOOLS (one-time, takes minutes)"
  CARGO_TARGET_DIR="$TOOLS/target" cargo install s3s-e2e --version 0.14.1 --locked --root "$TOOLS"
fi
[[ -x "$BIN" ]] || { echo "missing $BIN: run cargo build --release first" >&2; exit 2; }

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DATA="$(mktemp -d)"
LOG="$DATA.log"
CRUNCHBOX_AWS_LISTEN="127.0.0.1:$PORT" CRUNCHBOX_WEB_LISTEN="127.0.0.1:0" \
  "$BIN" serve --roles s3 --data-dir "$DATA" >"$LOG" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then echo "crunchbox exited:"; cat "$LOG"; exit 1; fi
  sleep 0.1
done

REPORT="$DATA.report.json"
set +e
AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" \
AWS_ACCESS_KEY_ID="crunchbox" AWS_SECRET_ACCESS_KEY="crunchbox-secret" AWS_REGION="us-east-1" \
AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  "$E2E" --json "$REPORT" 2>&1 | tee "$DATA.out"
set -e

# Every failed case must be on the allow list (report format: s3s-test's Report).
python3 - "$REPORT" "${ALLOWED_FAILURES[@]}" <<'PY'
import json, sys
report, allowed = sys.argv[1], set(sys.argv[2:])
with open(report) as f:
    data = json.load(f)
failed, passed = [], 0
def ok(summary):
    return summary is None or summary.get("result") == "Ok"
for suite in data.get("suites", []):
    if not ok(suite.get("setup")):
        failed.append(f"{suite['name']} (suite setup)")
    for fixture in suite.get("fixtures", []):
        base = f"{suite['name']}/{fixture['name']}"
        if not ok(fixture.get("setup")):
            failed.append(f"{base} (fixture setup)")
        for case in fixture.get("cases", []):
            if case.get("ignored"):
                continue
            if case.get("passed"):
                passed += 1
            else:
                failed.append(f"{base}/{case['name']}")
def is_allowed(name):
    return name in allowed or any(name.startswith(a.rsplit("/", 1)[0] + " (") for a in allowed)
unexpected = [f for f in failed if not is_allowed(f)]
print(f"s3s-e2e: {passed} passed, {len(failed)} failed ({len(failed) - len(unexpected)} allowed)")
for f in failed:
    print(("  allowed: " if is_allowed(f) else "  FAILED:  ") + f)
sys.exit(1 if unexpected or passed == 0 else 0)
PY
