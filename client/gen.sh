#!/usr/bin/env bash
# The client's own copy of the aarm.v1 stubs: generated from ../proto with grpc_tools,
# with their imports moved under aarm_pdp_client._gen (so the client installs without
# the server's `aarm` package). The proto file names stay aarm/v1/*.proto: loaded next
# to the server's stubs, both register the same files in protobuf's pool.
# usage: client/gen.sh PYTHON OUTDIR   (OUTDIR receives aarm/v1/...)
set -euo pipefail
py=$1 out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
(cd "$root" && "$py" -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" $(find proto/aarm -name '*.proto' | sort))
find "$out/aarm" -name '*.py' -o -name '*.pyi' | while read -r f; do
  sed -i -e 's/^from aarm\.v1 import/from aarm_pdp_client._gen.aarm.v1 import/' "$f"
done
touch "$out/aarm/__init__.py" "$out/aarm/v1/__init__.py"
