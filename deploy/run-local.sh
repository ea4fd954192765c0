#!/usr/bin/env bash
# `make run`: on a fresh machine, with no tokens and no API key, install
# what is missing, build the binary and the sandbox image, start containerd
# on a private socket if it is not running there, and serve
# examples/local.yaml (local connector, sandboxed sessions, tools-only agent).
#
# `make stop` (run-local.sh stop): stop the gateway and the containerd this
# script started, and nothing else.
#
# What it leaves for the operator commands: the served config (absolute
# paths) in test/.state/run/local.yaml, ./parachute.yaml linking to it (the
# default config of every `parachute` command run from the repository), and
# /usr/local/bin/parachute linking to bin/parachute.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

BIN=$PWD/bin/parachute
RUN=$PWD/test/.state/run
SOCK=$RUN/containerd/containerd.sock
GW_PID=$RUN/gateway.pid
CTRD_PID=$RUN/containerd/pid

say() { echo "make run: $*"; }

# is_ours PIDFILE WORD: the pid in PIDFILE is alive and its command line
# holds WORD and this run's folder (a pid reused by another program is
# never signalled).
is_ours() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$RUN" || return 1
  echo "$pid"
}

# stop_pid PIDFILE WORD NAME: SIGTERM, then wait up to 20s, then SIGKILL.
stop_pid() {
  local pid
  if ! pid=$(is_ours "$1" "$2"); then
    echo "make stop: $3 is not running (no live $2 from $1)"
    rm -f "$1"
    return 0
  fi
  echo "make stop: stopping $3 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "make stop: $3 did not stop in 20s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

if [ "${1:-}" = stop ]; then
  # The gateway first: it stops every sandbox before it exits; then the
  # containerd make run started (one that was already running is left).
  stop_pid "$GW_PID" "serve" "the gateway"
  stop_pid "$CTRD_PID" "containerd" "containerd (started by make run)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "make run: containerd sandboxes need root; run it as root (sudo make run)" >&2
  exit 1
fi
if pid=$(is_ours "$GW_PID" serve); then
  echo "make run: the gateway is already running (pid $pid); stop it first: sudo make stop" >&2
  exit 1
fi

# progress LABEL CMD…: run CMD, saying every 15s that it is still going
# (the first build downloads the Go modules and compiles everything: a
# few minutes).
progress() {
  local label=$1 start=$SECONDS pid
  shift
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && say "  … still $label ($((SECONDS - start))s)"
  done
  wait "$pid"
}

say "[1/5] system packages (containerd, runc, busybox-static; apt, only what is missing)"
progress "installing packages" bash test/deps/00-base.sh

say "[2/5] building bin/parachute (the first build fetches Go modules: a few minutes)"
progress "building" make -s build
# Put parachute on PATH, but never over a binary installed there (a link
# of an earlier make run is replaced).
if [ ! -e /usr/local/bin/parachute ] || [ -L /usr/local/bin/parachute ]; then
  ln -sfn "$BIN" /usr/local/bin/parachute 2>/dev/null || say "could not link /usr/local/bin/parachute; use $BIN"
else
  say "/usr/local/bin/parachute is an installed binary, left as it is; this build is $BIN"
fi
mkdir -p "$RUN/containerd" "$RUN/vault" "$RUN/state"
chmod 700 "$RUN/state"

say "[3/5] containerd on $SOCK"
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
  say "  starting containerd (log: $RUN/containerd/log; make stop stops it)"
  nohup containerd --config "$RUN/containerd/config.toml" >"$RUN/containerd/log" 2>&1 &
  echo $! > "$CTRD_PID"
  for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
  [ -S "$SOCK" ] || { echo "make run: containerd did not start; see $RUN/containerd/log" >&2; exit 1; }
else
  say "  already running"
fi

say "[4/5] sandbox image (rebuilt only when its inputs changed)"
progress "building the image" "$BIN" image build --binary "$BIN" --address "$SOCK"

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
# is world-readable: serve a private copy, its paths made absolute so the
# operator commands read the same files from any folder.
CONFIG=$RUN/local.yaml
(umask 077 && sed -e "s|test/\.state/run|$RUN|g" -e "s|^policies: policies\$|policies: $PWD/policies|" examples/local.yaml > "$CONFIG")
chmod 600 "$CONFIG"
if [ ! -e parachute.yaml ] || [ -L parachute.yaml ]; then
  ln -sfn "$CONFIG" parachute.yaml
else
  say "./parachute.yaml is a file of yours, left as it is: operator commands read it, not $CONFIG"
fi
export PARACHUTE_CONFIG=$CONFIG

say "[5/5] parachute doctor"
"$BIN" doctor --config "$CONFIG" | sed 's/^/  /' || say "  doctor found problems (above); the gateway refuses to start on the fatal ones"

cat <<MSG

Parachute is starting with examples/local.yaml (served from $CONFIG).
Requests need the bearer token in $TOKEN_FILE. In another terminal:

  curl -s localhost:8765/v1/messages -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"user":"me","text":"/help"}'
  curl -s localhost:8765/v1/messages -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"user":"me","text":"/write notes.md hello"}'
  curl -s localhost:8765/v1/messages -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"user":"me","text":"/cat notes.md"}'
  curl -s localhost:8765/v1/messages -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"user":"stranger","text":"/pair"}'   # a pairing code

Operator commands (as root: the state dir is root's) find this gateway by
./parachute.yaml in $PWD, or anywhere with
  export PARACHUTE_CONFIG=$CONFIG

  sudo parachute logs | grep "connector="
  sudo parachute logs | grep "session_id=" | grep "trust_level=direct"
  sudo parachute pair list          # then: sudo parachute pair approve CODE
  sudo parachute sessions list
  sudo parachute doctor

The operator console (sessions, approvals, live decisions, turn traces,
the audit trail, the policy playground) is on http://127.0.0.1:9464/console/
(loopback only). Sign in with the one-time URL the gateway logs as it
starts, or print a fresh one (single use, 10 minutes):

  sudo parachute console url --config parachute.yaml

parachute is $BIN (linked from /usr/local/bin/parachute).
Stop with Ctrl-C, or from another terminal: sudo make stop (stops this
gateway and the containerd make run started).

MSG
echo $$ > "$GW_PID"
exec "$BIN" serve --config "$CONFIG" --pretty
