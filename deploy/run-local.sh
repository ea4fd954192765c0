#!/usr/bin/env bash
# `make run`: on a fresh machine, with no tokens and no API key, install
# what is missing, build the binary and the sandbox image, start containerd
# on a private socket if it is not running there, and serve
# examples/local.yaml (local connector, sandboxed sessions, tools-only agent).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
  echo "make run: containerd sandboxes need root; run it as root (sudo make run)" >&2
  exit 1
fi
bash test/deps/00-base.sh

make -s build
BIN=$PWD/bin/parachute
RUN=$PWD/test/.state/run
SOCK=$RUN/containerd/containerd.sock
mkdir -p "$RUN/containerd" "$RUN/vault" "$RUN/state"
chmod 700 "$RUN/state"

if ! ctr --address "$SOCK" version >/dev/null 2>&1; then
  rm -f "$SOCK"
  cat > "$RUN/containerd/config.toml" <<TOML
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
TOML
  echo "make run: starting containerd on $SOCK (log: $RUN/containerd/log)"
  nohup containerd --config "$RUN/containerd/config.toml" >"$RUN/containerd/log" 2>&1 &
  for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
  [ -S "$SOCK" ] || { echo "make run: containerd did not start; see $RUN/containerd/log" >&2; exit 1; }
fi

"$BIN" image build --binary "$BIN" --address "$SOCK"

cat <<MSG

Parachute is starting with examples/local.yaml. In another terminal:

  curl -s localhost:8765/v1/messages -d '{"user":"me","text":"/help"}'
  curl -s localhost:8765/v1/messages -d '{"user":"me","text":"/write notes.md hello"}'
  curl -s localhost:8765/v1/messages -d '{"user":"me","text":"/cat notes.md"}'
  curl -s localhost:8765/v1/messages -d '{"user":"stranger","text":"hi"}'   # denied
  $BIN logs --dir $RUN/state/audit

MSG
exec "$BIN" serve --config examples/local.yaml --pretty
