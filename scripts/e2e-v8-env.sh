#!/usr/bin/env bash
# The RPC 8.0.0 real-client tier's environment: a current llama.cpp (PyPI wheel llama-cpp-py-sync 0.11739,
# llama.cpp b11739, RPC 8.0.0) needs glibc >= 2.38, so it runs inside a Debian 13 (trixie) root made with
# debootstrap and cached under ${GGRPC_CACHE:-~/.cache/ggrpc}/trixie. Needs root (debootstrap, chroot, mounts).
#
#   scripts/e2e-v8-env.sh                 set up (idempotent; a stamp makes the cached case instant);
#                                         prints the root's path on the last line
#   scripts/e2e-v8-env.sh run CMD [ARG..] run CMD inside the root, e.g. `run python3 tests/e2e/client_v8.py ..`
#                                         (`python3` is the root's venv with the wheel); the working directory
#                                         is kept when it lies in a bound folder
#   scripts/e2e-v8-env.sh check           exit 0 if set up, 1 if not (no side effects)
#
# The Debian mirror is the first URI in /etc/apt/sources.list.d/debian.sources (or sources.list); env
# GGRPC_V8_MIRROR overrides it. Cold setup: 45-65 s on 2 cores (debootstrap 37-57 s, pip download and
# install ~7 s); cached: 0.01 s.
#
# `run` enters a private mount namespace (`unshare -m`), bind-mounts /proc, /dev and /sys (recursively),
# /tmp, the repository, the model folder (${GGRPC_CACHE}/models) and every folder in GGRPC_V8_BIND
# (colon-separated) at the same paths inside the root, then execs `chroot`. The mounts exist only
# in that namespace and vanish with its last process: nothing to unmount, no leaks however often or however
# concurrently it runs, and the process keeps its pid (unshare and chroot exec), so a signal sent to it reaches
# the program itself. The network namespace is the host's: 127.0.0.1 inside is the host's loopback.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${GGRPC_CACHE:-$HOME/.cache/ggrpc}"
base="$cache/trixie"
root="$base/root"
wheels="$base/wheels"
stamp="$base/ready"
venv=/opt/v8venv # inside the root
WHEEL_SPEC="llama-cpp-py-sync==0.11739"
DEPS=(cffi pycparser numpy certifi)
PLATFORM_ARGS=(--only-binary=:all: --python-version 3.13 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
STAMP_TEXT="v1 trixie minbase python3 python3-venv ca-certificates libgomp1; $WHEEL_SPEC ${DEPS[*]}"

log() { echo "e2e-v8-env: $*" >&2; }
die() { log "$*"; exit 2; }

is_ready() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$STAMP_TEXT" ] && [ -x "$root$venv/bin/python3" ]; }

# Refuse to delete a tree that has something mounted inside it in *this* namespace (a bind mount of the repo
# would be deleted through). Mounts made by `run` live in private namespaces and are invisible here.
assert_no_mounts_under() {
  local dir="$1"
  if awk -v d="$dir" '{ if ($5 == d || index($5, d "/") == 1) found = 1 } END { exit !found }' /proc/self/mountinfo; then
    die "something is mounted under $dir; unmount it first (findmnt -R $dir)"
  fi
}

mirror() {
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)"
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

host_pip() {
  # Any pip on the host will do for `pip download` (it fetches for Python 3.13 by tags, installs nothing).
  local py
  for py in "$cache/venv/bin/python" python3; do
    if "$py" -m pip --version >/dev/null 2>&1; then echo "$py"; return; fi
  done
  log "installing python3-pip (for pip download)"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >&2
  echo python3
}

setup() {
  [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, bind mounts)"
  mkdir -p "$base"
  exec 9>"$base/lock"
  flock 9 # one setup at a time; `run` takes the lock shared
  if is_ready; then echo "$root"; return; fi
  local t0=$SECONDS
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
  fi
  if [ ! -x "$root/usr/bin/python3" ] || [ ! -f "$base/debootstrap.ok" ]; then
    local m tmp="$base/root.partial"
    m="${GGRPC_V8_MIRROR:-$(mirror)}"
    for d in "$tmp" "$root"; do
      if [ -e "$d" ]; then assert_no_mounts_under "$d"; rm -rf --one-file-system "$d"; fi
    done
    log "debootstrap trixie from $m into $tmp (about a minute)"
    # Its own mount namespace: the /proc and /sys that debootstrap mounts in the target die with it.
    unshare -m --propagation private debootstrap --variant=minbase \
      --include=python3,python3-venv,ca-certificates,libgomp1 trixie "$tmp" "$m" >"$base/debootstrap.log" 2>&1 \
      || { tail -n 30 "$base/debootstrap.log" >&2; die "debootstrap failed (log: $base/debootstrap.log)"; }
    mv "$tmp" "$root"
    touch "$base/debootstrap.ok"
    log "debootstrap done in $((SECONDS - t0)) s"
  fi
  local py
  py="$(host_pip)"
  mkdir -p "$wheels"
  if ! ls "$wheels"/llama_cpp_py_sync-0.11739-*.whl >/dev/null 2>&1 || ! ls "$wheels"/numpy-*.whl >/dev/null 2>&1; then
    log "pip download $WHEEL_SPEC ${DEPS[*]} for CPython 3.13 into $wheels"
    "$py" -m pip download -q --no-deps "${PLATFORM_ARGS[@]}" -d "$wheels" "$WHEEL_SPEC" >&2
    "$py" -m pip download -q "${PLATFORM_ARGS[@]}" -d "$wheels" "${DEPS[@]}" >&2
  fi
  rm -rf "$root/opt/wheels"
  mkdir -p "$root/opt/wheels"
  cp "$wheels"/*.whl "$root/opt/wheels/"
  if [ ! -x "$root$venv/bin/python3" ]; then
    (run_in_root /usr/bin/python3 -m venv "$venv") >&2
  fi
  # No network needed inside the root: everything comes from the downloaded wheels.
  (run_in_root /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root "$venv/bin/python3" -m pip install -q \
    --no-index --find-links /opt/wheels --disable-pip-version-check "$WHEEL_SPEC" "${DEPS[@]}") >&2
  (run_in_root "$venv/bin/python3" -c 'import llama_cpp_py_sync, numpy, cffi; print("llama_cpp_py_sync", llama_cpp_py_sync.__version__)') >&2 \
    || die "the wheel does not import inside the root"
  echo "$STAMP_TEXT" >"$stamp"
  log "setup done in $((SECONDS - t0)) s: $root"
  echo "$root"
}

run_in_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (chroot, bind mounts)"
  [ -x "$root/usr/bin/python3" ] || die "no root at $root; run scripts/e2e-v8-env.sh first"
  local binds=(/tmp "$repo" "$cache/models")
  if [ -n "${GGRPC_V8_BIND:-}" ]; then
    local extra
    IFS=: read -r -a extra <<<"$GGRPC_V8_BIND"
    binds+=("${extra[@]}")
  fi
  mkdir -p "$cache/models"
  local inner='set -e
root="$1"; shift
nb="$1"; shift
mount --bind /proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
i=0
while [ "$i" -lt "$nb" ]; do
  d="$1"; shift; i=$((i + 1))
  [ -d "$d" ] || continue
  mkdir -p "$root$d"
  mount --bind "$d" "$root$d"
done
cwd="$(pwd)"
cd "$root$cwd" 2>/dev/null && [ "$(pwd)" = "$root$cwd" ] && exec chroot "$root" /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
exec chroot "$root" "$@"'
  # Resolve `python3` to the venv; keep the host environment but make PATH the root's.
  local cmd="$1"; shift
  if [ "$cmd" = python3 ] || [ "$cmd" = python ]; then cmd="$venv/bin/python3"; fi
  PATH="$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    exec unshare -m --propagation private /bin/sh -c "$inner" sh "$root" "${#binds[@]}" "${binds[@]}" "$cmd" "$@"
}

case "${1:-setup}" in
  setup) setup ;;
  check) is_ready ;;
  run)
    shift
    [ $# -gt 0 ] || die "usage: $0 run CMD [ARG...]"
    is_ready || setup >/dev/null
    run_in_root "$@"
    ;;
  *) die "usage: $0 [setup|check|run CMD [ARG...]]" ;;
esac
