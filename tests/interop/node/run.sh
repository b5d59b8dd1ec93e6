#!/usr/bin/env bash
# Node interop suite: the bridge driven by the official @grpc/grpc-js client. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm test
