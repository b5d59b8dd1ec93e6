#!/usr/bin/env bash
# Python SDK tests: mypy (strict) on the package, then pytest against a real bridge started on
# port 0 (set LOOM_BRIDGE_GRPC_ADDR / LOOM_BRIDGE_HTTP_ADDR to use a running one).
# Extra arguments go to pytest (e.g. -k reconnect).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages only (PyPI is not reachable): grpcio, protobuf, pytest, pytest-asyncio, mypy, protoc,
# black and flake8 (the formatter and linter; ruff is not packaged for Debian 12).
need=()
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
/usr/bin/python3 -c 'import google.protobuf' 2>/dev/null || need+=(python3-protobuf)
/usr/bin/python3 -c 'import pytest' 2>/dev/null || need+=(python3-pytest)
/usr/bin/python3 -c 'import pytest_asyncio' 2>/dev/null || need+=(python3-pytest-asyncio)
/usr/bin/python3 -c 'import mypy' 2>/dev/null || need+=(python3-mypy)
command -v protoc >/dev/null || need+=(protobuf-compiler)
[ -x /usr/bin/grpc_python_plugin ] || need+=(protobuf-compiler-grpc)
command -v black >/dev/null || need+=(black)
command -v flake8 >/dev/null || need+=(flake8)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
agent=tests/Loom.TestAgent/bin/Release/net10.0/Loom.TestAgent.dll
if [ ! -f "$agent" ]; then
  echo "building tests/Loom.TestAgent" >&2
  dotnet build tests/Loom.TestAgent -c Release -nologo -v quiet >&2
fi

fake=tests/Loom.LlmFake/bin/Release/net10.0/Loom.LlmFake.dll
if [ ! -f "$fake" ]; then
  echo "building tests/Loom.LlmFake (the fake LLM server of test_llm.py)" >&2
  dotnet build tests/Loom.LlmFake -c Release -nologo -v quiet >&2
fi

# Formatting and lint of the SDK, its tests and benchmarks, and the Python examples; `black
# --config sdk-python/pyproject.toml sdk-python/src sdk-python/tests sdk-python/bench examples` fixes the format.
py_paths=(sdk-python/src sdk-python/tests sdk-python/bench examples)
echo "== black --check (sdk-python/pyproject.toml)"
black --check -q --config sdk-python/pyproject.toml "${py_paths[@]}"
echo "== flake8 (sdk-python/.flake8)"
flake8 --config sdk-python/.flake8 "${py_paths[@]}"

echo "== mypy (strict) sdk-python/src/loom"
(cd sdk-python && /usr/bin/python3 -m mypy --config-file pyproject.toml src/loom bench/bench.py)

echo "== pytest sdk-python/tests"
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider sdk-python/tests "$@"
