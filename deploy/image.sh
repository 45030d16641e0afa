#!/usr/bin/env bash
# Builds candor's image for real, without a daemon or a registry, and runs candor from it:
#   1. the binary: `cargo build --locked --profile PROFILE --bin candor` (cargo reuses a build
#      that is up to date; .ci/run passes `dev`, the build deploy/validate.sh has just made);
#   2. its root file system: deploy/docker/rootfs.sh (the binary, the libraries ldd names, CA
#      certificates, a nonroot user: what distroless' cc image holds);
#   3. the image: the runtime stage of deploy/docker/Dockerfile, unchanged, with buildah
#      (`--build-context rootfs=DIR` stands in for the build stage, which is skipped);
#   4. `buildah mount`, then candor from the image's root file system with chroot, as uid 65532:
#      `--version`, `check` of the image's config, and `run` in front of a loopback origin:
#      ready (systemd's READY=1 over an abstract NOTIFY_SOCKET), `healthcheck`, one proxied
#      request, exit 0 on SIGTERM;
#   5. the image's size: unpacked, and compressed as a registry would store it.
# Running a container is not possible on these machines (crun cannot set rlimits here), hence
# chroot. buildah needs root: without root, or where Debian's buildah cannot be installed, the
# script says so and exits 0 (like the fuzz step without nightly).
#   deploy/image.sh                    # release build
#   deploy/image.sh --profile dev      # reuse the debug build, as .ci/run does
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
profile=release
if [[ "${1:-}" == "--profile" ]]; then
  profile="${2:?--profile needs a cargo profile}"
fi
DEADLINE="${IMAGE_DEADLINE:-30}"
TAG="localhost/candor:image-sh-$$"
buildah=(buildah --storage-driver vfs)

skip() {
  printf 'SKIP  image: %s\n' "$*"
  exit 0
}
fail() {
  printf 'FAIL  image: %s\n' "$*"
  local log
  for log in "$work"/*.log; do
    [[ -f "$log" ]] || continue
    printf -- '--- last lines of %s\n' "$(basename "$log")"
    tail -n 20 "$log"
  done
  exit 1
}
ok() { printf 'ok    image: %s\n' "$*"; }

[[ $EUID == 0 ]] || skip "buildah builds images as root here, and this is uid $EUID"
# Debian packages: buildah, curl for the request, ca-certificates for the image's CA bundle.
missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v curl >/dev/null || missing+=(curl)
[[ -s /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if ((${#missing[@]})); then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1 ||
    skip "cannot install ${missing[*]} from Debian"
fi
# Whether buildah can work here at all (storage, chroot isolation): a failure to build later is
# then candor's, not the machine's.
if ! probe="$("${buildah[@]}" from --quiet scratch 2>&1)"; then
  skip "buildah cannot run here: $probe"
fi
"${buildah[@]}" rm "$probe" >/dev/null

work="$(mktemp -d)"
container=""
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$container" ]]; then
    "${buildah[@]}" umount "$container" >/dev/null 2>&1 || true
    "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true
  fi
  "${buildah[@]}" rmi -f "$TAG" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
for tool in chroot python3 ldd gzip; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done

# ── 1, 2: the binary and the root file system ───────────────────────────────────────────────────
cargo build --quiet --locked --profile "$profile" --bin candor || fail "cargo build --profile $profile"
target="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$target" == /* ]] || target="$repo/$target"
dir="$profile"
[[ "$profile" == dev ]] && dir=debug
binary="$target/$dir/candor"
deploy/docker/rootfs.sh "$binary" "$work/rootfs" || fail "deploy/docker/rootfs.sh"
ok "root file system: $(find "$work/rootfs" -type f | wc -l) files, binary $(du -k "$binary" | cut -f1) KiB ($profile profile)"

# ── 3: the image ────────────────────────────────────────────────────────────────────────────────
# The docker format keeps the Dockerfile's HEALTHCHECK (OCI images have no such field).
"${buildah[@]}" bud --isolation chroot --format docker --build-context "rootfs=$work/rootfs" \
  -f deploy/docker/Dockerfile -t "$TAG" . >"$work/build.log" 2>&1 || fail "buildah bud"
ok "buildah bud -f deploy/docker/Dockerfile: $TAG"
config="$("${buildah[@]}" inspect --type image --format '{{.Docker.Config.User}} {{.Docker.Config.Entrypoint}} {{.Docker.Config.Cmd}} {{.Docker.Config.Healthcheck.Test}}' "$TAG")"
[[ "$config" == "65532:65532 [/usr/local/bin/candor] [run --config /etc/candor/candor.toml] [CMD /usr/local/bin/candor healthcheck]" ]] ||
  fail "unexpected user, entrypoint, cmd or healthcheck: $config"
ok "user, entrypoint, cmd, healthcheck: $config"

# ── 4: candor from the image's root file system ─────────────────────────────────────────────────
container="$("${buildah[@]}" from "$TAG")"
root="$("${buildah[@]}" mount "$container")"
in_image() { chroot --userspec=65532:65532 "$root" /usr/local/bin/candor "$@"; }
version="$(in_image --version)" || fail "candor --version in the image"
ok "candor --version: $version"
in_image check --config /etc/candor/candor.toml >"$work/check.log" 2>&1 || fail "candor check in the image"
ok "candor check: $(cat "$work/check.log")"

# Three free loopback ports, held together so that they differ, then released.
read -r origin_port proxy_port admin_port < <(
  python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()'
)
mkdir -p "$work/origin"
echo "hello from the origin" >"$work/origin/hello.txt"
# Polls until FILE holds a line matching PATTERN, while PID lives, within DEADLINE seconds.
await_line() {
  local file="$1" pattern="$2" pid="$3" what="$4"
  local end=$((SECONDS + DEADLINE))
  until grep -q "$pattern" "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || fail "$what exited before it was listening"
    ((SECONDS < end)) || fail "$what was not listening within ${DEADLINE}s"
    sleep 0.1
  done
}
# Unbuffered: it says "Serving HTTP" once its socket is bound.
python3 -u -m http.server --bind 127.0.0.1 --directory "$work/origin" "$origin_port" >"$work/origin.log" 2>&1 &
pids+=("$!")
await_line "$work/origin.log" "^Serving HTTP" "$!" "the origin"

# The service manager's end of NOTIFY_SOCKET: an abstract socket (chroot does not change the
# network namespace it lives in) that exits 0 on READY=1, 1 after DEADLINE seconds.
notify="candor-image-sh-$$"
python3 - "$notify" "$DEADLINE" >"$work/notify.log" 2>&1 <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1])
s.settimeout(float(sys.argv[2]))
print("bound", flush=True)
while True:
    message = s.recv(4096).decode()
    print(message.replace("\n", " "), flush=True)
    if "READY=1" in message.splitlines():
        sys.exit(0)
EOF
listener=$!
pids+=("$listener")
await_line "$work/notify.log" "^bound" "$listener" "the NOTIFY_SOCKET listener"

NOTIFY_SOCKET="@$notify" CANDOR__UPSTREAM__URL="http://127.0.0.1:$origin_port" \
  CANDOR__SERVER__LISTEN="127.0.0.1:$proxy_port" CANDOR__SERVER__ADMIN_LISTEN="127.0.0.1:$admin_port" \
  RUST_LOG=info \
  chroot --userspec=65532:65532 "$root" /usr/local/bin/candor run --config /etc/candor/candor.toml \
  >"$work/candor.log" 2>&1 &
candor=$!
pids+=("$candor")
wait "$listener" || fail "no READY=1 from candor within ${DEADLINE}s"
ok "candor run from the image as uid 65532: $(tail -n 1 "$work/notify.log")"
in_image healthcheck --admin "127.0.0.1:$admin_port" >"$work/healthcheck.log" 2>&1 || fail "candor healthcheck"
ok "candor healthcheck --admin 127.0.0.1:$admin_port: exit 0"
body="$(curl -fsS "http://127.0.0.1:$proxy_port/hello.txt")" || fail "GET /hello.txt through candor"
[[ "$body" == "hello from the origin" ]] || fail "GET /hello.txt through candor: $body"
ok "GET /hello.txt through candor: 200, the origin's body"
kill -TERM "$candor"
code=0
wait "$candor" || code=$?
[[ $code == 0 ]] || fail "candor exited $code on SIGTERM"
ok "SIGTERM: exit 0"

# ── 5: the size ─────────────────────────────────────────────────────────────────────────────────
"${buildah[@]}" umount "$container" >/dev/null
unpacked="$(du -sk "$work/rootfs" | cut -f1)"
"${buildah[@]}" push --quiet --format docker "$TAG" "docker-archive:$work/candor.tar:$TAG" >"$work/push.log" 2>&1 ||
  fail "buildah push docker-archive"
compressed="$(gzip -c "$work/candor.tar" | wc -c)"
ok "image size: $("${buildah[@]}" images --format '{{.Size}}' "$TAG") as stored, ${unpacked} KiB unpacked, $((compressed / 1024)) KiB gzip-compressed (what a registry transfers)"
