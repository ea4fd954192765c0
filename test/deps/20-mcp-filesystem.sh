#!/usr/bin/env bash
# The reference MCP filesystem server, a real upstream for mcpproxy's tests:
# test/.state/npm/node_modules/.bin/mcp-server-filesystem. Idempotent and
# quiet when it is there; without node/npm it says so and the tests that need
# it skip (or fail when CI=true).
set -euo pipefail
version=2026.8.31
root=$(cd "$(dirname "$0")/../.." && pwd)
prefix="$root/test/.state/npm"
pkg="$prefix/node_modules/@modelcontextprotocol/server-filesystem/package.json"
if [ -f "$pkg" ] && grep -q "\"version\": \"$version\"" "$pkg"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "test/deps/20-mcp-filesystem.sh: npm is missing; install nodejs and npm (MCP upstream tests will skip)" >&2
  exit 0
fi
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
  "@modelcontextprotocol/server-filesystem@$version" >/dev/null
