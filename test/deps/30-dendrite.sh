#!/usr/bin/env bash
# Dendrite v0.13.8, the Matrix homeserver the Matrix connector's tests run
# against (test/matrix starts it on loopback). Built from the Go module proxy
# into test/.state/bin without cgo (sqlite through modernc). Idempotent: does
# nothing when the binaries exist. Quiet unless something fails.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/test/.state/bin"
version=v0.13.8
if [ -x "$bin/dendrite" ] && [ -x "$bin/generate-keys" ]; then
  exit 0
fi
mkdir -p "$bin"
# A module outside the repository, so the repository's go.mod is untouched.
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 GOBIN="$bin"
cd "$(mktemp -d)"
log="$(mktemp)"
if ! go install "github.com/matrix-org/dendrite/cmd/dendrite@$version" \
     "github.com/matrix-org/dendrite/cmd/generate-keys@$version" >"$log" 2>&1; then
  cat "$log" >&2
  echo "test/deps/30-dendrite.sh: building dendrite $version failed (Matrix tests will skip, or fail with CI=true)" >&2
  exit 1
fi
rm -f "$log"
