#!/usr/bin/env bash
# Build one venv per interpreter listed in $CACHE/pythons.tsv (written by
# scripts/test-pythons.sh) with the web frameworks loopspy's tests attach to:
# aiohttp, fastapi (+starlette, pydantic v2), uvicorn (plain), uvloop,
# httptools, gunicorn, uvicorn-worker.
#
#   * every version is pinned per interpreter (lock_for below);
#   * wheels are kept in $CACHE/wheels (a wheelhouse shared by all
#     interpreters); a run whose wheels are all there uses no network
#     (pip install --no-index --find-links); only a miss runs `pip download`;
#   * binary wheels only (--only-binary=:all:): nothing is compiled;
#   * venvs: `python -m venv --without-pip`, then pip is installed from its
#     own wheel (`python pip.whl/pip install pip`): works the same for
#     pyenv's builds and for Debian sid's 3.14/3.15 (which have no ensurepip);
#   * one stamp per interpreter ($CACHE/.stamps/fw-venv-X.Y); a second run
#     with everything in place does nothing and prints one line;
#   * manifest $CACHE/venvs/venvs.tsv: X.Y <TAB> venv python <TAB> versions.
#
# usage: scripts/framework-venvs.sh [--force] [-jN] [X.Y ...]   (N venvs built at once, default nproc)
set -euo pipefail

FW_REV=1 # bump to rebuild every venv
CACHE=${LOOPSPY_CACHE:-$HOME/.cache/loopspy}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
MANIFEST=$CACHE/pythons.tsv
WHEELS=$CACHE/wheels
VENVS=$CACHE/venvs
STAMPS=$CACHE/.stamps
LOGDIR=$CACHE/logs
JOBS=$(nproc 2>/dev/null || echo 2)

FORCE=0
ONLY=()
for a in "$@"; do
    case $a in
    -f | --force) FORCE=1 ;;
    -j[0-9]*) JOBS=${a#-j} ;;
    3.*) ONLY+=("$a") ;;
    *) echo "usage: scripts/framework-venvs.sh [--force] [-jN] [X.Y ...]" >&2; exit 2 ;;
    esac
done

die() { echo "framework-venvs: error: $*" >&2; exit 1; }
log() { echo "framework-venvs: $*" >&2; }
LOG=/dev/null # set per interpreter in build_venv
run_logged() { # what cmd...
    local what=$1; shift
    echo "=== $(date -u +%FT%TZ) $what: $*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 25 "$LOG" >&2
        die "$what failed (full log: $LOG)"
    fi
}

# pip: no version check, no prompts, no HTTP cache (the wheelhouse is the
# cache; this workplace's PyPI mirror sends no caching headers, so pip's
# HTTP cache stores nothing anyway), the wheelhouse as the only find-links
# (overrides a PIP_FIND_LINKS from the environment).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_REQUIRE_VIRTUALENV=false
export PIP_FIND_LINKS=$WHEELS
PIPQ=(--no-cache-dir --only-binary=:all: --progress-bar off)

# Pinned closure per interpreter: newest versions that install as binary
# wheels (resolved 2026-12-01 against PyPI). pip is the version bootstrapped
# into the venv.
lock_for() { # X.Y
    case $1 in
    3.8) cat <<'EOF'
pip==25.0.1
aiohappyeyeballs==2.4.4
aiohttp==3.10.11
aiosignal==1.3.1
annotated-doc==0.0.4
annotated-types==0.7.0
anyio==4.5.2
async-timeout==5.0.1
attrs==25.3.0
click==8.1.8
exceptiongroup==1.3.2
fastapi==0.124.4
frozenlist==1.5.0
gunicorn==23.0.0
h11==0.16.0
httptools==0.6.4
idna==3.15
multidict==6.1.0
packaging==26.2
propcache==0.2.0
pydantic==2.10.6
pydantic-core==2.27.2
sniffio==1.3.1
starlette==0.44.0
typing-extensions==4.13.2
uvicorn==0.33.0
uvicorn-worker==0.2.0
uvloop==0.23.0
yarl==1.15.2
EOF
    ;;
    3.9) cat <<'EOF'
pip==26.0.1
aiohappyeyeballs==2.6.1
aiohttp==3.13.5
aiosignal==1.4.0
annotated-doc==0.0.5
annotated-types==0.7.0
anyio==4.12.1
async-timeout==5.0.1
attrs==26.1.0
click==8.1.8
exceptiongroup==1.3.2
fastapi==0.128.8
frozenlist==1.8.0
gunicorn==23.0.0
h11==0.16.0
httptools==0.9.0
idna==3.20
multidict==6.7.1
packaging==26.3
propcache==0.4.1
pydantic==2.13.5
pydantic-core==2.46.5
starlette==0.49.3
typing-extensions==4.16.0
typing-inspection==0.4.2
uvicorn==0.39.0
uvicorn-worker==0.4.0
uvloop==0.23.0
yarl==1.22.0
EOF
    ;;
    3.10) cat <<'EOF'
pip==26.3
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiosignal==1.4.0
annotated-doc==0.0.6
annotated-types==0.8.0
anyio==4.16.0
async-timeout==5.0.1
attrs==26.1.0
click==8.5.1
exceptiongroup==1.3.2
fastapi==0.162.5
frozenlist==1.8.0
gunicorn==27.0.1
h11==0.16.0
httptools==0.9.0
idna==3.20
multidict==7.1.0
opentelemetry-api==1.45.2
propcache==0.5.4
pydantic==2.14.4
pydantic-core==2.50.5
starlette==1.7.0
typing-extensions==4.16.0
typing-inspection==0.4.5
uvicorn==0.54.0
uvicorn-worker==0.4.0
uvloop==0.23.0
yarl==1.25.1
EOF
    ;;
    *) cat <<'EOF'
pip==26.3
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiosignal==1.4.0
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
attrs==26.1.0
click==8.5.1
fastapi==0.165.0
frozenlist==1.8.0
gunicorn==27.0.1
h11==0.16.0
httptools==0.9.0
idna==3.20
multidict==7.2.1
opentelemetry-api==1.45.2
propcache==0.5.4
pydantic==2.14.4
pydantic-core==2.50.5
starlette==1.10.0
typing-extensions==4.16.0
typing-inspection==0.4.5
uvicorn==0.54.0
uvicorn-worker==0.4.0
uvloop==0.23.0
yarl==1.25.1
EOF
    ;;
    esac
}

# Move freshly downloaded files into the wheelhouse: rename(2) on one file
# system, so a concurrent `pip install --no-index` never sees half a file.
publish() { # dir
    local f
    for f in "$1"/*; do
        [[ -e $f ]] || continue
        if [[ -e $WHEELS/${f##*/} ]]; then rm -f "$f"; else mv -n "$f" "$WHEELS/"; fi
    done
    rm -rf "$1"
}

stamp_ok() { [[ $FORCE == 0 && -f $STAMPS/$1 && "$(<"$STAMPS/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$STAMPS"; printf '%s' "$2" >"$STAMPS/$1.tmp"; mv -f "$STAMPS/$1.tmp" "$STAMPS/$1"; }

# Any pip that can fetch the pip wheel itself (a py3-none-any file): a pyenv
# interpreter's pip, the host's, else a finished venv's.
host_pip() {
    local p
    for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3 "$(command -v python3 || true)" \
        $(sed -n 's/^[^\t]*\t\([^\t]*\)\t.*/\1/p' "$VENVS/venvs.tsv" 2>/dev/null); do
        [[ -x $p ]] && "$p" -m pip --version >/dev/null 2>&1 && { echo "$p"; return; }
    done
    return 1
}

IMPORT_CHECK='
import sys, importlib.metadata as md
import aiohttp.web, fastapi, starlette, pydantic, pydantic_core, uvicorn, gunicorn, uvloop, httptools, uvicorn_worker
from aiohttp import http_parser
assert http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser", "aiohttp C parser not in use"
print("\t".join(f"{n}={md.version(n)}" for n in ("aiohttp", "fastapi", "starlette", "pydantic", "pydantic-core", "uvicorn", "uvloop", "httptools", "gunicorn", "uvicorn-worker")))
'

build_venv() { # X.Y python
    local v=$1 py=$2 venv=$VENVS/$1 lock key pyver pipver
    lock=$(lock_for "$v")
    pyver=$("$py" -c 'import sys; print(sys.version.split()[0])')
    key="rev=$FW_REV py=$py ver=$pyver lock=$(sha256sum <<<"$lock" | cut -c1-16)"
    if stamp_ok "fw-venv-$v" "$key" && [[ -x $venv/bin/python ]]; then return 0; fi
    local t0=$SECONDS
    LOG=$LOGDIR/frameworks-$v.log
    echo "=== $(date -u +%FT%TZ) build $v ($key)" >"$LOG"
    rm -f "$STAMPS/fw-venv-$v"
    printf '%s\n' "$lock" >"$VENVS/$v.lock.txt"
    pipver=$(sed -n 's/^pip==//p' <<<"$lock")

    local dl=$WHEELS/.dl-$v
    # 1. pip's own wheel (fetched by whatever pip exists)
    if ! compgen -G "$WHEELS/pip-$pipver-py3-none-any.whl" >/dev/null; then
        local hp; hp=$(host_pip) || die "no pip anywhere to fetch pip $pipver"
        rm -rf "$dl"
        run_logged "download pip $pipver" "$hp" -m pip download "${PIPQ[@]}" --no-deps \
            --ignore-requires-python -d "$dl" "pip==$pipver"
        publish "$dl"
    fi
    # 2. a fresh venv with that pip
    rm -rf "$venv"
    run_logged "venv $v" "$py" -m venv --without-pip "$venv"
    run_logged "pip into venv $v" "$venv/bin/python" "$WHEELS/pip-$pipver-py3-none-any.whl/pip" \
        install "${PIPQ[@]}" --no-index "pip==$pipver"
    # 3. the frameworks: offline from the wheelhouse, else download the misses first
    if ! "$venv/bin/python" -m pip install "${PIPQ[@]}" --no-index -r "$VENVS/$v.lock.txt" >>"$LOG" 2>&1; then
        log "$v: fetching wheels into $WHEELS"
        rm -rf "$dl"
        run_logged "download $v" "$venv/bin/python" -m pip download "${PIPQ[@]}" -d "$dl" -r "$VENVS/$v.lock.txt"
        publish "$dl"
        run_logged "install $v" "$venv/bin/python" -m pip install "${PIPQ[@]}" --no-index -r "$VENVS/$v.lock.txt"
    fi
    local vers
    vers=$("$venv/bin/python" -c "$IMPORT_CHECK" 2>>"$LOG") || { tail -n 20 "$LOG" >&2; die "$v: import check failed"; }
    printf '%s\t%s\t%s\n' "$v" "$venv/bin/python" "$vers" >"$VENVS/$v.versions.tsv"
    stamp_set "fw-venv-$v" "$key"
    log "$v: venv ready in $((SECONDS - t0))s ($pyver)"
}

[[ -f $MANIFEST ]] || die "$MANIFEST missing: run scripts/test-pythons.sh first"
mkdir -p "$VENVS" "$WHEELS" "$LOGDIR"
exec 9>"$VENVS/.lock"
flock 9 # one provisioning run at a time

n=0 running=0 failed=0
while IFS=$'\t' read -r v py _ <&3; do
    if ((${#ONLY[@]})) && [[ " ${ONLY[*]} " != *" $v "* ]]; then continue; fi
    n=$((n + 1))
    if ((running >= JOBS)); then
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
    fi
    build_venv "$v" "$py" </dev/null &
    running=$((running + 1))
done 3<"$MANIFEST"
while ((running > 0)); do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
done
((failed == 0)) || die "$failed of $n venvs failed (logs: $LOGDIR)"
cat "$VENVS"/3.*.versions.tsv 2>/dev/null | sort -V >"$VENVS/venvs.tsv"
log "$n venvs ready ($VENVS/venvs.tsv, wheels: $(du -sh "$WHEELS" | cut -f1))"
