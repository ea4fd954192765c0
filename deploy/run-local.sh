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

# The local connector's bearer token: made once, kept across runs, readable
# only by whoever ran `sudo make run` (so their curl can send it).
TOKEN_FILE=$RUN/local.token
if [ ! -s "$TOKEN_FILE" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN_FILE")
fi
chmod 600 "$TOKEN_FILE"
if [ -n "${SUDO_UID:-}" ]; then chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$TOKEN_FILE"; fi
PARACHUTE_LOCAL_TOKEN=$(cat "$TOKEN_FILE")
export PARACHUTE_LOCAL_TOKEN
# The config names a secret's variable, so the gateway refuses it while it
# is world-readable: serve a private copy.
CONFIG=$RUN/local.yaml
install -m 600 examples/local.yaml "$CONFIG"

cat <<MSG

Parachute is starting with examples/local.yaml (served from $CONFIG).
Requests need the bearer token in $TOKEN_FILE. In another terminal:

  curl -s localhost:8765/v1/messages -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"user":"me","text":"/help"}'
  curl -s localhost:8765/v1/messages -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"user":"me","text":"/write notes.md hello"}'
  curl -s localhost:8765/v1/messages -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"user":"me","text":"/cat notes.md"}'
  curl -s localhost:8765/v1/messages -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"user":"stranger","text":"hi"}'   # denied
  curl -s localhost:8765/v1/messages -d '{"user":"me","text":"/whoami"}'   # no token: 401
  $BIN logs --dir $RUN/state/audit

MSG
exec "$BIN" serve --config "$CONFIG" --pretty
