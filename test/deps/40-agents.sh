#!/usr/bin/env bash
# The real agents the sandbox runs in test/e2e (TestRealAgentClaudeCode,
# TestRealAgentCodex): Claude Code and Codex CLI from npm, pinned, into
# test/.state/npm-agents. Their native binaries come in the platform
# packages npm picks for this machine (@anthropic-ai/claude-code-linux-x64,
# @openai/codex-linux-x64); `parachute image build --agent NAME` copies them
# into the sandbox image with their ELF closure. npm's own cache keeps a
# second install offline. Idempotent and quiet when done; without npm it
# says so and the tests skip (or fail when CI=true).
set -euo pipefail
claude=2.1.332
codex=0.169.1
root=$(cd "$(dirname "$0")/../.." && pwd)
prefix="$root/test/.state/npm-agents"
have() { [ -f "$prefix/node_modules/$1/package.json" ] && grep -q "\"version\": \"$2\"" "$prefix/node_modules/$1/package.json"; }
if have @anthropic-ai/claude-code "$claude" && have @openai/codex "$codex"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "test/deps/40-agents.sh: npm is missing; install nodejs and npm (real-agent tests will skip)" >&2
  exit 0
fi
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$claude" "@openai/codex@$codex" >/dev/null
