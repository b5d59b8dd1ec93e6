#!/usr/bin/env bash
# sdk-js test entry: install, build the .NET test agent if missing, typecheck, lint, build, then
# run the node:test suites against real bridges (each suite starts its own on random ports).
# Usage: sdk-js/run-tests.sh   (from anywhere). LOOM_BRIDGE_LAUNCHER overrides how the bridge starts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

echo "== npm ci"
npm ci --no-audit --no-fund

if [ ! -f ../tests/Loom.TestAgent/bin/Release/net10.0/Loom.TestAgent.dll ]; then
  echo "== building tests/Loom.TestAgent"
  (cd .. && dotnet build tests/Loom.TestAgent -c Release -nologo -v quiet)
fi
if [ ! -f ../tests/Loom.LlmFake/bin/Release/net10.0/Loom.LlmFake.dll ]; then
  echo "== building tests/Loom.LlmFake (the fake LLM server of llm.test.ts)"
  (cd .. && dotnet build tests/Loom.LlmFake -c Release -nologo -v quiet)
fi
if [ -z "${LOOM_BRIDGE_LAUNCHER:-}" ]; then
  echo "== bridge CLI (builds when stale)"
  ../loom --help >/dev/null
fi

echo "== typecheck (tsc --noEmit, strict)"
npx tsc -p tsconfig.json --noEmit
npx tsc -p tsconfig.test.json --noEmit

echo "== lint (eslint + typescript-eslint)"
npx eslint .

echo "== format (prettier --check; npx prettier --write ... with the same paths fixes it)"
npx prettier --check --config .prettierrc --log-level warn src test ../examples/trio/researcher/src ../examples/trio/researcher/test

echo "== build"
rm -rf dist build
npm run --silent build
npm run --silent build:test

echo "== node:test"
node --test --test-reporter=tap build/test/unit.test.js build/test/vectors.test.js build/test/sdk.test.js build/test/dotnet.test.js build/test/resilience.test.js build/test/python.test.js build/test/mcp.test.js build/test/collab.test.js build/test/security.test.js build/test/llm.test.js build/test/durable.test.js build/test/idempotency.test.js
