#!/usr/bin/env bash
# Makes sure /usr/bin/python3 can import what the SDK needs (grpcio, protobuf), installing
# Debian's packages when they are missing (PyPI is not needed). Idempotent.
set -euo pipefail
if /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null; then
  exit 0
fi
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing python3-grpcio python3-protobuf (Debian)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-grpcio python3-protobuf
