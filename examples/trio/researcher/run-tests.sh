#!/usr/bin/env bash
# The Researcher's own tests (search ranking, relevance, weather lookups, date hints); run by tests/run-all.sh.
set -euo pipefail
cd "$(dirname "$0")"
../../../sdk-js/scripts/ensure-built.sh
npm ci --no-audit --no-fund
npm test
