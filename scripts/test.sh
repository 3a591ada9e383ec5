#!/usr/bin/env bash
# Run loopspy's whole test suite against every Python interpreter present, and print the
# matrix of what ran, passed and was skipped.
#
#   scripts/test.sh [extra cargo nextest/test arguments]
#
# 1. scripts/test-pythons.sh provisions CPython 3.8-3.15 and uvloop (cached after the first
#    run; 3.8-3.13 must come from pyenv), scripts/framework-venvs.sh a venv per interpreter
#    with aiohttp, FastAPI, uvicorn and gunicorn (wheels cached), scripts/prom-parser.sh
#    Prometheus' own parser (prometheus_client) for the exporter's tests, scripts/perfetto-schema.sh
#    Perfetto's trace schema (PyPI's perfetto + protobuf) for the .pftrace tests. Outside CI a failure there
#    is reported and the tests run with what is present; under CI=true it is fatal.
# 2. cargo fmt --check and cargo clippy (-D warnings, all targets) must pass.
# 3. scripts/build-wheel.sh builds the shipped binary (static, musl) and the wheel carrying
#    it into target/artifacts; tests/dist.rs runs them (an empty root, a venv of another
#    Python). Outside CI a failed build is reported and those tests are skipped loudly; under
#    CI=true they fail.
# 4. cargo nextest (or cargo test when nextest is missing) runs unit, property and
#    integration tests. Integration tests start real Python targets that record their own
#    ground truth.
# 5. The matrix (test x Python version x loop flavour) is printed; skipped cells are loud.
set -uo pipefail
cd "$(dirname "$0")/.."

ci=false
case "${CI:-}" in true | 1) ci=true ;; esac

if ! scripts/test-pythons.sh --quiet; then
    if $ci; then
        echo "test.sh: provisioning interpreters failed (CI=true: fatal)" >&2
        exit 1
    fi
    echo "test.sh: WARNING: scripts/test-pythons.sh failed; testing with the interpreters present" >&2
fi
# Real frameworks (aiohttp, FastAPI, uvicorn, gunicorn) in a venv per interpreter.
if ! scripts/framework-venvs.sh; then
    if $ci; then
        echo "test.sh: provisioning the framework venvs failed (CI=true: fatal)" >&2
        exit 1
    fi
    echo "test.sh: WARNING: scripts/framework-venvs.sh failed; the framework tests will be skipped" >&2
fi
# Prometheus' own parser for the exporter's tests (tests/serve.rs).
if ! scripts/prom-parser.sh; then
    if $ci; then
        echo "test.sh: provisioning prometheus_client failed (CI=true: fatal)" >&2
        exit 1
    fi
    echo "test.sh: WARNING: scripts/prom-parser.sh failed; the serve tests will be skipped" >&2
fi
# Perfetto's own trace schema (PyPI's perfetto + protobuf) for the .pftrace tests (tests/perfetto.rs).
if ! scripts/perfetto-schema.sh; then
    if $ci; then
        echo "test.sh: provisioning Perfetto's schema failed (CI=true: fatal)" >&2
        exit 1
    fi
    echo "test.sh: WARNING: scripts/perfetto-schema.sh failed; the Perfetto tests will be skipped" >&2
fi

# The code's own checks: formatting (rustfmt.toml) and clippy on every target, benches
# included (they are built nowhere else), warnings as errors.
lint=0
if ! cargo fmt --check >/dev/null; then
    echo "test.sh: FAIL: cargo fmt --check (run cargo fmt)" >&2
    lint=1
fi
if ! cargo clippy --all-targets --quiet -- -D warnings; then
    echo "test.sh: FAIL: cargo clippy --all-targets -- -D warnings" >&2
    lint=1
fi

# The shipped forms (static binary, wheel), built once, before the tests that run them. A
# failure leaves no artifact behind, so tests/dist.rs fails under CI and skips loudly here.
dist_start=$SECONDS
dist=0
if scripts/build-wheel.sh --quiet >/dev/null; then
    echo "test.sh: static binary and wheel built in $((SECONDS - dist_start)) s (target/artifacts)" >&2
elif $ci; then
    echo "test.sh: FAIL: scripts/build-wheel.sh (CI=true: tests/dist.rs will fail)" >&2
    dist=1
else
    echo "test.sh: WARNING: scripts/build-wheel.sh failed; the static binary and the wheel will NOT be tested" >&2
fi

matrix=target/tmp/matrix
rm -rf "$matrix"
mkdir -p "$matrix"

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
status=$?
if { [ "$lint" != 0 ] || [ "$dist" != 0 ]; } && [ "$status" = 0 ]; then
    status=1
fi

echo
echo "== Test matrix (test x Python x loop) =="
python3 - "$matrix" <<'PY'
import os, sys
d = sys.argv[1]
cells = {}
for f in sorted(os.listdir(d)):
    if not f.endswith(".txt") or "--" not in f:
        continue
    test, version, variant = f[:-4].split("--")
    cells[(test.replace("_", "/", 1), version, variant)] = open(os.path.join(d, f)).read().strip()
versions = sorted({v for _, v, _ in cells}, key=lambda v: tuple(int(x) for x in v.split(".")))
rows = sorted({(t, var) for t, _, var in cells})
if not rows:
    print("(no integration results recorded)")
    sys.exit(0)
w = max(len("%s [%s]" % r) for r in rows)
print("%-*s  %s" % (w, "test [loop]", "  ".join("%-6s" % v for v in versions)))
short = {"pass": "pass", "unsupported (reported by name)": "unsup"}
skipped = []
details = []
for t, var in rows:
    line = []
    for v in versions:
        c = cells.get((t, v, var), "-")
        if c.startswith("skipped"):
            skipped.append("%s [%s] on %s: %s" % (t, var, v, c))
            c = "SKIP"
        elif c.startswith("pass ("):
            details.append("%s [%s] on %s: %s" % (t, var, v, c))
            c = "pass"
        elif c.startswith("n/a"):
            c = "n/a"
        line.append("%-6s" % short.get(c, c[:6]))
    print("%-*s  %s" % (w, "%s [%s]" % (t, var), "  ".join(line)))
graph = [c for (t, _, _), c in cells.items() if t.startswith("tasks/graph_") and not c.startswith(("n/a", "skipped"))]
if graph:
    print()
    print("Task graph of CPython's remote-inspection scenarios: %d of %d version x scenario cases pass"
          % (sum(c.startswith("pass") for c in graph), len(graph)))
if details:
    print()
    print("Measured by the passing tests:")
    for d in details:
        print("   " + d)
if skipped:
    print()
    print("!! %d cell(s) SKIPPED -- these were NOT tested:" % len(skipped))
    for s in skipped:
        print("!!   " + s)
PY
exit $status
