#!/usr/bin/env bash
# Assembles the root file system of candor's image around a built binary: what distroless'
# cc image holds, and nothing else (no shell, no package manager):
#   /usr/local/bin/candor       the binary
#   the shared libraries it links, at the paths `ldd` names (glibc, libm, libgcc_s, the loader)
#   /etc/ssl/certs/ca-certificates.crt   the CA bundle, for verifying TLS upstreams
#   /etc/passwd, /etc/group     root and nonroot (65532), what `USER 65532:65532` runs as
#   /etc/nsswitch.conf          hosts from /etc/hosts first, then DNS
#   /tmp (1777), /home/nonroot (65532)
# The Dockerfile's build stage runs it on the binary it built; deploy/image.sh runs it on one
# built on this machine and hands the result to the same runtime stage.
#   deploy/docker/rootfs.sh target/release/candor /path/to/rootfs
# Needs ldd (libc-bin) and Debian's ca-certificates on the machine it runs on, which is the
# machine the libraries are taken from: build and assemble on the same Debian release.
set -euo pipefail

binary="${1:?usage: rootfs.sh BINARY DEST}"
dest="${2:?usage: rootfs.sh BINARY DEST}"
bundle=/etc/ssl/certs/ca-certificates.crt
[[ -x "$binary" ]] || { echo "rootfs.sh: $binary is not an executable" >&2; exit 1; }
[[ -s "$bundle" ]] || { echo "rootfs.sh: no $bundle (install Debian's ca-certificates)" >&2; exit 1; }

mkdir -p "$dest"/usr/local/bin "$dest"/etc/ssl/certs "$dest"/tmp "$dest"/home/nonroot
install -m 0755 "$binary" "$dest/usr/local/bin/candor"

# `ldd` prints `name => /path (address)` for a library and `/path (address)` for the loader;
# the vDSO has no path. Each is copied as a file (symlinks followed) at the path it was found
# at, which is where the loader will look.
libraries="$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')"
[[ -n "$libraries" ]] || { echo "rootfs.sh: ldd names no library for $binary" >&2; exit 1; }
for library in $libraries; do
  mkdir -p "$dest$(dirname "$library")"
  cp -L "$library" "$dest$library"
  chmod 0755 "$dest$library"
done

cp -L "$bundle" "$dest$bundle"
chmod 0644 "$dest$bundle"
printf '%s\n' \
  'root:x:0:0:root:/root:/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dest/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$dest/etc/group"
printf '%s\n' 'hosts: files dns' >"$dest/etc/nsswitch.conf"
chmod 0644 "$dest/etc/passwd" "$dest/etc/group" "$dest/etc/nsswitch.conf"
chmod 1777 "$dest/tmp"
chown 65532:65532 "$dest/home/nonroot"
chmod 0700 "$dest/home/nonroot"
