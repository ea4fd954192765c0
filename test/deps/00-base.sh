#!/usr/bin/env bash
# Debian packages the test suite needs: containerd and runc for the sandbox
# tests, runsc (gVisor) for the gvisor runtime class, busybox-static for the
# sandbox image's shell, iproute2 for network checks. Idempotent and quiet
# when everything is there.
set -euo pipefail
pkgs=(containerd runc runsc busybox-static iproute2 make)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "test/deps/00-base.sh: missing ${missing[*]}; install them as root (tests that need them will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
