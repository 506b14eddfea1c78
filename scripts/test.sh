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

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
echo "== real-client tier (llama.cpp + Gemma 3 270M)"
bash scripts/e2e.sh
