#!/usr/bin/env bash
# Debian's Chromium, the browser test/browser drives headless (the operator
# console's browser tests in test/e2e/console_test.go). From apt, so its
# download goes through apt's own cache. Idempotent and quiet when
# /usr/bin/chromium is there; not root, it says so and the browser tests
# skip (or fail when CI=true).
set -euo pipefail
bin=/usr/bin/chromium
check() {
  # A browser that cannot render a blank page is as good as none.
  if ! out=$("$bin" --headless --no-sandbox --disable-gpu --dump-dom about:blank 2>&1) ||
     ! grep -q '<html>' <<<"$out"; then
    echo "test/deps/50-chromium.sh: $bin --headless --dump-dom about:blank failed:" >&2
    echo "$out" >&2
    exit 1
  fi
}
if [ -x "$bin" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test/deps/50-chromium.sh: $bin is missing; install Debian's chromium as root (browser tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
check
