#!/usr/bin/env bash
# Protocol lint: runs the integration tests with CANDOR_CAPTURE_DIR set, so the harness records
# every exchange it makes (tests/it/harness/capture.rs), then checks each one with HTTPolice and
# httplint (tests/lint/lint.py). Fails on any error-level notice that the reviewed silence list
# (tests/lint/silence.txt) does not cover. .ci/run calls it after `cargo test`, whose build it
# reuses.
#
# Environment: CANDOR_LINT_TOOLS (where the virtualenv lives, default ~/.cache/candor-lint),
# CARGO_TARGET_DIR (captures go to $CARGO_TARGET_DIR/lint).
set -euo pipefail
cd "$(dirname "$0")/../.."

# HTTPolice 0.9.0 is the last release (the project is archived) and crashes on import with
# bitstring 4; httplint is pinned so that a new release cannot add notices behind our back.
PIP_PACKAGES=(httpolice==0.9.0 'bitstring<4' httplint==2026.10.4)
# Modules of the `it` test binary that are not run for the capture, and why:
#   passthrough          its raw client and raw upstream record nothing; its generated upstream
#                        responses are linted by nothing else either
#   config_load,         no exchanges: they load configs and replay the fuzz corpus in-process
#   fuzz_corpus
# The other test binaries are not run either: `memory` counts the process's allocations, which
# recording would add to, and `soak` has its own client and origin, which record nothing.
EXCLUDED=(passthrough config_load fuzz_corpus)

TOOLS="${CANDOR_LINT_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/candor-lint}"
VENV="$TOOLS/venv"
OUT="$(realpath -m "${CARGO_TARGET_DIR:-target}/lint")"
CAPTURES="$OUT/captures"
started=$SECONDS

# A virtualenv with the pinned tools; rebuilt when the pins change.
want="${PIP_PACKAGES[*]}"
if [[ ! -f "$VENV/.pins" || "$(cat "$VENV/.pins")" != "$want" ]]; then
  rm -rf "$VENV"
  mkdir -p "$TOOLS"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv for ensurepip.
    rm -rf "$VENV"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" \
    >"$TOOLS/pip.log" 2>&1; then
    tail -n 20 "$TOOLS/pip.log" >&2
    echo "lint: pip install ${PIP_PACKAGES[*]} failed" >&2
    exit 1
  fi
  echo "$want" >"$VENV/.pins"
fi

# Capture: the `it` binary, whose harness clients and hyper upstreams record what they exchange,
# less the excluded modules (`--skip module::`).
skips=()
for module in "${EXCLUDED[@]}"; do
  skips+=(--skip "$module::")
done
rm -rf "$CAPTURES" "$OUT/failing.txt" "$OUT/report.html"
mkdir -p "$CAPTURES"
echo "capturing: the it tests (modules ${EXCLUDED[*]} excluded)"
if ! CANDOR_CAPTURE_DIR="$CAPTURES" cargo test --locked --no-fail-fast -q --test it -- \
  "${skips[@]}" >"$OUT/tests.log" 2>&1; then
  # `cargo test` in .ci/run is the judge of the tests; here a failure only means that test's
  # exchanges may be missing from what is linted.
  grep -E '^test result|FAILED|panicked' "$OUT/tests.log" >&2 || true
  echo "lint: warning: some tests failed during the capture run (log: $OUT/tests.log)" >&2
fi

status=0
"$VENV/bin/python" tests/lint/lint.py "$CAPTURES" --silence tests/lint/silence.txt \
  --failing "$OUT/failing.txt" || status=$?
if [[ $status -eq 1 ]]; then
  # The same files in HTTPolice's own HTML report, for reading in a browser.
  mapfile -t failing <"$OUT/failing.txt"
  "$VENV/bin/httpolice" -i combined -o html "${failing[@]}" >"$OUT/report.html" || true
  echo "lint: HTTPolice's report of the failing connections: $OUT/report.html" >&2
fi
echo "protocol lint took $((SECONDS - started)) s"
exit "$status"
