#!/usr/bin/env bash
# Build the wheel that makes `pip install loopspy` work the way `pip install py-spy` does:
# pip puts the static loopspy binary (scripts/build-static.sh) on the PATH of whatever
# environment it installs into, whatever that environment's Python version.
#
#   scripts/build-wheel.sh [--quiet] [--binary PATH]
#
# Writes target/artifacts/loopspy-VERSION-py3-none-<platform>.whl (under $CARGO_TARGET_DIR
# when set) and prints its path. --binary takes an already built static binary instead of
# running scripts/build-static.sh.
#
# A wheel is a zip: the binary as loopspy-VERSION.data/scripts/loopspy (pip installs the
# "scripts" data directory into the environment's bin/, keeping the executable bit), and
# loopspy-VERSION.dist-info/ with METADATA, WHEEL, LICENSE and RECORD (each file's sha256
# and size). It is written here with Python's standard library only: no maturin, no network,
# and the one static build is reused rather than a second one made.
#
# Tags: py3-none (no Python code, no ABI: any Python 3 and its pip accept it) and, since the
# binary is static (no glibc or musl dependency at all), the lowest platform tags pip knows
# on each libc: manylinux_2_5/manylinux1 (glibc) and musllinux_1_1 (Alpine). The wheel is
# reproducible: fixed file order and timestamps (SOURCE_DATE_EPOCH when set).
set -euo pipefail
cd "$(dirname "$0")/.."

QUIET=0
BINARY=
while [ $# -gt 0 ]; do
    case $1 in
    -q | --quiet) QUIET=1 ;;
    --binary) BINARY=${2:?--binary needs a path}; shift ;;
    *) echo "usage: scripts/build-wheel.sh [--quiet] [--binary PATH]" >&2; exit 2 ;;
    esac
    shift
done

target_dir=${CARGO_TARGET_DIR:-target}
artifacts=$target_dir/artifacts
mkdir -p "$artifacts"
# A failed build must not leave an older wheel behind for the tests to find.
rm -f "$artifacts"/loopspy-*.whl

if [ -z "$BINARY" ]; then
    quiet=()
    [ "$QUIET" = 1 ] && quiet=(--quiet)
    BINARY=$(scripts/build-static.sh "${quiet[@]}")
fi
[ -x "$BINARY" ] || { echo "build-wheel: $BINARY is not an executable" >&2; exit 1; }

# The version is the one the binary reports: what is shipped is what is labelled.
version=$("$BINARY" --version | awk '{print $2}')
case $version in
[0-9]*.[0-9]*) ;;
*) echo "build-wheel: '$BINARY --version' gave no version" >&2; exit 1 ;;
esac

python3 - "$BINARY" "$version" "$artifacts" "$QUIET" <<'PY'
import base64, hashlib, os, re, sys, zipfile

binary, version, out_dir, quiet = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
name = "loopspy"
platforms = ["manylinux_2_5_x86_64", "manylinux1_x86_64", "musllinux_1_1_x86_64"]
tags = ["py3-none-" + p for p in platforms]
wheel_name = "%s-%s-py3-none-%s.whl" % (name, version, ".".join(platforms))
dist_info = "%s-%s.dist-info" % (name, version)
data = "%s-%s.data" % (name, version)

cargo = open("Cargo.toml", encoding="utf-8").read()
package = cargo.split("[package]", 1)[1].split("\n[", 1)[0]
def field(key):
    m = re.search(r'^%s\s*=\s*"(.*)"\s*$' % key, package, re.M)
    return m.group(1) if m else None
keywords = re.search(r'^keywords\s*=\s*\[(.*)\]', package, re.M)
keywords = ",".join(k.strip().strip('"') for k in keywords.group(1).split(",")) if keywords else ""
assert field("version") == version, "Cargo.toml says %s, the binary %s" % (field("version"), version)

readme = open("README.md", encoding="utf-8").read()
metadata = "\n".join(
    [
        "Metadata-Version: 2.1",
        "Name: " + name,
        "Version: " + version,
        "Summary: " + (field("description") or ""),
        "License: " + (field("license") or ""),
        "Keywords: " + keywords,
        "Classifier: Environment :: Console",
        "Classifier: Operating System :: POSIX :: Linux",
        "Classifier: Programming Language :: Rust",
        "Classifier: Topic :: Software Development :: Debuggers",
        "Description-Content-Type: text/markdown",
    ]
) + "\n\n" + readme
wheel = "Wheel-Version: 1.0\nGenerator: loopspy scripts/build-wheel.sh\nRoot-Is-Purelib: false\n" + "".join(
    "Tag: %s\n" % t for t in tags
)

files = [
    ("%s/scripts/%s" % (data, name), open(binary, "rb").read(), 0o755),
    ("%s/METADATA" % dist_info, metadata.encode(), 0o644),
    ("%s/WHEEL" % dist_info, wheel.encode(), 0o644),
    ("%s/LICENSE" % dist_info, open("LICENSE", "rb").read(), 0o644),
]
def digest(b):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
record = "".join("%s,%s,%d\n" % (path, digest(b), len(b)) for path, b, _ in files) + "%s/RECORD,,\n" % dist_info
files.append(("%s/RECORD" % dist_info, record.encode(), 0o644))

import time
epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)  # zip starts at 1980
stamp = time.gmtime(epoch)[:6]
path = os.path.join(out_dir, wheel_name)
tmp = path + ".tmp"
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for arc, b, mode in files:
        info = zipfile.ZipInfo(arc, date_time=stamp)
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3  # Unix: the mode bits above are meaningful
        z.writestr(info, b, compresslevel=9)
os.replace(tmp, path)
if not quiet:
    print("build-wheel: %d kB wheel: %s" % (os.path.getsize(path) // 1024, path), file=sys.stderr)
print(path)
PY
