#!/usr/bin/env bash
# candor in front of a fragile legacy app, at 1,000 concurrent streams: the numbers behind the
# README's "Protecting the legacy app".
#
#   benches/fragile/run.sh [php|gunicorn]      # CANDOR=path/to/candor (default target/release/candor)
#
# The app (app.php under PHP's built-in server with PHP_CLI_SERVER_WORKERS=4, or app.py under
# gunicorn with 4 sync workers) takes 20 ms a request: about 200 requests a second. relay.py sits
# between candor and the app and counts the most connections the app had at once. For each mode
# (none: the default limit of 1024; fixed: upstream.max_connections = 4; adaptive:
# upstream.adaptive = true and no limit set) a fresh candor (upstream.timeout = "5s", as a new
# user would set it) takes `h2load -n 4000 -c 40 -m 25` on its h2c listener, and the table shows
# candor's answers by status (from candor_requests_total), the 200s a second, the app's peak
# connections and the limit candor ended with. Needs php-cli or gunicorn, and h2load (Debian's
# nghttp2-client).
set -euo pipefail
CANDOR=$(realpath "${CANDOR:-$(dirname "$0")/../../target/release/candor}")
cd "$(dirname "$0")"
HERE=$PWD
APP=${1:-php}
OFFSET=${PORT_OFFSET:-0}
APP_PORT=$((18301 + OFFSET)) RELAY_PORT=$((18302 + OFFSET))
LISTEN=$((18303 + OFFSET)) ADMIN=$((18304 + OFFSET))
WORK=$(mktemp -d)
PIDS=()
# PHP's server forks its workers: they are stopped with their parent.
cleanup() {
  for p in "${PIDS[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

case $APP in
  php) PHP_CLI_SERVER_WORKERS=4 php -S "127.0.0.1:$APP_PORT" app.php >"$WORK/app.log" 2>&1 & ;;
  gunicorn) gunicorn --workers 4 --bind "127.0.0.1:$APP_PORT" --chdir "$HERE" app:app >"$WORK/app.log" 2>&1 & ;;
  *) echo "usage: $0 [php|gunicorn]" >&2; exit 2 ;;
esac
PIDS+=($!)
wait_port "$APP_PORT"

# The app alone, with 4 and 16 clients: its capacity (h2load's HTTP/1.1 client cannot read the
# close-delimited bodies PHP's server sends).
capacity4=$(python3 capacity.py "$APP_PORT" 4 3)
capacity16=$(python3 capacity.py "$APP_PORT" 16 3)

metric() { # name, label filter: the sum of the matching samples
  curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" -v f="$2" \
    'index($0, m) == 1 && index($0, f) { s += $NF } END { printf "%d", s }'
}

rows=()
for mode in none fixed adaptive; do
  python3 relay.py "$RELAY_PORT" "$APP_PORT" "$WORK/relay.$mode" &
  relay=$!
  PIDS+=($relay)
  wait_port "$RELAY_PORT"
  extra=""
  case $mode in
    fixed) extra="max_connections = 4" ;;
    adaptive) extra="adaptive = true" ;;
  esac
  cat >"$WORK/candor.toml" <<TOML
[server]
listen = "127.0.0.1:$LISTEN"
admin_listen = "127.0.0.1:$ADMIN"

[upstream]
url = "http://127.0.0.1:$RELAY_PORT"
timeout = "5s"
$extra
TOML
  "$CANDOR" run --config "$WORK/candor.toml" >"$WORK/candor.$mode.log" 2>&1 &
  candor=$!
  PIDS+=($candor)
  wait_port "$ADMIN"
  wait_port "$LISTEN"
  h2load -n 4000 -c 40 -m 25 "http://127.0.0.1:$LISTEN/" >"$WORK/h2load.$mode" 2>&1 || true
  secs=$(awk '/^finished in/ {sub(/s,/, "", $3); print $3}' "$WORK/h2load.$mode")
  ok=$(metric candor_requests_total 'status="200"')
  shed=$(metric candor_requests_total 'status="503"')
  gw_timeout=$(metric candor_requests_total 'status="504"')
  bad_gw=$(metric candor_requests_total 'status="502"')
  limit=$(metric candor_upstream_limit '')
  kill "$candor"; wait "$candor" 2>/dev/null || true
  kill "$relay"; wait "$relay" 2>/dev/null || true
  peak=$(cat "$WORK/relay.$mode")
  rate=$(awk -v n="$ok" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  rows+=("| $mode | $ok | $shed | $gw_timeout | $bad_gw | $rate | $peak | $limit |")
  grep -E "^status codes|^finished in" "$WORK/h2load.$mode" | sed "s/^/  $mode: /" >&2
done

echo "app: $APP, 4 workers, 20 ms a request; alone it serves $capacity4 req/s to 4 clients, $capacity16 to 16"
echo "h2load -n 4000 -c 40 -m 25 (1,000 concurrent streams) on candor's h2c listener"
echo
echo "| mode | 200 | 503 | 504 | 502 | 200s/s | app's peak connections | candor_upstream_limit at the end |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
