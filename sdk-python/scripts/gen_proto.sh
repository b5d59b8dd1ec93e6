#!/usr/bin/env bash
# Regenerates src/loom/_proto/ from proto/loom/v1/bridge.proto and collaboration.proto with Debian's protoc (3.21) and
# grpc_python_plugin, which match python3-protobuf and python3-grpcio.
# Usage: sdk-python/scripts/gen_proto.sh [OUT_DIR]   (default: sdk-python/src/loom/_proto)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
out="${1:-$here/src/loom/_proto}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
protoc -I "$root/proto" \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_out="$tmp" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin \
  "$root/proto/loom/v1/bridge.proto" "$root/proto/loom/v1/collaboration.proto"
# The file keeps its proto path (loom/v1/bridge.proto) in the descriptor pool; only the Python
# module moves, so the stub's absolute import becomes a relative one.
cp "$tmp/loom/v1/bridge_pb2.py" "$tmp/loom/v1/bridge_pb2.pyi" "$out/"
sed 's/^from loom\.v1 import bridge_pb2 as/from . import bridge_pb2 as/' \
  "$tmp/loom/v1/bridge_pb2_grpc.py" >"$out/bridge_pb2_grpc.py"
# collaboration.proto imports bridge.proto: the same rewrite for its messages and its stub.
sed 's/^from loom\.v1 import bridge_pb2 as/from . import bridge_pb2 as/' \
  "$tmp/loom/v1/collaboration_pb2.py" >"$out/collaboration_pb2.py"
sed 's/^from loom\.v1 import bridge_pb2 as/from . import bridge_pb2 as/' \
  "$tmp/loom/v1/collaboration_pb2.pyi" >"$out/collaboration_pb2.pyi"
sed 's/^from loom\.v1 import collaboration_pb2 as/from . import collaboration_pb2 as/' \
  "$tmp/loom/v1/collaboration_pb2_grpc.py" >"$out/collaboration_pb2_grpc.py"
cat >"$out/__init__.py" <<'PY'
"""Generated protobuf and gRPC code for loom.v1 (scripts/gen_proto.sh); do not edit."""
PY
