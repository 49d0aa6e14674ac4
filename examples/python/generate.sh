#!/usr/bin/env bash
# Generates the Python stubs of the jetway.v1 contract and of
# google.rpc.Status / ErrorInfo into OUT (default: gen/ next to this
# script), with Debian's protoc (protobuf-compiler) and grpc_python_plugin
# (protobuf-compiler-grpc). The google/protobuf well-known types come with
# protoc (/usr/include) and python3-protobuf.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/gen}"
plugin="$(command -v grpc_python_plugin)"
mkdir -p "$out"
protoc -I "$here/../../proto" -I "$here/../proto" \
  --python_out="$out" --grpc_python_out="$out" --plugin=protoc-gen-grpc_python="$plugin" \
  jetway/v1/types.proto jetway/v1/message.proto jetway/v1/admin.proto \
  google/rpc/status.proto google/rpc/error_details.proto
echo "stubs in $out"
