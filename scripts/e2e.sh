#!/usr/bin/env bash
# The real-client tier: prepares the Python environment (scripts/e2e-env.sh), builds the release server,
# and runs pytest on tests/e2e with -s so the logits metrics and the generated text are shown.
# Exit status = pytest's. Extra arguments go to pytest (e.g. -k logits).
# Environment: GGRPC_SERVER (binary path, or `reference` for llama.cpp's own server; default
# target/release/rpc-server), GGRPC_DEVICE (default CPU), GGRPC_THREADS (server -t, default 2);
# GGRPC_WHEEL_FLAVOUR (the reference wheel's ISA, see scripts/e2e-env.sh: avx2 by default on x86-64, the
# ISA ggrpc's CPU device reproduces; native for -march=native); see tests/e2e/conftest.py for the rest.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$("$repo/scripts/e2e-env.sh" | tail -n 1)" || { echo "e2e: environment setup failed" >&2; exit 2; }
if [[ "${GGRPC_SERVER:-}" != "reference" ]]; then
  (cd "$repo" && cargo build --release --bin rpc-server --example compare_ops) \
    || { echo "e2e: cargo build --release failed" >&2; exit 2; }
fi
export NODEVICE_SELECT=1
# tests/e2e/test_v8.py (the RPC 8.0.0 tier) has its own entry point, scripts/e2e-v8.sh.
cd "$repo" && "$py" -m pytest -s -p no:cacheprovider --ignore=tests/e2e/test_v8.py tests/e2e "$@"
