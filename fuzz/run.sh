#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time and prints one line per target.
#
#   fuzz/run.sh [SECONDS] [--merge] [--jobs N] [TARGET...]
#
# SECONDS per target (default 60), with -rss_limit_mb=2048 -timeout=10 (the bounds the fuzzing section of tests/README.md gives),
# and -dict=fuzz/<target>.dict for a target that has one.
# Targets run N at a time (default 1) under `nice -n 10`. New corpus entries go to a scratch
# directory; with --merge they are minimised into fuzz/corpus/<target>/ (`-merge=1` keeps only
# inputs that add coverage; the seed-* files are always kept), to be committed.
# A crash leaves its input in fuzz/artifacts/<target>/ and makes the script exit 1; turn it into a
# regression test by copying it to fuzz/regressions/<target>/ (tests/it/fuzz_corpus.rs replays it).
# FUZZ_LOGS=DIR keeps each target's libFuzzer log there.
# Without a nightly toolchain or cargo-fuzz the script says so and exits 0: the committed corpus
# is still replayed on stable by `cargo test --test it fuzz_corpus::`.
set -uo pipefail
cd "$(dirname "$0")"
# The sanitizer build has flags of its own: keep it in fuzz/target, whatever the caller's target.
unset CARGO_TARGET_DIR

seconds=60
merge=0
jobs=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --merge) merge=1 ;;
    --jobs) jobs="$2"; shift ;;
    [0-9]*) seconds="$1" ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || targets=(config rules problem inspect exchange audit)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain install nightly); the corpus is replayed by cargo test"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED: cargo-fuzz is not installed (cargo install --locked cargo-fuzz); the corpus is replayed by cargo test"
  exit 0
fi

rm -f build.log
echo "fuzz: building ${targets[*]} ($(cargo +nightly fuzz --version))"
built=1
for target in "${targets[@]}"; do
  nice -n 10 cargo +nightly fuzz build -O "$target" >>build.log 2>&1 || built=0
done
if [ "$built" = 0 ]; then
  tail -n 30 build.log
  echo "fuzz: FAILED: the targets do not build (fuzz/build.log)"
  exit 1
fi

logs=$(mktemp -d)
run_one() {
  local target=$1 scratch="$logs/$1.new"
  mkdir -p "$scratch" "artifacts/$target"
  # A target with a dictionary (fuzz/<target>.dict) gets it.
  local dict=()
  [ -f "$target.dict" ] && dict=(-dict="$target.dict")
  # New inputs go to the scratch directory first; the committed corpus is only read.
  nice -n 10 cargo +nightly fuzz run -O "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix="artifacts/$target/" >"$logs/$target.log" 2>&1
  echo $? >"$logs/$target.rc"
}

running=0
for target in "${targets[@]}"; do
  run_one "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=0
for target in "${targets[@]}"; do
  log="$logs/$target.log"
  rc=$(cat "$logs/$target.rc")
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  if [ "$rc" = 0 ]; then
    echo "fuzz: $target: ok: ${runs:-?} runs in ${seconds}s, ${speed:-?} exec/s, ${cov:-cov: ?}"
  else
    failed=1
    crash=$(grep -o "artifacts/$target/[^ ]*" "$log" | tail -n 1)
    echo "fuzz: $target: FAILED (exit $rc) after ${runs:-?} runs; input: fuzz/${crash:-artifacts/$target/}"
    grep -m 3 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/    /'
    cp "$log" "artifacts/$target/last-run.log"
  fi
  if [ "$merge" = 1 ] && [ "$rc" = 0 ]; then
    # Minimise: merge the committed corpus and the new inputs into a fresh directory, keeping an
    # input only for an edge no other reaches (hit counts would keep thousands more).
    merged="$logs/$target.merged"
    mkdir -p "$merged"
    cp corpus/"$target"/seed-* "$merged"/ 2>/dev/null
    nice -n 10 cargo +nightly fuzz run -O "$target" "$merged" "corpus/$target" "$logs/$target.new" -- \
      -merge=1 -use_counters=0 -rss_limit_mb=2048 -timeout=10 >"$logs/$target.merge.log" 2>&1 &&
      rm -f corpus/"$target"/* && cp "$merged"/* corpus/"$target"/ &&
      echo "fuzz: $target: corpus merged: $(ls corpus/"$target" | wc -l) files"
  fi
done
if [ -n "${FUZZ_LOGS:-}" ]; then
  mkdir -p "$FUZZ_LOGS" && cp "$logs"/*.log "$FUZZ_LOGS"/
fi
rm -rf "$logs"
exit "$failed"
