#!/usr/bin/env bash
# Per-weight-type MUL_MAT benchmarks (decode mat-vec GB/s, 64-column prompt matmul GMAC/s) through
# RPC on ggrpc and on llama.cpp's own rpc-server (from scripts/e2e-env.sh's wheel), in one run, with
# the ratio per case. Usage: scripts/bench-ops.sh [--threads N] [--filter TEXT]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$("$repo/scripts/e2e-env.sh" | tail -n 1)"
(cd "$repo" && cargo build --release >&2)
exec "$py" "$repo/scripts/bench_ops.py" "$@"
