#!/usr/bin/env bash
# The Planner's own tests (offline planning: weather intent, cities, relative days); run by
# tests/run-all.sh. mypy (strict, the SDK's settings) on the planner, then pytest.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../../.. && pwd)"
need=()
/usr/bin/python3 -c 'import pytest' 2>/dev/null || need+=(python3-pytest)
/usr/bin/python3 -c 'import mypy' 2>/dev/null || need+=(python3-mypy)
/usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || need+=(python3-grpcio python3-protobuf)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
echo "== mypy (strict) examples/trio/planner"
(cd "$root/sdk-python" && MYPYPATH=src /usr/bin/python3 -m mypy --config-file pyproject.toml ../examples/trio/planner/planning.py ../examples/trio/planner/planner.py)
echo "== pytest examples/trio/planner/tests"
PYTHONPATH="$root/sdk-python/src:$PWD" exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests "$@"
