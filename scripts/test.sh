#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian machine, then runs
# formatting and lint checks, the Rust suite (unit + loopback integration), and the real-client tier.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy >/dev/null 2>&1 || true

# lavapipe (Mesa's CPU Vulkan driver) for the wgpu device tests; they fail under CI without an adapter.
if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    mesa-vulkan-drivers libvulkan1 >/dev/null
fi
# g++ builds the CUDA kernel emulator (src/device/cuda/emu.rs) that runs the CUDA kernels' tests on the CPU.
if ! command -v g++ >/dev/null && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
export NODEVICE_SELECT=1 # silences Mesa's device-select layer ("XDG_RUNTIME_DIR is invalid")

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test (release profile: shares its build with the real-client tier)"
cargo test --release --all-targets
echo "== CUDA kernels: NVRTC + ptxas for sm_80 and sm_90 (no GPU needed; CUDA device tests skip without one)"
bash scripts/cuda-kernels.sh
echo "== fuzzing, 60 s per target (scripts/fuzz.sh; SECURITY.md has the long runs)"
bash scripts/fuzz.sh 60
echo "== real-client tier, RPC 7.0.0 (llama-cpp-python 0.3.36 + Gemma 3 270M, ggrpc --protocol 7)"
bash scripts/e2e.sh
echo "== real-client tier on Vulkan0 (lavapipe): logits, ops and the decode graph's dispatches; long generation there takes minutes"
GGRPC_DEVICE=Vulkan0 bash scripts/e2e.sh -k "logits or ops or dispatches"
echo "== the same logits with the GPU-shaped kernels forced on lavapipe (what hardware adapters run)"
GGRPC_WGPU_GPU_KERNELS=1 GGRPC_DEVICE=Vulkan0 bash scripts/e2e.sh -k "test_teacher_forced_logits"
echo "== the real client's teacher-forced logits through the CUDA planners and kernels, in the CPU emulator (CUDAEMU0)"
GGRPC_CUDA_EMU=1 GGRPC_DEVICE=CUDAEMU0 GGRPC_CLIENT_TIMEOUT=1500 bash scripts/e2e.sh -k test_teacher_forced_logits
echo "== real-client tier, RPC 8.0.0 (llama.cpp b11739 in a Debian 13 root): single, layer split, tensor parallel"
bash scripts/e2e-v8.sh
