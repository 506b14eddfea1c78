#!/usr/bin/env bash
# Compiles every CUDA kernel with NVRTC for sm_80 and sm_90 through the device's own compile path
# (the Rust test `every_family_compiles_for_sm80_and_sm90`), then assembles each PTX with ptxas,
# failing on any error or warning. Needs no GPU: NVRTC and ptxas come from PyPI wheels, cached in
# target/cuda-tools.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=target/cuda-tools
if [ ! -x "$tools/nvidia/cuda_nvcc/bin/ptxas" ] || ! ls "$tools"/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 >/dev/null 2>&1; then
  echo "installing NVRTC 12.9 and ptxas from PyPI into $tools" >&2
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --no-deps --target "$tools" \
    nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-nvcc-cu12==12.9.86
fi
nvrtc_lib=$(realpath "$tools/nvidia/cuda_nvrtc/lib")
# --install: only install, and print the folder holding libnvrtc.so.12 (scripts/gpu-bench.sh pack).
if [ "${1:-}" = --install ]; then echo "$nvrtc_lib"; exit 0; fi
ptxas=$(realpath "$tools/nvidia/cuda_nvcc/bin/ptxas")
out=$(realpath -m target/cuda-ptx)
rm -rf "$out"

LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" GGRPC_REQUIRE_NVRTC=1 GGRPC_PTX_OUT="$out" \
  cargo test --release --lib device::cuda::nvrtc::tests -- --nocapture

n=0
shopt -s nullglob
for ptx in "$out"/*.ptx; do
  arch=${ptx##*.sm}; arch=${arch%.ptx}
  log=$("$ptxas" -arch="sm_$arch" --warning-as-error -o /dev/null "$ptx" 2>&1) || {
    echo "ptxas sm_$arch failed on $(basename "$ptx"):"; echo "$log"; exit 1; }
  if [ -n "$log" ]; then echo "ptxas sm_$arch: $(basename "$ptx"): $log"; exit 1; fi
  n=$((n + 1))
done
[ "$n" -ge 18 ] || { echo "expected PTX for 9 families x 2 architectures, found $n"; exit 1; }
echo "CUDA kernels: $n PTX files compiled by NVRTC and assembled by ptxas (sm_80, sm_90), no warnings"
