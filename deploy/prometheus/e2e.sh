#!/usr/bin/env bash
# End to end on loopback: the compose stack's legacy app (deploy/compose/legacy, under gunicorn)
# behind the candor binary with the compose config, scraped by a real Prometheus that also
# loads deploy/prometheus/alerts.yml. Checks, one line each:
#   - candor answers every legacy endpoint with the status the compose rules promise;
#   - promtool check metrics accepts candor's live /metrics;
#   - Prometheus scrapes candor and returns candor_rewrites_total through /api/v1/query, for an
#     enforced rule, the shadow rule and the built-ins, and the timeout failure;
#   - every alert rule evaluates without error on the real series;
#   - every query of the Grafana dashboard runs, and returns data where candor exports its metric.
# Every wait polls with a deadline; no sleep stands in for synchronisation.
#
# Needs: CANDOR (the candor binary), PROMETHEUS and PROMTOOL (Debian's prometheus package), a
# PYTHON with flask and gunicorn, curl and jq. deploy/validate.sh provides them all:
#   CANDOR=target/debug/candor PROMETHEUS=… PROMTOOL=… PYTHON=… deploy/prometheus/e2e.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
: "${CANDOR:?set CANDOR to the candor binary}"
: "${PROMETHEUS:?set PROMETHEUS to the prometheus binary}"
: "${PROMTOOL:?set PROMTOOL to the promtool binary}"
: "${PYTHON:?set PYTHON to a python with flask and gunicorn}"
DEADLINE="${E2E_DEADLINE:-60}"

work="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

ok() { printf 'ok    e2e: %s\n' "$*"; }
fail() {
  printf 'FAIL  e2e: %s\n' "$*"
  local log
  for log in "$work"/*.log; do
    [[ -f "$log" ]] || continue
    printf -- '--- last lines of %s\n' "$(basename "$log")"
    tail -n 20 "$log"
  done
  exit 1
}

# Polls `$@` until it succeeds or DEADLINE seconds pass.
eventually() {
  local what="$1"
  shift
  local end=$((SECONDS + DEADLINE))
  until "$@"; do
    ((SECONDS < end)) || fail "$what: still failing after ${DEADLINE}s"
    sleep 0.2
  done
}

# Four free loopback ports, held together so that they differ, then released.
read -r legacy_port proxy_port admin_port prom_port < <(
  python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()'
)

# The legacy app, as compose runs it.
"$PYTHON" -m gunicorn --chdir "$repo/deploy/compose/legacy" --bind "127.0.0.1:$legacy_port" \
  --threads 8 --worker-tmp-dir "$work" --no-control-socket app:app >"$work/legacy.log" 2>&1 &
pids+=("$!")
eventually "legacy app on :$legacy_port" curl -fs -o /dev/null "http://127.0.0.1:$legacy_port/health"

# candor with the compose config; the environment does what compose.yaml's does, plus a short
# upstream timeout so that /slow becomes a 504 quickly.
CANDOR__UPSTREAM__URL="http://127.0.0.1:$legacy_port" \
  CANDOR__SERVER__LISTEN="127.0.0.1:$proxy_port" \
  CANDOR__SERVER__ADMIN_LISTEN="127.0.0.1:$admin_port" \
  CANDOR__UPSTREAM__TIMEOUT=1s \
  "$CANDOR" run --config "$repo/deploy/compose/config/candor.toml" >"$work/candor.log" 2>&1 &
candor_pid="$!"
pids+=("$candor_pid")
eventually "candor /readyz" curl -fs -o /dev/null "http://127.0.0.1:$admin_port/readyz"
ok "legacy app and candor up (ports $legacy_port, $proxy_port, admin $admin_port)"

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $repo/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: candor
    static_configs:
      - targets: ["127.0.0.1:$admin_port"]
EOF
"$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=("$!")
api="http://127.0.0.1:$prom_port/api/v1"
eventually "Prometheus ready" curl -fs -o /dev/null "http://127.0.0.1:$prom_port/-/ready"
# Traffic only once Prometheus has scraped candor: rates and increases then see it happen.
scraped() {
  curl -fsS --get "$api/query" --data-urlencode 'query=up{job="candor"} == 1' | jq -e '.data.result | length == 1' >/dev/null
}
eventually "Prometheus scraping candor" scraped
ok "Prometheus $("$PROMETHEUS" --version 2>&1 | head -n 1 | cut -d' ' -f3) scrapes candor's admin port every second"

# Traffic: each endpoint of the legacy app, and the status candor must send for it.
expect() {
  local want="$1" method="$2" path="$3"
  shift 3
  local got
  got="$(curl -sS -o /dev/null -w '%{http_code}' -X "$method" "$@" "http://127.0.0.1:$proxy_port$path")"
  [[ "$got" == "$want" ]] || fail "$method $path: candor answered $got, expected $want"
}
traffic() {
  local json=(-H 'accept: application/json')
  for _ in 1 2 3; do
    expect 404 GET /users/7
  done
  expect 200 GET /users/42
  expect 422 POST /orders -H 'content-type: application/json' --data '{}'
  expect 429 GET /reports/daily
  expect 404 GET /orders/9
  expect 204 DELETE /users/42
  expect 503 GET /payments/1
  expect 404 GET /profile "${json[@]}"
  expect 500 GET /export
  expect 429 GET /search
  expect 504 GET '/slow?seconds=3'
}
traffic
ok "candor answered the 13 requests to the legacy app as the compose rules say"

curl -fsS "http://127.0.0.1:$admin_port/metrics" >"$work/metrics.txt"
"$PROMTOOL" check metrics <"$work/metrics.txt" >"$work/promtool-metrics.log" 2>&1 ||
  fail "promtool check metrics on candor's /metrics: $(cat "$work/promtool-metrics.log")"
ok "promtool check metrics accepts candor's live /metrics ($(grep -c '^candor_' "$work/metrics.txt") samples)"

# The value of an instant query's only series, or nothing.
value_of() {
  curl -fsS --get "$api/query" --data-urlencode "query=$1" |
    jq -r 'select(.status == "success") | .data.result | if length == 1 then .[0].value[1] else empty end'
}
# Succeeds once `query` returns one series with a value of at least `min`.
at_least() {
  local min="$1" query="$2" value
  value="$(value_of "$query")" || return 1
  [[ -n "$value" ]] && jq -en --arg v "$value" --argjson min "$min" '($v | tonumber) >= $min' >/dev/null
}
for check in \
  '3 candor_rewrites_total{job="candor", rule="user-not-found", mode="enforce", from="200", to="404"}' \
  '4 sum(candor_rewrites_total{job="candor", rule="any-error-body", mode="shadow"})' \
  '1 candor_rewrites_total{job="candor", rule="html-errors", mode="enforce", from="404", to="404"}' \
  '1 candor_rewrites_total{job="candor", rule="scrub", mode="enforce", from="500", to="500"}' \
  '1 candor_rewrites_total{job="candor", rule="retry-after", mode="enforce", from="429", to="429"}' \
  '1 candor_upstream_failures_total{job="candor", kind="timeout"}'; do
  eventually "Prometheus query ${check#* } >= ${check%% *}" at_least "${check%% *}" "${check#* }"
done
# A second round, now that Prometheus has every series: rates and increases over the dashboard's
# windows see it.
traffic
eventually "Prometheus sees the second round" at_least 6 'candor_rewrites_total{job="candor", rule="user-not-found"}'
ok "Prometheus scraped candor: candor_rewrites_total for user-not-found (enforce) = $(value_of 'candor_rewrites_total{rule="user-not-found"}'), any-error-body (shadow) = $(value_of 'sum(candor_rewrites_total{rule="any-error-body"})'), built-ins and the 504 timeout present"

# Every alert rule loaded, evaluated on these series, and healthy.
rules_healthy() {
  curl -fsS "$api/rules" | jq -e '
    [.data.groups[].rules[]] as $r
    | ($r | length) > 0
      and all($r[]; .health == "ok" and .lastEvaluation != "0001-01-01T00:00:00Z")' >/dev/null
}
eventually "alert rules evaluated without error" rules_healthy
ok "Prometheus evaluates the $(curl -fsS "$api/rules" | jq '[.data.groups[].rules[]] | length') alert rules of alerts.yml without error"

# The dashboard's queries, with its variables as Grafana would fill them for this job.
# shellcheck disable=SC2016 # $__rate_interval and the like are Grafana's variables
jq -r '.. | objects | select(has("expr")) | .expr' "$repo/deploy/grafana/candor-dashboard.json" |
  sed -e 's/\$__rate_interval/1m/g' -e 's/\$__range/5m/g' -e 's/\$job/candor/g' -e 's/\$instance/.+/g' \
    >"$work/dashboard-queries.txt"
exported="$(grep -o '^candor_[a-z0-9_]*' "$work/metrics.txt" | sort -u)"
dashboard_ready() {
  local query names name missing_data=0
  : >"$work/dashboard-without-data.log"
  : >"$work/dashboard-not-exported.txt"
  while IFS= read -r query; do
    result="$(curl -fsS --get "$api/query" --data-urlencode "query=$query")" || return 1
    [[ "$(jq -r .status <<<"$result")" == success ]] || fail "dashboard query failed: $query: $result"
    names="$(grep -o 'candor_[a-z0-9_]*' <<<"$query" | sort -u)"
    for name in $names; do
      if ! grep -qx "$name" <<<"$exported"; then
        echo "$name" >>"$work/dashboard-not-exported.txt" # not exported (yet): no data expected
        continue 2
      fi
    done
    if [[ "$(jq '.data.result | length' <<<"$result")" == 0 ]]; then
      echo "$query" >>"$work/dashboard-without-data.log"
      missing_data=1
    fi
  done <"$work/dashboard-queries.txt"
  return "$missing_data"
}
eventually "every dashboard query on an exported metric returns data" dashboard_ready
queries="$(wc -l <"$work/dashboard-queries.txt")"
waiting="$(wc -l <"$work/dashboard-not-exported.txt")"
not_exported="$(sort -u "$work/dashboard-not-exported.txt" | paste -sd, - | sed 's/,/, /g')"
ok "all $queries dashboard queries run; $((queries - waiting)) return data${not_exported:+, $waiting wait for metrics candor does not export yet ($not_exported)}"

# SIGTERM: candor drains and exits 0.
kill -TERM "$candor_pid"
status=0
wait "$candor_pid" || status=$?
[[ "$status" == 0 ]] || fail "candor exited $status on SIGTERM, expected 0"
ok "candor exits 0 on SIGTERM"
