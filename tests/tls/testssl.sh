#!/usr/bin/env bash
# testssl.sh against candor's TLS listener: candor runs with a certificate made here
# (`openssl req -x509`) in front of a plaintext upstream, testssl.sh scans it, and any finding of
# severity MEDIUM or higher fails the run. Installs Debian's testssl.sh, openssl and curl when
# they are missing (as root). Prints the summary: protocols and ciphers offered, and every
# finding by severity.
#
#   tests/tls/testssl.sh [path/to/candor]    (default: a debug build, built here)
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v testssl >/dev/null || need+=(testssl.sh)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

candor=${1:-}
if [[ -z "$candor" ]]; then
  cargo build --quiet --locked
  candor=target/debug/candor
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
upstream=$(free_port)

# A CA (handed to testssl.sh with --add-ca) and a leaf it signs, valid for a year and naming a
# CRL: trust, lifetime and revocation are the certificate's properties, not candor's, and
# testssl.sh rates a self-signed, short-lived or unrevocable certificate HIGH or CRITICAL.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=candor testssl CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/key.pem" -out "$work/leaf.csr" 2>/dev/null
cat > "$work/leaf.ext" <<EXT
subjectAltName = DNS:localhost, IP:127.0.0.1
extendedKeyUsage = serverAuth
keyUsage = digitalSignature
crlDistributionPoints = URI:http://localhost/candor-test.crl
EXT
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 365 -extfile "$work/leaf.ext" -out "$work/cert.pem" 2>/dev/null
mkdir "$work/www"
echo ok > "$work/www/index.html"
python3 -m http.server "$upstream" --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
pids+=($!)
cat > "$work/candor.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
workers = 1

[server.tls]
cert = "cert.pem"
key = "key.pem"

[upstream]
url = "http://127.0.0.1:$upstream"

# The security headers testssl.sh's HTTP check asks for (HSTS, X-Content-Type-Options), set by
# candor as a user would for a legacy API that sends none: with a rule.
[[rules]]
name = "security-headers"
when.status = [200]
then.headers = [
  { name = "strict-transport-security", value = "max-age=31536000; includeSubDomains" },
  { name = "x-content-type-options", value = "nosniff" },
]
TOML
"$candor" check --config "$work/candor.toml"
"$candor" run --config "$work/candor.toml" --log-format json >"$work/candor.log" 2>&1 &
pids+=($!)
# Ready when a request over TLS comes back from the upstream.
for _ in $(seq 200); do
  if curl -sf --cacert "$work/ca.pem" "https://localhost:$port/" >/dev/null 2>&1; then break; fi
  sleep 0.05
done
curl -sf --cacert "$work/ca.pem" "https://localhost:$port/" >/dev/null

echo "== testssl.sh $(testssl --version 2>/dev/null | grep -o 'testssl *[0-9.]*' | head -1) against candor on 127.0.0.1:$port"
# Every check of a default run: protocols, cipher categories, forward secrecy, the server's
# preferences and defaults, the HTTP response headers (-h: the rule above sets the ones it rates;
# without them a legacy API that sends none is rated MEDIUM), the vulnerabilities, client
# simulation.
# `--severity MEDIUM` keeps only findings of MEDIUM and above in the JSON file; the terminal
# report keeps everything, for the summary.
testssl --quiet --color 0 --warnings off --add-ca "$work/ca.pem" -p -s -f -P -S -h -U -c \
  --severity MEDIUM --jsonfile "$work/findings.json" "localhost:$port" >"$work/testssl.txt" 2>&1 || true
echo "-- summary (testssl.sh's report, abridged)"
grep -E '^ (SSLv|TLS 1|NPN|ALPN|NULL ciphers|Anonymous|Export|LOW:|Triple DES|Obsoleted CBC|Strong encryption|Forward Secrecy strong|Has server cipher order|Negotiated protocol|Negotiated cipher)' \
  "$work/testssl.txt" | sed 's/  */ /g' || true
grep -cE 'not vulnerable' "$work/testssl.txt" | sed 's/^/vulnerability checks answered "not vulnerable": /' || true
python3 - "$work/findings.json" "$work/testssl.txt" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
report = open(sys.argv[2]).read()
if "TLS 1.3" not in report or "not vulnerable" not in report:
    print(report[-3000:])
    sys.exit("testssl.sh's report lacks the protocol and vulnerability sections: the scan did not run")
bad = [f for f in findings if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")]
for f in bad:
    print(f"  {f['severity']}: {f['id']}: {f['finding']}")
if bad:
    sys.exit(f"{len(bad)} finding(s) of severity MEDIUM or higher")
print(f"findings of severity MEDIUM or higher: none ({len(findings)} entries in the JSON file)")
PY
