#!/usr/bin/env bash
# Installs what examples/ needs to run (and examples_test.go to run them):
#   - Node 18+ and npm (the CI image has them; else Debian's nodejs, npm),
#     then `npm ci` in examples/node (versions pinned by package-lock.json);
#     examples/serverless has no dependencies;
#   - Debian's python3-grpcio, python3-protobuf, protobuf-compiler (protoc),
#     protobuf-compiler-grpc (grpc_python_plugin) and libprotobuf-dev (the
#     well-known .proto files), for examples/python: no PyPI.
# Only what is missing is installed; apt-get needs root (CI runs as root).
# Idempotent; a few seconds when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc libprotobuf-dev)
command -v node >/dev/null || debs+=(nodejs)
command -v npm >/dev/null || debs+=(npm)

missing=()
for d in "${debs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$d")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-example-tools: missing Debian packages (run as root): ${missing[*]}" >&2
    exit 1
  fi
  echo "install-example-tools: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "install-example-tools: node $(node -v) is older than 18 (the examples use the built-in fetch)" >&2
  exit 1
fi
(cd examples/node && npm ci --no-audit --no-fund --loglevel=error)

echo "install-example-tools: node $(node -v), npm $(npm -v), $(protoc --version)," \
  "grpcio $(/usr/bin/python3 -c 'import grpc; print(grpc.__version__)')," \
  "protobuf $(/usr/bin/python3 -c 'import google.protobuf; print(google.protobuf.__version__)')"
