"""Generated protobuf and gRPC code for loom.v1 (scripts/gen_proto.sh); do not edit."""
