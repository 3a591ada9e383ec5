#!/usr/bin/env bash
# Provision the CPython interpreters that loopspy's tests attach to.
#
#   * CPython 3.8 .. 3.13 come from pyenv (they must already be installed).
#   * CPython 3.14 and 3.15 come from Debian sid. Their .debs (plus sid's
#     libc6 and every shared library they need, plus libpython3.X-dev for
#     the C headers) are fetched with a *private* apt configuration and
#     unpacked with `dpkg -x` into $CACHE/pythons/sid-root. The machine's
#     own apt configuration, sources and dpkg state are never touched.
#     The interpreter binaries are patched in place (PT_INTERP -> sid's
#     ld.so, DT_RPATH -> sid's lib dir) so they run without any
#     environment variables and /proc/PID/exe is the Python binary itself.
#   * uvloop is installed per interpreter with `pip install --target`
#     into $CACHE/uvloop/X.Y (never into pyenv's site-packages).
#   * A manifest is written to $CACHE/pythons.tsv:
#       X.Y <TAB> python binary <TAB> uvloop PYTHONPATH dir or - <TAB> uvloop version or -
#
# Cache root: ${LOOPSPY_CACHE:-$HOME/.cache/loopspy}. Every step is stamped;
# a second run with everything in place does no network access and prints
# one line. Use --force to redo every step (e.g. to pick up newer sid
# packages), --quiet to print nothing but errors.
set -euo pipefail

SCRIPT_REV=1 # bump to invalidate every stamp

usage() {
    cat <<'EOF'
usage: scripts/test-pythons.sh [--quiet] [--force]

Provision CPython 3.8-3.15 (+ uvloop) for loopspy's tests and write
${LOOPSPY_CACHE:-$HOME/.cache/loopspy}/pythons.tsv.

  -q, --quiet   print nothing but errors
  -f, --force   redo every step (re-fetch sid packages, reinstall uvloop)
EOF
}

QUIET=0
FORCE=0
for arg in "$@"; do
    case $arg in
    -q | --quiet) QUIET=1 ;;
    -f | --force) FORCE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

CACHE=${LOOPSPY_CACHE:-$HOME/.cache/loopspy}

PYENV_MINORS=(3.8 3.9 3.10 3.11 3.12 3.13)
SID_MINORS=(3.14 3.15)
SID_SUITE=sid
SID_MIRROR=http://deb.debian.org/debian
SYSTEM_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MULTIARCH=x86_64-linux-gnu
# Dependencies that are data/config only (or debconf plumbing) and are not
# needed to run the interpreter out of a private root: not followed.
PRUNE_RE='^(debconf|debconf-2\.0|cdebconf|tzdata|media-types|mime-support|netbase|ca-certificates)$'

CHANGED=0 # set when any step did work (=> print the full table)

log() { if [[ $QUIET == 0 ]]; then echo "test-pythons: $*" >&2; fi; }
warn() { echo "test-pythons: warning: $*" >&2; }
die() {
    echo "test-pythons: error: $*" >&2
    exit 1
}
# Run a command with its output appended to $LOG; on failure show the tail.
run_logged() {
    local what=$1
    shift
    echo "=== $(date -u +%FT%TZ) $what: $*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "--- last lines of $LOG ---" >&2
        tail -n 25 "$LOG" >&2
        die "$what failed (full log: $LOG)"
    fi
}

stamp_ok() { [[ $FORCE == 0 && -f $STAMPS/$1 && "$(<"$STAMPS/$1")" == "$2" ]]; }
stamp_set() {
    mkdir -p "$STAMPS"
    printf '%s' "$2" >"$STAMPS/$1.tmp"
    mv -f "$STAMPS/$1.tmp" "$STAMPS/$1"
}
stamp_clear() { rm -f "$STAMPS/$1"; }
stamp_get() { if [[ -f $STAMPS/$1 ]]; then cat "$STAMPS/$1"; fi; }

[[ $(uname -m) == x86_64 ]] || die "only x86_64 is supported (this is $(uname -m))"

mkdir -p "$CACHE"
# absolute and symlink-free: the patched binaries embed these paths, and
# /proc/PID/exe shows the resolved path
CACHE=$(cd "$CACHE" && pwd -P)
PY=$CACHE/pythons
SID=$PY/sid-root
APTDIR=$PY/apt
DEBS=$PY/debs
BIN=$PY/bin
UVROOT=$CACHE/uvloop
STAMPS=$CACHE/.stamps
LOG=$CACHE/test-pythons.log
MANIFEST=$CACHE/pythons.tsv
mkdir -p "$PY"
: >>"$LOG"

# One provisioning run at a time per cache.
exec 9>"$PY/.lock"
if ! flock -n 9; then
    log "another run holds $PY/.lock, waiting"
    flock 9
fi

# ---------------------------------------------------------------- host tools
HOST_APT_UPDATED=0
host_apt_install() { # pkg...
    [[ $EUID == 0 ]] || die "need to install $* but not root: run 'apt-get install $*' first"
    if [[ $HOST_APT_UPDATED == 0 ]]; then
        log "apt-get update (host)"
        run_logged "apt-get update" apt-get -q update
        HOST_APT_UPDATED=1
    fi
    log "apt-get install $* (host)"
    run_logged "apt-get install $*" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q install -y --no-install-recommends "$@"
}
need_tools() { # cmd:pkg...
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
    done
    if ((${#missing[@]})); then host_apt_install "${missing[@]}"; fi
}

# ------------------------------------------------------------- private apt
# Private configuration: passed through APT_CONFIG so that the host's
# /etc/apt/apt.conf, apt.conf.d, sources and preferences are never read
# (their hooks, e.g. docker-clean's Post-Invoke, must not run either).
# Only the freshness/proxy knobs of the host are carried over: this
# workplace's mirror is a snapshot whose Release is past Valid-Until, and
# the host config says so. Signature verification stays on.
write_apt_config() { # keyring
    local keyring=$1
    mkdir -p "$APTDIR"/etc/{sources.list.d,preferences.d,apt.conf.d,trusted.gpg.d} \
        "$APTDIR"/state/lists/partial "$APTDIR"/cache/archives/partial
    : >>"$APTDIR/state/status"
    rm -f "$APTDIR"/etc/trusted.gpg.d/*
    local signed_by="Signed-By: $keyring"
    if [[ $keyring =~ [[:space:]] ]]; then
        # Signed-By cannot hold a path with blanks: trust the keyring through
        # the private trusted.gpg.d instead (it only serves this one source)
        cp "$keyring" "$APTDIR/etc/trusted.gpg.d/debian-archive-keyring.gpg"
        signed_by=
    fi
    cat >"$APTDIR/etc/sources.list.d/$SID_SUITE.sources" <<EOF
Types: deb
URIs: $SID_MIRROR
Suites: $SID_SUITE
Components: main
Architectures: amd64
$signed_by
EOF
    {
        cat <<EOF
// generated by scripts/test-pythons.sh; private to loopspy's test cache
Dir::Etc "$APTDIR/etc/";
Dir::Etc::main "$APTDIR/etc/apt.conf.none";
Dir::Etc::parts "$APTDIR/etc/apt.conf.d/";
Dir::Etc::sourcelist "$APTDIR/etc/sources.list.none";
Dir::Etc::sourceparts "$APTDIR/etc/sources.list.d/";
Dir::Etc::preferences "$APTDIR/etc/preferences.none";
Dir::Etc::preferencesparts "$APTDIR/etc/preferences.d/";
Dir::Etc::trusted "$APTDIR/etc/trusted.gpg.none";
Dir::Etc::trustedparts "$APTDIR/etc/trusted.gpg.d/";
Dir::State "$APTDIR/state/";
Dir::State::status "$APTDIR/state/status";
Dir::Cache "$APTDIR/cache/";
Dir::Log "$APTDIR/log/";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
EOF
        # carry over the host's freshness and proxy settings
        env -u APT_CONFIG apt-config dump 2>/dev/null |
            grep -E '^Acquire::(Check-Valid-Until|Check-Date|Retries|https?::Proxy)( |::)' || true
    } >"$APTDIR/apt.conf"
}
papt() { APT_CONFIG=$APTDIR/apt.conf "$@"; }

sid_update() {
    local out
    write_apt_config "$SYSTEM_KEYRING"
    log "apt-get update ($SID_SUITE, private config in $APTDIR)"
    echo "=== $(date -u +%FT%TZ) private apt-get update" >>"$LOG"
    if out=$(papt apt-get -q --error-on=any update 2>&1); then
        echo "$out" >>"$LOG"
        return
    fi
    echo "$out" >>"$LOG"
    if ! grep -qE 'NO_PUBKEY|EXPKEYSIG|not signed|signatures (couldn.t|were invalid)|KEYEXPIRED' <<<"$out"; then
        echo "$out" | tail -n 15 >&2
        die "private apt-get update of $SID_SUITE failed (log: $LOG)"
    fi
    # The host's keyring cannot verify sid. Get the newest keyring package
    # the host's (verified) apt knows, unpack it privately, and retry.
    warn "$SYSTEM_KEYRING cannot verify $SID_SUITE; trying the host suite's newest debian-archive-keyring"
    [[ $EUID == 0 ]] || die "cannot verify $SID_SUITE with $SYSTEM_KEYRING (need root to fetch a newer keyring)"
    if [[ $HOST_APT_UPDATED == 0 ]]; then
        run_logged "apt-get update" apt-get -q update
        HOST_APT_UPDATED=1
    fi
    rm -rf "$PY/keyring"
    mkdir -p "$PY/keyring/deb"
    (cd "$PY/keyring/deb" && run_logged "apt-get download debian-archive-keyring" apt-get -q download debian-archive-keyring)
    dpkg -x "$PY"/keyring/deb/debian-archive-keyring_*.deb "$PY/keyring/root"
    local kr=$PY/keyring/root/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -f $kr ]] || die "debian-archive-keyring package has no $kr"
    write_apt_config "$kr"
    if ! out=$(papt apt-get -q --error-on=any update 2>&1); then
        echo "$out" >>"$LOG"
        echo "$out" | tail -n 15 >&2
        die "cannot verify the $SID_SUITE archive signature with the system keyring nor with the host's newest debian-archive-keyring; refusing to continue without verification"
    fi
    echo "$out" >>"$LOG"
}

# Depends/PreDepends closure of the given packages in the private sid index,
# first alternative of every or-group (a virtual one resolves to its first
# provider), not following $PRUNE_RE. Prints "pkg<TAB>version" sorted.
resolve_closure() {
    local -A seen=()
    local queue=() next p dep
    for p in "$@"; do
        seen[$p]=1
        queue+=("$p")
    done
    while ((${#queue[@]})); do
        next=()
        local deps
        deps=$(papt apt-cache depends --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "${queue[@]}" | awk -v prune="$PRUNE_RE" '
            function flush(   i, pick, skip) {
                if (n == 0) return
                pick = ""; skip = 0
                for (i = 1; i <= n; i++) if (alt[i] ~ prune) skip = 1
                if (!skip) {
                    for (i = 1; i <= n && pick == ""; i++) if (alt[i] !~ /^</) pick = alt[i]
                    for (i = 1; i <= n && pick == ""; i++) if (prov[i] != "") pick = prov[i]
                    if (pick == "") { print "unresolvable dependency of " pkg ": " alt[1] > "/dev/stderr"; bad = 1 }
                    else print pick
                }
                n = 0; complete = 0; delete alt; delete prov
            }
            /^[^ ]/ { flush(); pkg = $1; indep = 0; next }
            /^ [ |][A-Za-z]+: / {
                if (complete) flush()
                isalt = (substr($0, 2, 1) == "|")
                rel = $1; sub(/^\|/, "", rel)
                if (rel != "Depends:" && rel != "PreDepends:") { indep = 0; next }
                indep = 1
                alt[++n] = $2; prov[n] = ""; complete = !isalt
                next
            }
            /^    [^ ]/ { if (indep && n > 0 && prov[n] == "") prov[n] = $1; next }
            END { flush(); exit bad }
            ') || return 1
        while read -r dep; do
            [[ -n $dep ]] || continue
            [[ $dep =~ $PRUNE_RE ]] && continue
            if [[ -z ${seen[$dep]:-} ]]; then
                seen[$dep]=1
                next+=("$dep")
            fi
        done <<<"$deps"
        queue=("${next[@]}")
    done
    papt apt-cache policy "${!seen[@]}" |
        awk '/^[^ ]/ { sub(/:$/, "", $1); p = $1 } /^  Candidate:/ { print p "\t" $2 }' | sort
}

sid_root_packages() {
    local v
    echo libc6
    for v in "${SID_MINORS[@]}"; do
        echo "python$v" "python$v-minimal" "libpython$v-minimal" "libpython$v-stdlib" \
            "libpython$v" "libpython$v-dev"
    done
}

step_fetch_debs() {
    local key roots
    roots=$(sid_root_packages | tr ' ' '\n' | sort -u | tr '\n' ' ')
    key="rev=$SCRIPT_REV suite=$SID_SUITE roots=$roots"
    if stamp_ok debs "$key" && [[ -s $PY/packages.tsv && -d $DEBS ]] &&
        [[ $(find "$DEBS" -maxdepth 1 -name '*.deb' | wc -l) == "$(wc -l <"$PY/packages.tsv")" ]]; then
        return
    fi
    CHANGED=1
    stamp_clear debs
    need_tools gpgv:gpgv dpkg:dpkg apt-get:apt
    sid_update
    local p v
    # shellcheck disable=SC2086
    while IFS=$'\t' read -r p v; do
        [[ -n $v && $v != "(none)" ]] || die "package $p not found in $SID_SUITE"
    done < <(papt apt-cache policy $roots |
        awk '/^[^ ]/ { sub(/:$/, "", $1); p = $1 } /^  Candidate:/ { print p "\t" $2 }')
    log "resolving dependencies"
    local closure
    # shellcheck disable=SC2086
    closure=$(resolve_closure $roots) || die "dependency resolution failed"
    while IFS=$'\t' read -r p v; do
        [[ -n $v && $v != "(none)" ]] || die "no candidate version for $p in $SID_SUITE"
    done <<<"$closure"
    local n
    n=$(wc -l <<<"$closure")
    log "downloading $n packages from $SID_SUITE"
    rm -rf "$DEBS.tmp"
    mkdir -p "$DEBS.tmp"
    local specs=()
    while IFS=$'\t' read -r p v; do specs+=("$p=$v"); done <<<"$closure"
    (cd "$DEBS.tmp" && run_logged "apt-get download" papt apt-get -q download "${specs[@]}")
    local got
    got=$(find "$DEBS.tmp" -maxdepth 1 -name '*.deb' | wc -l)
    [[ $got == "$n" ]] || die "expected $n .debs, got $got in $DEBS.tmp"
    rm -rf "$DEBS"
    mv "$DEBS.tmp" "$DEBS"
    printf '%s\n' "$closure" >"$PY/packages.tsv"
    # the sid index (~160 MB with apt's binary caches) is only needed here
    rm -rf "$APTDIR/state/lists" "$APTDIR/cache"
    stamp_set debs "$key"
}

# ------------------------------------------------------------ sid-root build
sid_libdirs() { # existing real library directories inside sid-root
    local d
    for d in "$SID/usr/lib/$MULTIARCH" "$SID/lib/$MULTIARCH"; do
        if [[ -d $d && ! -L $d ]]; then echo "$d"; fi
    done
}
find_sid_ldso() {
    local c
    for c in "$SID/usr/lib/$MULTIARCH/ld-linux-x86-64.so.2" "$SID/lib/$MULTIARCH/ld-linux-x86-64.so.2" \
        "$SID/usr/lib64/ld-linux-x86-64.so.2" "$SID/lib64/ld-linux-x86-64.so.2"; do
        if [[ -f $c && ! -L $c ]]; then
            echo "$c"
            return
        fi
    done
    # a relative symlink that stays inside sid-root is fine too
    for c in "$SID/usr/lib64/ld-linux-x86-64.so.2" "$SID/lib64/ld-linux-x86-64.so.2" \
        "$SID/usr/lib/$MULTIARCH/ld-linux-x86-64.so.2"; do
        if [[ -L $c ]]; then
            local t
            t=$(readlink -f "$c")
            if [[ $t == "$SID"/* && -f $t ]]; then
                echo "$t"
                return
            fi
        fi
    done
    return 1
}

# Every NEEDED soname of the interpreters, their extension modules and
# (transitively) the libraries those pull in must be a file inside sid-root.
check_needed_closure() {
    local -A visited=()
    local todo=() f so d found libdirs
    mapfile -t libdirs < <(sid_libdirs)
    local v
    for v in "${SID_MINORS[@]}"; do
        todo+=("$SID/usr/bin/python$v")
        while IFS= read -r f; do todo+=("$f"); done < <(find "$SID/usr/lib/python$v/lib-dynload" -name '*.so')
    done
    local missing=()
    while ((${#todo[@]})); do
        f=${todo[-1]}
        unset 'todo[-1]'
        [[ -z ${visited[$f]:-} ]] || continue
        visited[$f]=1
        while IFS= read -r so; do
            [[ -n $so ]] || continue
            found=
            for d in "${libdirs[@]}"; do
                if [[ -e $d/$so ]]; then
                    found=$(readlink -f "$d/$so")
                    break
                fi
            done
            if [[ -z $found || $found != "$SID"/* ]]; then
                missing+=("$so (needed by ${f#"$SID"/})")
            else
                todo+=("$found")
            fi
        done < <(patchelf --print-needed "$f")
    done
    if ((${#missing[@]})); then
        printf '  %s\n' "${missing[@]}" | sort -u >&2
        die "shared libraries missing from $SID (add their packages to the closure)"
    fi
}

sid_python_check() { # X.Y: imports every lib-dynload module, all libs from sid-root
    local py=$SID/usr/bin/python$1
    env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$py" - "$SID" <<'EOF'
import sys, os, glob, importlib
sid = sys.argv[1]
exp_prefix = os.path.join(sid, "usr")
assert sys.prefix == exp_prefix, f"sys.prefix={sys.prefix!r}, expected {exp_prefix!r}"
dyn = os.path.join(sid, "usr", "lib", "python%d.%d" % sys.version_info[:2], "lib-dynload")
names = sorted({os.path.basename(p).split(".")[0] for p in glob.glob(os.path.join(dyn, "*.so"))})
failed = []
for n in names:
    try:
        importlib.import_module(n)
    except Exception as e:  # noqa
        failed.append(f"{n}: {e!r}")
import ssl, ctypes, json, asyncio, sqlite3, _asyncio, lzma, bz2, zlib, decimal, uuid, hashlib
hashlib.sha256(b"x").hexdigest(); ssl.create_default_context(); sqlite3.connect(":memory:").execute("select 1")
asyncio.run(asyncio.sleep(0))
libs = set()
with open("/proc/self/maps") as fh:
    for line in fh:
        parts = line.split()
        if len(parts) >= 6 and ".so" in parts[5]:
            libs.add(parts[5])
foreign = sorted(p for p in libs if not p.startswith(sid + "/"))
if failed:
    sys.exit("extension modules failed to import:\n  " + "\n  ".join(failed))
if foreign:
    sys.exit("shared objects mapped from outside sid-root:\n  " + "\n  ".join(foreign))
print(f"{sys.version.split()[0]} ok: {len(names)} extension modules, {len(libs)} shared objects, all from sid-root")
EOF
}

step_build_sid_root() {
    local pkgs_sum key
    pkgs_sum=$(sha256sum "$PY/packages.tsv" | cut -c1-16)
    key="rev=$SCRIPT_REV pkgs=$pkgs_sum root=$SID"
    if stamp_ok sid-root "$key"; then
        local v ok=1
        for v in "${SID_MINORS[@]}"; do
            [[ -x $SID/usr/bin/python$v && -L $BIN/python$v ]] || ok=0
            [[ $ok == 1 ]] && { "$SID/usr/bin/python$v" -S -c '' 2>/dev/null || ok=0; }
        done
        [[ $ok == 1 ]] && return
        log "sid-root stamp present but interpreters broken; rebuilding"
    fi
    CHANGED=1
    stamp_clear sid-root
    need_tools patchelf:patchelf dpkg:dpkg
    log "unpacking $(find "$DEBS" -name '*.deb' | wc -l) packages into $SID"
    rm -rf "$SID"
    mkdir -p "$SID"
    local deb
    for deb in "$DEBS"/*.deb; do
        dpkg -x "$deb" "$SID" || die "dpkg -x $deb failed"
    done
    local ldso rpath
    ldso=$(find_sid_ldso) || die "sid's ld-linux-x86-64.so.2 not found in $SID"
    rpath=$(sid_libdirs | paste -sd:)
    [[ -n $rpath ]] || die "no library directory in $SID"
    local v py
    for v in "${SID_MINORS[@]}"; do
        py=$SID/usr/bin/python$v
        [[ -f $py && ! -L $py ]] || die "$py missing or not a regular file"
        # DT_RPATH (not RUNPATH): the executable's RPATH is also searched for
        # the NEEDED entries of dlopen()ed extension modules and of libraries
        # without their own RUNPATH, so lib-dynload needs no patching.
        patchelf --set-interpreter "$ldso" --force-rpath --set-rpath "$rpath" "$py" ||
            die "patchelf failed on $py"
    done
    check_needed_closure
    mkdir -p "$BIN"
    for v in "${SID_MINORS[@]}"; do
        py=$SID/usr/bin/python$v
        local out
        out=$(sid_python_check "$v" 2>&1) || {
            echo "$out" >&2
            die "python$v from $SID does not work"
        }
        log "python$v: $out"
        ln -sfn "$py" "$BIN/python$v"
        # /proc/PID/exe of a running interpreter must be the patched binary
        "$BIN/python$v" -c 'import time; time.sleep(10)' &
        local pid=$! exe
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
            [[ $exe == "$py" ]] && break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        [[ $exe == "$py" ]] || die "/proc/$pid/exe of python$v is '$exe', expected $py"
    done
    stamp_set sid-root "$key"
}

# ------------------------------------------------------------------- uvloop
pyenv_root() {
    if command -v pyenv >/dev/null 2>&1; then
        pyenv root
    else
        echo "${PYENV_ROOT:-$HOME/.pyenv}"
    fi
}

declare -A PYBIN=() # X.Y -> interpreter
discover_pythons() {
    local root v d best
    root=$(pyenv_root)
    for v in "${PYENV_MINORS[@]}"; do
        best=
        for d in "$root/versions/$v".*; do
            [[ -d $d && $(basename "$d") =~ ^${v//./\\.}\.[0-9]+$ && -x $d/bin/python$v ]] || continue
            best=$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n1)
        done
        if [[ -n $best ]]; then PYBIN[$v]=$best/bin/python$v; fi
    done
    for v in "${SID_MINORS[@]}"; do
        PYBIN[$v]=$SID/usr/bin/python$v
    done
}

# A pip able to download wheels for the sid interpreters (which have no pip).
host_pip_python() {
    local v i
    for ((i = ${#PYENV_MINORS[@]} - 1; i >= 0; i--)); do
        v=${PYENV_MINORS[i]}
        if [[ -n ${PYBIN[$v]:-} ]] && "${PYBIN[$v]}" -m pip --version >/dev/null 2>&1; then
            echo "${PYBIN[$v]}"
            return
        fi
    done
    if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
        command -v python3
        return
    fi
    return 1
}

uvloop_verify() { # py dir -> prints version
    PYTHONPATH=$2 "$1" -c '
import asyncio, uvloop
if hasattr(uvloop, "run"):
    uvloop.run(asyncio.sleep(0))
else:
    loop = uvloop.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
print(uvloop.__version__)'
}

step_uvloop() { # X.Y
    local v=$1 py=${PYBIN[$1]} dir=$UVROOT/$1 key st
    key="rev=$SCRIPT_REV py=$py"
    st=$(stamp_get "uvloop-$v")
    if [[ $FORCE == 0 && ${st%%$'\t'*} == "$key" ]]; then
        local have=${st#*$'\t'}
        if [[ $have == - || -d $dir/uvloop ]]; then return; fi
    fi
    CHANGED=1
    stamp_clear "uvloop-$v"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_REQUIRE_VIRTUALENV=false
    local pipcmd=() own_pip=1 s
    for s in "${SID_MINORS[@]}"; do [[ $s == "$v" ]] && own_pip=0; done
    if [[ $own_pip == 1 ]] && ! "$py" -m pip --version >/dev/null 2>&1; then own_pip=0; fi
    if [[ $own_pip == 0 ]]; then
        # no pip in the target interpreter (sid's have none): a host pip
        # fetches wheels for the target's version, ABI and glibc
        local hp glibc minor i pyver plats=()
        hp=$(host_pip_python) || die "no pip available to fetch uvloop for $v"
        # the target interpreter's glibc decides which manylinux tags it accepts
        glibc=$("$py" -c 'import os; print(os.confstr("CS_GNU_LIBC_VERSION").split()[1])')
        # full X.Y.Z: "3.8" would mean 3.8.0 to pip's Requires-Python check
        pyver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
        minor=${glibc#2.}
        minor=${minor%%.*}
        for ((i = minor; i >= 5; i--)); do plats+=(--platform "manylinux_2_${i}_x86_64"); done
        plats+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
        pipcmd=("$hp" -m pip install --no-compile --python-version "$pyver" --implementation cp
            --abi "cp${v/./}" --abi abi3 --abi none "${plats[@]}")
    else
        pipcmd=("$py" -m pip install)
    fi
    rm -rf "$dir.tmp"
    local out rc=0
    log "uvloop for $v: pip install --target $dir"
    out=$("${pipcmd[@]}" --target "$dir.tmp" --only-binary=:all: --no-deps uvloop 2>&1) || rc=$?
    echo "=== $(date -u +%FT%TZ) uvloop $v: ${pipcmd[*]}" >>"$LOG"
    echo "$out" >>"$LOG"
    if [[ $rc != 0 ]]; then
        rm -rf "$dir.tmp"
        # pip says the same when PyPI is unreachable: only a clean answer
        # from the index counts as "no wheel for this version"
        if grep -qE 'No matching distribution found|Could not find a version that satisfies' <<<"$out" &&
            ! grep -qiE 'Retrying|NewConnectionError|ConnectTimeout|ReadTimeout|Max retries|Could not fetch URL|name resolution|SSLError|ProxyError|ConnectionError' <<<"$out"; then
            log "uvloop for $v: no wheel on PyPI (recorded as '-')"
            rm -rf "$dir"
            stamp_set "uvloop-$v" "$key"$'\t'-
            return
        fi
        echo "$out" | tail -n 15 >&2
        die "pip install uvloop for $v failed (log: $LOG)"
    fi
    local ver
    ver=$(uvloop_verify "$py" "$dir.tmp" 2>&1) || {
        echo "$ver" >&2
        die "uvloop for $v installed but does not work"
    }
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    # the check must still pass at the final location
    ver=$(uvloop_verify "$py" "$dir" 2>&1) || {
        echo "$ver" >&2
        die "uvloop for $v does not work from $dir"
    }
    log "uvloop for $v: $ver"
    stamp_set "uvloop-$v" "$key"$'\t'"$ver"
}

# ------------------------------------------------------------------- main
step_fetch_debs
step_build_sid_root
discover_pythons

ALL_MINORS=("${PYENV_MINORS[@]}" "${SID_MINORS[@]}")
MISSING=()
for v in "${ALL_MINORS[@]}"; do
    if [[ -z ${PYBIN[$v]:-} ]]; then
        MISSING+=("$v")
        continue
    fi
    step_uvloop "$v"
done

tmp=$MANIFEST.tmp
: >"$tmp"
for v in "${ALL_MINORS[@]}"; do
    [[ -n ${PYBIN[$v]:-} ]] || continue
    st=$(stamp_get "uvloop-$v")
    uv=${st#*$'\t'}
    [[ -n $uv ]] || uv=-
    if [[ $uv == - ]]; then dir=-; else dir=$UVROOT/$v; fi
    printf '%s\t%s\t%s\t%s\n' "$v" "${PYBIN[$v]}" "$dir" "$uv" >>"$tmp"
done
if cmp -s "$tmp" "$MANIFEST"; then rm -f "$tmp"; else mv -f "$tmp" "$MANIFEST"; CHANGED=1; fi

if ((${#MISSING[@]})); then
    warn "not installed in pyenv ($(pyenv_root)): ${MISSING[*]}"
fi
if [[ $QUIET == 1 ]]; then exit 0; fi
if [[ $CHANGED == 0 ]]; then
    echo "test-pythons: $(wc -l <"$MANIFEST") interpreters ready ($MANIFEST)"
    exit 0
fi
echo "test-pythons: manifest $MANIFEST"
printf '  %-7s %-8s %s\n' VERSION UVLOOP PYTHON
while IFS=$'\t' read -r v p _ uv; do printf '  %-7s %-8s %s\n' "$v" "$uv" "$p"; done <"$MANIFEST"
