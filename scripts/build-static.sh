#!/usr/bin/env bash
# Build the loopspy binary that ships: one static x86_64 Linux executable (musl, no shared
# library, no loader), which runs on any x86_64 Linux, in any container image, even one with
# nothing in it but this file and /proc.
#
#   scripts/build-static.sh [--quiet]
#
# Writes target/artifacts/loopspy (under $CARGO_TARGET_DIR when set) and prints its path.
# Cargo profile `dist` (Cargo.toml: release code, no debug info); target
# x86_64-unknown-linux-musl, added with rustup when missing. No C compiler for musl is
# needed: no dependency builds C code (py-spy is used without its unwinding features, so no
# libunwind), and Rust's musl target brings its own C library and start files.
#
# Cache: cargo builds in ${LOOPSPY_CACHE:-~/.cache/loopspy}/cargo-dist (or
# $LOOPSPY_DIST_TARGET_DIR), shared by every checkout, so that a fresh clone (CI) recompiles
# only loopspy itself (about 1 CPU-minute) and not its dependencies (about 5 more); a run
# with nothing changed takes a second. A lock keeps two checkouts from swapping binaries
# between the build and the copy. The result is checked: no PT_INTERP, no DT_NEEDED, and
# `ldd` must call it static.
set -euo pipefail
cd "$(dirname "$0")/.."

TRIPLE=x86_64-unknown-linux-musl
QUIET=0
for a in "$@"; do
    case $a in
    -q | --quiet) QUIET=1 ;;
    *) echo "usage: scripts/build-static.sh [--quiet]" >&2; exit 2 ;;
    esac
done
say() { [ "$QUIET" = 1 ] || echo "build-static: $*" >&2; }
die() { echo "build-static: $*" >&2; exit 1; }

if [ "$(uname -m)" != x86_64 ]; then
    die "only x86_64 is built (this machine is $(uname -m))"
fi
rustc_sysroot=$(rustc --print sysroot)
if [ ! -d "$rustc_sysroot/lib/rustlib/$TRIPLE" ]; then
    command -v rustup >/dev/null || die "the Rust target $TRIPLE is missing and there is no rustup to add it"
    say "adding the Rust target $TRIPLE"
    rustup target add "$TRIPLE" >&2 || die "rustup target add $TRIPLE failed"
fi

artifacts=${CARGO_TARGET_DIR:-target}/artifacts
build_dir=${LOOPSPY_DIST_TARGET_DIR:-${LOOPSPY_CACHE:-$HOME/.cache/loopspy}/cargo-dist}
out=$build_dir/$TRIPLE/dist/loopspy
# A failed build must not leave an older binary behind for the tests to find.
rm -f "$artifacts/loopspy"
mkdir -p "$artifacts" "$build_dir"

start=$SECONDS
cargo_quiet=()
[ "$QUIET" = 1 ] && cargo_quiet=(--quiet)
exec 9>"$build_dir/.build-static.lock"
flock 9
CARGO_TARGET_DIR=$build_dir cargo build "${cargo_quiet[@]}" --profile dist --target "$TRIPLE" --bin loopspy ||
    die "cargo build --profile dist --target $TRIPLE failed"
cp "$out" "$artifacts/loopspy.tmp"
flock -u 9
say "built in $((SECONDS - start)) s (cargo target dir $build_dir)"
out=$artifacts/loopspy.tmp

# Static means: no program interpreter and no needed library (a static-pie still has a
# dynamic section, for its own relocations).
headers=$(LC_ALL=C readelf -lW "$out") || die "readelf failed on $out"
if grep -q 'Requesting program interpreter' <<<"$headers"; then
    die "$out has a program interpreter: it is not static"
fi
if LC_ALL=C readelf -dW "$out" 2>/dev/null | grep -q '(NEEDED)'; then
    die "$out needs shared libraries: $(LC_ALL=C readelf -dW "$out" | grep '(NEEDED)' | tr -s ' ')"
fi
if command -v ldd >/dev/null; then
    ldd_says=$(LC_ALL=C ldd "$out" 2>&1 || true)
    case $ldd_says in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) die "ldd does not call $out static: $ldd_says" ;;
    esac
fi

mv "$out" "$artifacts/loopspy"
say "$(du -h "$artifacts/loopspy" | cut -f1) static binary: $artifacts/loopspy"
echo "$artifacts/loopspy"
