#!/usr/bin/env bash
# Python interop suite: the bridge driven by the official grpcio client. Run from anywhere;
# extra arguments go to pytest (e.g. -k round_trip).
set -euo pipefail
cd "$(dirname "$0")/../../.."

# Debian's grpcio/protobuf/pytest and protoc + grpc_python_plugin (PyPI is not reachable).
need=()
/usr/bin/python3 -c 'import grpc, google.protobuf, pytest' 2>/dev/null \
  || need+=(python3-grpcio python3-protobuf python3-pytest)
command -v protoc >/dev/null || need+=(protobuf-compiler)
[ -x /usr/bin/grpc_python_plugin ] || need+=(protobuf-compiler-grpc)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/interop/python "$@"
