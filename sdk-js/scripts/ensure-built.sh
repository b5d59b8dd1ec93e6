#!/usr/bin/env bash
# Makes sure the SDK is installed and built (dist/), e.g. before an agent that depends on it via
# "file:" is built. Installs from the committed lock file when node_modules is missing or older
# than it; rebuilds when dist/ is missing or older than a source file. Idempotent and quiet.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "sdk-js: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
if [ ! -f dist/mod.js ] || [ -n "$(find src scripts package.json tsconfig.json tsconfig.base.json -newer dist/mod.js -type f -print -quit)" ]; then
  echo "sdk-js: building" >&2
  npm run --silent build >&2
fi
