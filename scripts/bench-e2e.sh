#!/usr/bin/env bash
# End-to-end benchmark: a real llama.cpp client (llama-cpp-python 0.3.36's libllama, Gemma 3 270M Q4_K_M,
# all 19 layers offloaded to the RPC device) through ggrpc and through llama.cpp's reference rpc-server
# (from the same wheel), run alternately, 3 rounds by default. Prints prompt processing (pp, one batch of
# 64 tokens) and generation (tg, 32 single-token decodes) in tokens/s, mean ± stdev, and the ratio to the
# reference. Method as llama-bench: random tokens, empty KV cache, one warm-up pass per client process.
#
# Usage: scripts/bench-e2e.sh [--servers LIST] [--device DEV] [--rounds N] [--reps N] [--pp N] [--tg N]
#                             [--threads N] [--baseline LABEL] [--json FILE]
#   --servers  comma list of NAME[@DEVICE] (default: ggrpc,reference, or $GGRPC_BENCH_SERVERS). NAME is
#              ggrpc (target/release/rpc-server), reference (llama.cpp's server via ctypes), local (no RPC:
#              the client computes on its own CPU), or the path of any rpc-server-compatible binary.
#              DEVICE is passed as -d (default: --device, else $GGRPC_DEVICE, else CPU).
#   --threads  server -t, also the client's CPU threads unless $GGRPC_CLIENT_THREADS is set (default:
#              $GGRPC_THREADS, else nproc/2 like rpc-server's own default; 1 on the 2-core machines).
# Examples:
#   scripts/bench-e2e.sh                                      # ggrpc vs reference on CPU
#   scripts/bench-e2e.sh --servers reference,local --rounds 2  # the reference alone, and no RPC at all
#   scripts/bench-e2e.sh --servers ggrpc@Vulkan0,ggrpc@CPU,reference@CPU --baseline reference@CPU
# ggrpc is built first (cargo build --release) when it is in the list; set GGRPC_BENCH_BUILD=0 to skip.
# Timings are only meaningful on a quiet machine: the load average is printed with every run.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$("$repo/scripts/e2e-env.sh" | tail -n 1)"
servers="${GGRPC_BENCH_SERVERS:-ggrpc,reference}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --servers) servers="${args[$((i + 1))]:-}" ;;
    --servers=*) servers="${args[$i]#--servers=}" ;;
  esac
done
if [[ ",$servers," == *",ggrpc"[,@]* && "${GGRPC_BENCH_BUILD:-1}" != 0 ]]; then
  (cd "$repo" && cargo build --release >&2)
fi
export NODEVICE_SELECT=1
exec "$py" "$repo/scripts/bench_e2e.py" "$@"
