#!/usr/bin/env bash
# Short fuzzing pass (CI): builds the three libFuzzer targets in fuzz/ and runs each for N seconds
# (default 60) from the committed seeds. Usage: scripts/fuzz.sh [seconds]
# Works on stable Rust: RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's -Zsanitizer=address.
# A crash leaves its input in fuzz/artifacts/<target>/ and fails this script.
# FUZZ_CGU (default 16) is rustc's codegen units: 16 builds several times faster on 2 cores than
# cargo-fuzz's default of 1, for somewhat slower runs; use FUZZ_CGU=1 for long campaigns.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"

# libfuzzer-sys compiles libFuzzer itself: it needs a C++ compiler.
if ! command -v c++ >/dev/null && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

cgu="${FUZZ_CGU:-16}"
cargo fuzz build -O --codegen-units "$cgu"
for target in proto graph session; do
  # A scratch corpus, so CI runs never grow the committed seeds.
  work="$(mktemp -d)"
  echo "== fuzz $target for ${secs}s"
  status=0
  cargo fuzz run -O --codegen-units "$cgu" "$target" "$work" fuzz/corpus/"$target" -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$work.log" 2>&1 || status=$?
  grep -E '^(Done |stat::number_of_executed_units|SUMMARY|==[0-9]+==ERROR)|panicked' "$work.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$work.log" >&2
    echo "fuzz target $target failed (status $status); the input is in fuzz/artifacts/$target/" >&2
  fi
  rm -rf "$work" "$work.log"
  [ "$status" -eq 0 ] || exit "$status"
done
