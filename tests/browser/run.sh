#!/usr/bin/env bash
# The status page in a real browser, as CI runs it (.ci/run):
#   1. Debian's Chromium (installed if /usr/bin/chromium is missing) and playwright-core from
#      npm at the version package-lock.json pins, into tests/browser/node_modules;
#   2. candor built and started (`candor run` with tests/browser/candor.toml on free ports) in
#      front of a small Python upstream (tests/browser/upstream.py);
#   3. status.spec.mjs with node's test runner: it sends traffic, opens the page in headless
#      Chromium, checks the tables and their counts, and saves a screenshot, whose path is
#      printed at the end;
#   4. audit.spec.mjs against tests/audit/legacy.py behind a second candor with audit on: it
#      sends the audit tests' traffic from Chromium, which records a HAR, and checks that
#      `candor audit --har` finds in it what candor's live observation found.
# Everything started here is stopped on exit, by process id.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
screenshot=$target/artifacts/status-page.png

if [ ! -x /usr/bin/chromium ]; then
  echo "== browser: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
echo "== browser: $(/usr/bin/chromium --version 2>/dev/null)"

echo "== browser: playwright-core (npm ci)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "== browser: building candor"
cargo build --quiet --locked
candor=$target/debug/candor

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 10 s for a line matching $2 in file $1.
wait_for() {
  for _ in $(seq 100); do
    if grep -q -- "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

python3 tests/browser/upstream.py >"$work/upstream.out" 2>&1 &
pids+=($!)
wait_for "$work/upstream.out" '^[0-9]'
upstream_port=$(head -n 1 "$work/upstream.out")

CANDOR__UPSTREAM__URL="http://127.0.0.1:$upstream_port" RUST_LOG=info \
  "$candor" --log-format text run --config tests/browser/candor.toml 2>"$work/candor.log" &
pids+=($!)
wait_for "$work/candor.log" ' ready '
ready=$(grep -m 1 ' ready ' "$work/candor.log")
proxy=$(sed -E 's/.* listen=([^ ]+).*/\1/' <<<"$ready")
admin=$(sed -E 's/.* admin=([^ ]+).*/\1/' <<<"$ready")
echo "== browser: candor on $proxy, admin $admin, upstream 127.0.0.1:$upstream_port"

CANDOR_PROXY=$proxy CANDOR_ADMIN=$admin SCREENSHOT=$screenshot \
  node --test tests/browser/status.spec.mjs

echo "screenshot of the status page: $screenshot"

# Audit over a HAR Chromium records, against live observation of the same traffic.
python3 tests/audit/legacy.py >"$work/legacy.out" 2>&1 &
pids+=($!)
wait_for "$work/legacy.out" '^[0-9]'
legacy_port=$(head -n 1 "$work/legacy.out")
CANDOR__UPSTREAM__URL="http://127.0.0.1:$legacy_port" RUST_LOG=info \
  "$candor" --log-format text run --config tests/browser/audit.toml 2>"$work/audit-candor.log" &
pids+=($!)
wait_for "$work/audit-candor.log" ' ready '
ready=$(grep -m 1 ' ready ' "$work/audit-candor.log")
proxy=$(sed -E 's/.* listen=([^ ]+).*/\1/' <<<"$ready")
admin=$(sed -E 's/.* admin=([^ ]+).*/\1/' <<<"$ready")
echo "== browser: audit: candor on $proxy, admin $admin, legacy app 127.0.0.1:$legacy_port"
CANDOR_PROXY=$proxy CANDOR_ADMIN=$admin CANDOR_BIN=$candor HAR=$target/artifacts/audit.har \
  node --test tests/browser/audit.spec.mjs
echo "the HAR Chromium recorded: $target/artifacts/audit.har"
