#!/usr/bin/env bash
# Build a bare Debian systemd base image for the sandbox hosts and Molecule, from Debian's own
# packages (no registry needed): debootstrap, trust this machine's CA bundle, docker import.
# Usage: tools/build-image.sh bookworm|trixie [IMAGE_NAME]
# Skips the build when the image already exists (set WEBSTACK_REBUILD=1 to force).
set -euo pipefail
suite=${1:?usage: build-image.sh bookworm|trixie [image]}
case "$suite" in
  bookworm) default_name=webstack/debian12-systemd ;;
  trixie) default_name=webstack/debian13-systemd ;;
  *) echo "build-image: unknown suite '$suite' (bookworm or trixie)" >&2; exit 2 ;;
esac
name=${2:-$default_name}
mirror=${WEBSTACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "${WEBSTACK_REBUILD:-0}" != 1 ] && docker image inspect "$name" >/dev/null 2>&1; then
  echo "build-image: $name exists"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
}

root=$(mktemp -d /var/tmp/webstack-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-image: debootstrap $suite into $root" >&2
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,python3,python3-apt,sudo,ca-certificates,iproute2,procps \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
rm -f "$root.log"

# Security and point-release updates, like any real host.
cat >"$root/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SRC

# Trust this machine's CA bundle (a TLS-intercepting proxy may sit before PyPI).
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/build-host-bundle.crt"
  chroot "$root" update-ca-certificates >/dev/null
fi

# A container, not a machine: no consoles, no kernel-facing units that can only fail here.
for unit in getty.target console-getty.service systemd-firstboot.service \
            systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount \
            systemd-udevd.service systemd-udev-trigger.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
: >"$root/etc/machine-id"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
# An empty list directory must look stale, or apt cache_valid_time skips the first update.
touch -d 2000-01-01 "$root"/var/lib/apt/lists

echo "build-image: importing $name" >&2
tar -C "$root" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  - "$name" >/dev/null
echo "build-image: $name built"
