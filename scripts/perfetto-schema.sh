#!/usr/bin/env bash
# Provision Perfetto's own trace schema, compiled for Python (PyPI's `perfetto` package ships
# perfetto/protos/perfetto/trace/perfetto_trace_pb2.py) with the protobuf runtime it needs,
# for tests/perfetto.rs, which parses loopspy's .pftrace output with it
# (tests/tools/check_pftrace.py): installed with `pip install --target` into
# $CACHE/perfetto/PERFETTO-PROTOBUF from the shared wheelhouse (network only when a wheel is
# missing). The interpreter it was installed for is written beside it (`python`): protobuf's
# wheel is built for CPython 3.10+ (abi3). A second run does nothing.
#
# usage: scripts/perfetto-schema.sh
set -euo pipefail

PERFETTO=0.59.1
PROTOBUF=7.36.2
CACHE=${LOOPSPY_CACHE:-$HOME/.cache/loopspy}
DEST=$CACHE/perfetto/$PERFETTO-$PROTOBUF
WHEELS=$CACHE/wheels
if [ -f "$DEST/perfetto/protos/perfetto/trace/perfetto_trace_pb2.py" ] && [ -x "$(cat "$DEST/python" 2>/dev/null)" ]; then
    exit 0
fi
# An interpreter with pip that protobuf's wheel supports (3.10+).
py=""
for cand in $(awk -F'\t' '$1 >= "3.10" {print $2}' "$CACHE/pythons.tsv" 2>/dev/null) python3; do
    if "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null && "$cand" -m pip --version >/dev/null 2>&1; then
        py=$(command -v "$cand")
        break
    fi
done
[ -n "$py" ] || { echo "perfetto-schema: no Python 3.10+ with pip found" >&2; exit 1; }
mkdir -p "$WHEELS"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
if ! ls "$WHEELS"/perfetto-$PERFETTO-*.whl "$WHEELS"/protobuf-$PROTOBUF-*.whl >/dev/null 2>&1; then
    "$py" -m pip download --no-cache-dir --no-deps --only-binary=:all: -d "$WHEELS" "perfetto==$PERFETTO" "protobuf==$PROTOBUF" >/dev/null
fi
rm -rf "$DEST.tmp"
"$py" -m pip install --no-cache-dir --no-index --find-links "$WHEELS" --no-deps --target "$DEST.tmp" \
    "perfetto==$PERFETTO" "protobuf==$PROTOBUF" >/dev/null
echo "$py" >"$DEST.tmp/python"
PYTHONPATH="$DEST.tmp" "$py" -c 'from perfetto.protos.perfetto.trace import perfetto_trace_pb2' \
    || { echo "perfetto-schema: the schema does not import with $py" >&2; exit 1; }
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "perfetto-schema: perfetto $PERFETTO (protobuf $PROTOBUF) in $DEST for $py" >&2
