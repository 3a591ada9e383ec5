#!/usr/bin/env bash
# Provision Prometheus' own Python parser (prometheus_client, pure Python, no dependencies)
# for tests/serve.rs, which parses `loopspy serve`'s exposition with it: installed with
# `pip install --target` into $CACHE/promclient/VERSION from the shared wheelhouse (network
# only when the wheel is missing). A second run does nothing.
#
# usage: scripts/prom-parser.sh
set -euo pipefail

VERSION=0.26.0
CACHE=${LOOPSPY_CACHE:-$HOME/.cache/loopspy}
DEST=$CACHE/promclient/$VERSION
WHEELS=$CACHE/wheels
if [ -f "$DEST/prometheus_client/parser.py" ]; then
    exit 0
fi
# Any interpreter with pip: the package is pure Python (3.9+).
py=""
for cand in $(awk -F'\t' '$1 >= "3.9" {print $2}' "$CACHE/pythons.tsv" 2>/dev/null) python3; do
    if "$cand" -m pip --version >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
[ -n "$py" ] || { echo "prom-parser: no Python with pip found" >&2; exit 1; }
mkdir -p "$WHEELS"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
if ! ls "$WHEELS"/prometheus_client-$VERSION-*.whl >/dev/null 2>&1; then
    "$py" -m pip download --no-cache-dir --no-deps --only-binary=:all: -d "$WHEELS" "prometheus_client==$VERSION" >/dev/null
fi
rm -rf "$DEST.tmp"
"$py" -m pip install --no-cache-dir --no-index --find-links "$WHEELS" --no-deps --target "$DEST.tmp" "prometheus_client==$VERSION" >/dev/null
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "prom-parser: prometheus_client $VERSION in $DEST" >&2
