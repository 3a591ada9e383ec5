#!/usr/bin/env bash
# Compile offsets.c against the headers of every CPython version found and
# write out/3.X.txt; then (unless --headers-only) run ctypes_check.py under
# every matching interpreter found and write out/empirical-3.X.txt.
#
# Header sources (first match wins per minor version):
#   $PYENV_ROOT/versions/3.X.Y/include/python3.X        (pyenv, 3.8+)
#   $LOOPSPY_PYTHONS/sid-root/usr/include/python3.X     (Debian libpython3.X-dev)
# Interpreters for the empirical check:
#   $PYENV_ROOT/versions/3.X.Y/bin/python3.X
#   $LOOPSPY_PYTHONS/bin/python3.X
#
# Idempotent: outputs are fully regenerated, build files go to a temp dir.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/out"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
LOOPSPY_PYTHONS="${LOOPSPY_PYTHONS:-$HOME/.cache/loopspy/pythons}"
CC="${CC:-gcc}"
headers_only=0
[[ "${1:-}" == "--headers-only" ]] && headers_only=1

mkdir -p "$out"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT

# python used to run gen_dbgoff.py (any python3 works)
genpy="$(command -v python3 || true)"

declare -A inc_of=() root_of=()
for d in "$PYENV_ROOT"/versions/3.*/include/python3.*; do
    [[ -f "$d/Python.h" ]] || continue
    m="${d##*/python}"            # 3.X
    [[ "$m" =~ ^3\.([0-9]+)$ ]] || continue   # skips 3.13t etc.
    (( BASH_REMATCH[1] >= 8 )) || continue
    [[ -n "${inc_of[$m]:-}" ]] || inc_of[$m]="$d"
done
sid="$LOOPSPY_PYTHONS/sid-root"
for d in "$sid"/usr/include/python3.*; do
    [[ -f "$d/Python.h" ]] || continue
    m="${d##*/python}"
    [[ "$m" =~ ^3\.([0-9]+)$ ]] || continue
    if [[ -z "${inc_of[$m]:-}" ]]; then inc_of[$m]="$d"; root_of[$m]="$sid/usr/include"; fi
done

versions=$(printf '%s\n' "${!inc_of[@]}" | sort -t. -k2,2n)
[[ -n "$versions" ]] || { echo "no CPython headers found" >&2; exit 1; }

for m in $versions; do
    inc="${inc_of[$m]}"
    bdir="$build/$m"; mkdir -p "$bdir"
    flags=(-std=gnu11 -O0 -Wall -Wno-unused-function
           -DPy_BUILD_CORE -DPy_BUILD_CORE_MODULE
           -I"$inc" -I"$inc/internal" -I"$bdir")
    # Debian multiarch: pyconfig.h lives in <x86_64-linux-gnu/python3.X/pyconfig.h>;
    # -idirafter so the host's libc headers keep precedence over the sid ones.
    [[ -n "${root_of[$m]:-}" ]] && flags+=(-idirafter "${root_of[$m]}")
    # Core-only defines the interpreter was built with that are not in
    # pyconfig.h (e.g. Debian 3.14/3.15: --enable-experimental-jit=yes-off ->
    # -D_Py_TIER2=3 -D_Py_JIT, which changes sizeof(_PyThreadStateImpl) in
    # 3.15). Taken from the config Makefile installed next to the headers.
    prefix="$(cd "$inc/../.." && pwd)"
    mk="$(ls "$prefix"/lib/python"$m"/config-"$m"*/Makefile 2>/dev/null | head -1 || true)"
    defs=()
    if [[ -n "$mk" ]]; then
        read -r -a defs <<<"$(grep -E '^(CONFIGURE_CFLAGS_NODIST|CONFIGURE_CPPFLAGS|CONFIGURE_CFLAGS)=' "$mk" \
            | tr ' \t' '\n\n' | grep -E '^-D_?Py_' | grep -v '^-DPy_BUILD_CORE' | sort -u | tr '\n' ' ')"
    fi
    flags+=("${defs[@]}")
    if [[ -n "$genpy" ]]; then
        read -r -a extra <<<"$("$genpy" "$here/gen_dbgoff.py" "$inc" "$bdir")"
        flags+=("${extra[@]}")
    fi
    echo "== $m: $inc"
    "$CC" "${flags[@]}" -o "$bdir/offsets" "$here/offsets.c"
    {
        echo "# headers: ${inc/#"$HOME"/\~}"
        src="no config Makefile"; [[ -n "$mk" ]] && src="${mk/#"$HOME"/\~}"
        echo "# build defines: ${defs[*]:-none} (from $src)"
        "$bdir/offsets"
    } >"$bdir/out.txt"
    mv "$bdir/out.txt" "$out/$m.txt"
    echo "   -> out/$m.txt ($(grep -vc '^#' "$out/$m.txt") values)"
done

(( headers_only )) && exit 0

# ---- empirical cross-check ------------------------------------------------
for m in $versions; do
    py=""
    for cand in "$PYENV_ROOT"/versions/"$m".*/bin/python"$m" "$LOOPSPY_PYTHONS/bin/python$m"; do
        [[ -x "$cand" ]] && { py="$cand"; break; }
    done
    if [[ -z "$py" ]]; then echo "== $m: no interpreter, empirical check skipped"; continue; fi
    echo "== $m: empirical check with $py"
    if "$py" "$here/ctypes_check.py" "$out/$m.txt" >"$build/emp.txt" 2>"$build/emp.err"; then
        rc=0
    else
        rc=$?
    fi
    mv "$build/emp.txt" "$out/empirical-$m.txt"
    [[ -s "$build/emp.err" ]] && sed 's/^/   stderr: /' "$build/emp.err" | head -20
    echo "   -> out/empirical-$m.txt ($(grep -c '^FAIL' "$out/empirical-$m.txt" || true) FAIL, rc=$rc)"
done
