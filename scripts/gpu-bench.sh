#!/usr/bin/env bash
# GPU benchmark for a lent machine that has a GPU driver and nothing else (no network, cargo or Python).
# Two halves:
#
#   scripts/gpu-bench.sh pack   HERE: release-builds rpc-server, examples/gpu_bench.rs (kernel
#                               micro-benches) and examples/synthetic_decode (Gemma 3 270M-shaped decode
#                               over loopback), strips them and copies this machine's Vulkan loader
#                               (libvulkan.so.1) next to them, with the library's test binary (the CUDA
#                               conformance suite) and the CUDA kernels as PTX for sm_80–sm_120, into
#                               target/gpu-bench/ (under 64 MiB).
#   scripts/gpu-bench.sh run    THERE, in a copy of the repository with target/gpu-bench carried along
#                               (device tool: command "bash scripts/gpu-bench.sh run", carry
#                               ["target/gpu-bench"]): lists the adapters, picks the first one that is
#                               neither the CPU nor a software rasterizer, runs the micro-benches and the
#                               synthetic decode on it (on CUDA0 first, when there is one, then on the
#                               first other GPU adapter, e.g. the same GPU through Vulkan; with CUDA0
#                               the CUDA conformance suite too), writes one JSON ($OUT/gpu-bench.json when $OUT is
#                               set, else target/gpu-bench/result.json, logs beside it) and prints the
#                               tables in markdown. Each step has its own timeout (listings 30 s, micro-
#                               benches 150 s, decode 200 s): the whole run stays under 8 minutes.
#
# Environment:
#   GPU_BENCH_QUICK=1     few tokens and repetitions (to check the script on lavapipe: about 5 minutes)
#   GPU_BENCH_DEVICE=DEV  the device to measure (a --list-devices name), instead of the first GPU
#   GPU_BENCH_DIR=PATH    the packed folder (default target/gpu-bench under the repository)
#
# Vulkan on a driver-only NVIDIA machine: when no NVIDIA ICD manifest is installed (no nvidia*.json in
# /etc/vulkan/icd.d, /usr/share/vulkan/icd.d or /usr/local/share/vulkan/icd.d, and VK_ICD_FILENAMES is
# unset), `run` writes one in a temporary folder pointing at libGLX_nvidia.so.0 (then, if that lists no
# GPU, libEGL_nvidia.so.0) and sets VK_ICD_FILENAMES to it; the JSON records what was tried. A driver
# installed without its graphics libraries (a container without the `graphics` capability) has neither,
# and then no adapter is found: the JSON says so and the script exits 2.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${GPU_BENCH_DIR:-$repo/target/gpu-bench}"
quick="${GPU_BENCH_QUICK:-0}"

die() {
  echo "gpu-bench: $*" >&2
  exit 1
}

pack() {
  set -e
  local target="${CARGO_TARGET_DIR:-$repo/target}"
  command -v cargo >/dev/null || die "pack needs cargo (run it on the build machine)"
  (cd "$repo" && cargo build --release --bin rpc-server --example gpu_bench --example synthetic_decode \
    --example cuda_ptx)
  # The library's test binary, for the CUDA conformance suite on the GPU machine.
  local tests
  tests="$(cd "$repo" && cargo test --release --lib --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
  [[ -x "$tests" ]] || die "could not build the library's test binary"
  rm -rf "$dir"
  mkdir -p "$dir/lib"
  cp "$target/release/rpc-server" "$dir/"
  cp "$target/release/examples/gpu_bench" "$target/release/examples/synthetic_decode" "$dir/"
  cp "$tests" "$dir/ggrpc-tests"
  # CUDA kernels as PTX for the architectures of current NVIDIA GPUs: the GPU machine has the driver
  # but no libnvrtc (106 MiB, too big to carry), and the device loads cached PTX without it.
  local nvrtc
  nvrtc="$(bash "$repo/scripts/cuda-kernels.sh" --install)"
  LD_LIBRARY_PATH="$nvrtc" "$target/release/examples/cuda_ptx" --out "$dir/cuda-cache" \
    --arch 80,86,89,90,100,120
  if command -v strip >/dev/null; then
    strip "$dir/rpc-server" "$dir/gpu_bench" "$dir/synthetic_decode" "$dir/ggrpc-tests"
  else
    echo "gpu-bench: no strip here: the binaries keep their debug info (check the size below)" >&2
  fi
  local loader
  loader="$(ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 .*x86-64/ && !f {print $NF; f = 1}')"
  if [[ -n "$loader" && -e "$loader" ]]; then
    cp -L "$loader" "$dir/lib/libvulkan.so.1"
  else
    echo "gpu-bench: this machine has no libvulkan.so.1 (apt-get install libvulkan1): the run will" \
      "rely on the GPU machine's own loader" >&2
  fi
  local glibc
  glibc="$(objdump -T "$dir/rpc-server" "$dir/gpu_bench" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)"
  {
    echo "packed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)$(git -C "$repo" diff --quiet 2>/dev/null || echo '+dirty')"
    echo "host: $(uname -srm)"
    echo "loader: ${loader:-none}"
    echo "needs: ${glibc:-unknown} or newer"
  } >"$dir/manifest.txt"
  local bytes
  bytes="$(du -sb "$dir" | cut -f1)"
  ls -l "$dir" "$dir/lib"
  cat "$dir/manifest.txt"
  echo "total: $((bytes / 1048576)) MiB in $dir"
  ((bytes < 64 * 1048576)) || die "the packed folder is over the 64 MiB a device call carries"
  echo "next, on the GPU machine: bash scripts/gpu-bench.sh run   (carry target/gpu-bench)"
}

# A JSON string literal of $1 (newlines kept as \n, other control characters dropped).
json_str() {
  printf '"'
  printf '%s' "$1" | tr -d '\000-\010\013-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' |
    awk 'BEGIN { ORS = "" } NR > 1 { print "\\n" } { print }'
  printf '"'
}

# The contents of JSON file $1, or null.
json_file() {
  if [[ -s "$1" ]]; then cat "$1"; else printf 'null'; fi
}

# `NAME kind` for each adapter of a --list-devices listing on stdin (kind: gpu, software or cpu).
adapters() {
  awk '/^  [^ ].*: / { if (name != "") print name, kind; name = $1; sub(/:$/, "", name);
                        kind = (name == "CPU") ? "cpu" : "gpu"; next }
       /^      / && /software/ { kind = "software" }
       END { if (name != "") print name, kind }'
}

run() {
  [[ -x "$dir/rpc-server" && -x "$dir/gpu_bench" && -x "$dir/synthetic_decode" ]] ||
    die "$dir lacks the packed binaries: run 'scripts/gpu-bench.sh pack' on the build machine first"
  local started=$SECONDS res json logs
  if [[ -n "${OUT:-}" ]]; then
    res="$OUT"
    json="$OUT/gpu-bench.json"
  else
    res="$dir"
    json="$dir/result.json"
  fi
  logs="$res/gpu-bench-logs"
  mkdir -p "$logs"
  rm -f "$logs"/* "$json"
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064 # the folder's name, fixed now
  trap "rm -rf '$tmp'" EXIT
  export NODEVICE_SELECT=1
  [[ -e "$dir/lib/libvulkan.so.1" ]] && export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local errors=() smi="" icd_note=""
  echo "== gpu-bench run (quick=$quick) on $(uname -n), $(nproc) cores"
  cat "$dir/manifest.txt" 2>/dev/null
  if command -v nvidia-smi >/dev/null; then
    smi="$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
    echo "nvidia-smi: $smi"
  fi

  list() { timeout 30 "$dir/rpc-server" --list-devices 2>&1; }
  local listing
  listing="$(list)"
  # A GPU is present (nvidia-smi works) but Vulkan sees none: write an ICD manifest if none exists.
  if ! adapters <<<"$listing" | grep -q ' gpu$' && [[ -n "$smi" && -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]] &&
    ! ls /etc/vulkan/icd.d/nvidia*.json /usr/share/vulkan/icd.d/nvidia*.json \
      /usr/local/share/vulkan/icd.d/nvidia*.json >/dev/null 2>&1; then
    icd_note="no NVIDIA Vulkan ICD manifest installed;"
    local lib found
    for lib in libGLX_nvidia.so.0 libEGL_nvidia.so.0; do
      found="$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l && !f {print $NF; f = 1}')"
      [[ -z "$found" ]] && found="$(ls /usr/lib/x86_64-linux-gnu/$lib /usr/lib64/$lib \
        /usr/local/nvidia/lib64/$lib 2>/dev/null | head -n 1)"
      if [[ -z "$found" ]]; then
        icd_note+=" $lib not found;"
        continue
      fi
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' \
        "$found" >"$tmp/nvidia_icd.json"
      export VK_ICD_FILENAMES="$tmp/nvidia_icd.json" VK_DRIVER_FILES="$tmp/nvidia_icd.json"
      listing="$(list)"
      if adapters <<<"$listing" | grep -q ' gpu$'; then
        icd_note+=" wrote an ICD manifest for $found: an adapter was found"
        break
      fi
      icd_note+=" an ICD manifest for $found listed no GPU;"
      unset VK_ICD_FILENAMES VK_DRIVER_FILES
      listing="$(list)"
    done
    echo "vulkan icd: $icd_note"
  elif ! adapters <<<"$listing" | grep -q ' gpu$' && [[ -n "$smi" ]]; then
    icd_note="an NVIDIA GPU and an ICD manifest (or VK_ICD_FILENAMES), but Vulkan lists no GPU adapter"
  fi
  printf '%s\n' "$listing" | tee "$logs/list-devices.txt"
  if ! adapters <<<"$listing" | grep -q ' gpu$'; then
    # The Vulkan loader's own account of which drivers it tried, for the log.
    VK_LOADER_DEBUG=error,warn,driver timeout 30 "$dir/rpc-server" --list-devices >"$logs/vulkan-loader.txt" 2>&1
  fi

  [[ -d "$dir/cuda-cache" ]] && export GGRPC_CUDA_CACHE="$dir/cuda-cache"
  local dev="${GPU_BENCH_DEVICE:-}" kind=""
  if [[ -z "$dev" ]]; then
    read -r dev kind < <(adapters <<<"$listing" | awk '$2 == "gpu"' | head -n 1)
  fi
  if [[ -z "$dev" ]]; then
    read -r dev kind < <(adapters <<<"$listing" | awk '$2 == "software"' | head -n 1)
    [[ -n "$dev" ]] && echo "gpu-bench: no hardware GPU adapter; measuring the software adapter $dev"
  fi
  [[ -z "$kind" && -n "$dev" ]] && kind="$(adapters <<<"$listing" | awk -v d="$dev" '$1 == d {print $2}')"
  # With CUDA0 first, the first other GPU adapter (the same GPU through Vulkan) is measured too,
  # quickly, so one run compares the two paths.
  local second=""
  if [[ "$dev" == CUDA* && -z "${GPU_BENCH_DEVICE:-}" ]]; then
    second="$(adapters <<<"$listing" | awk '$2 == "gpu" && $1 !~ /^CUDA/ {print $1; exit}')"
  fi

  local micro_args=() decode_args=(--tokens 128 --warmup 8 --pp 64,512 --pp-reps 5)
  local quick_decode=(--tokens 4 --warmup 1 --pp 16 --pp-reps 1)
  if [[ "$quick" == 1 ]]; then
    micro_args=(--quick)
    decode_args=("${quick_decode[@]}")
  fi
  # Timeouts (s): micro, rows (0: skipped), decode; the run stays under 8 minutes.
  local t_micro=150 t_rows=90 t_decode=200
  [[ -n "$second" ]] && t_micro=120 t_rows=0 t_decode=150

  # measure DEV TAG MICRO_S ROWS_S DECODE_S MICRO_ARGS... -- DECODE_ARGS...
  measure() {
    local d="$1" tag="$2" tm="$3" tr="$4" td="$5" rc
    shift 5
    local margs=() dargs=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do margs+=("$1"); shift; done
    [[ $# -gt 0 ]] && shift
    dargs=("$@")
    echo "== micro-benches on $d"
    timeout "$tm" "$dir/gpu_bench" --device "$d" "${margs[@]}" --json "$logs/micro$tag.json" \
      >"$logs/micro$tag.md" 2>"$logs/micro$tag.log"
    rc=$?
    ((rc == 0)) || errors+=("gpu_bench on $d exited $rc (124: timed out after $tm s); see gpu-bench-logs/micro$tag.log")
    tail -n 3 "$logs/micro$tag.log"
    if ((tr > 0)) && [[ "$d" != CUDA* ]]; then
      # The same cases with the CPU adapters' kernels (a row per invocation), to compare (quick).
      echo "== micro-benches with the CPU adapters' kernels (GGRPC_WGPU_GPU_KERNELS=0)"
      GGRPC_WGPU_GPU_KERNELS=0 timeout "$tr" "$dir/gpu_bench" --device "$d" --quick \
        --json "$logs/micro-rows$tag.json" >"$logs/micro-rows$tag.md" 2>"$logs/micro-rows$tag.log" ||
        errors+=("gpu_bench with GGRPC_WGPU_GPU_KERNELS=0 failed; see gpu-bench-logs/micro-rows$tag.log")
    fi
    echo "== synthetic Gemma 3 270M decode on $d"
    local port=$((40000 + RANDOM % 20000)) mport
    mport=$((port + 1))
    timeout $((td + 20)) "$dir/rpc-server" -H 127.0.0.1 -p "$port" -d "$d" --metrics "127.0.0.1:$mport" \
      >"$logs/server$tag.log" 2>&1 &
    local server=$!
    timeout "$td" "$dir/synthetic_decode" --addr "127.0.0.1:$port" --metrics "127.0.0.1:$mport" \
      --device "$d" "${dargs[@]}" --json "$logs/decode$tag.json" >"$logs/decode$tag.md" 2>"$logs/decode$tag.log"
    rc=$?
    ((rc == 0)) || errors+=("synthetic_decode on $d exited $rc (124: timed out after $td s); see gpu-bench-logs/decode$tag.log")
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    tail -n 4 "$logs/decode$tag.log"
  }

  local cuda_tests="null"
  if [[ -z "$dev" ]]; then
    errors+=("no GPU adapter found (rpc-server --list-devices lists only the CPU)${icd_note:+: $icd_note}")
    echo "gpu-bench: ${errors[-1]}" >&2
  else
    if [[ "$dev" == CUDA* && -x "$dir/ggrpc-tests" ]]; then
      # The conformance table, fresh buffers and range checks on the GPU itself.
      echo "== CUDA tests on $dev (the conformance suite against the CPU device)"
      timeout 60 "$dir/ggrpc-tests" --test-threads 2 device::cuda::tests >"$logs/cuda-tests.txt" 2>&1
      local rc=$?
      ((rc == 0)) || errors+=("CUDA tests exited $rc (124: timed out); see gpu-bench-logs/cuda-tests.txt")
      tail -n 5 "$logs/cuda-tests.txt"
      cuda_tests="$(json_str "$(tail -n 40 "$logs/cuda-tests.txt")")"
    fi
    measure "$dev" "" "$t_micro" "$t_rows" "$t_decode" "${micro_args[@]}" -- "${decode_args[@]}"
    if [[ -n "$second" ]]; then
      measure "$second" "-2" 45 0 60 --quick -- "${quick_decode[@]}"
    fi
  fi

  local errs="" e
  for e in "${errors[@]}"; do errs+="${errs:+,}$(json_str "$e")"; done
  {
    printf '{"schema":"ggrpc-gpu-bench/1","date":"%s","quick":%s,' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      "$([[ "$quick" == 1 ]] && echo true || echo false)"
    printf '"host":%s,"cores":%s,"manifest":%s,' "$(json_str "$(uname -nsrm)")" "$(nproc)" \
      "$(json_str "$(cat "$dir/manifest.txt" 2>/dev/null)")"
    printf '"nvidia_smi":%s,"vulkan_icd":%s,"list_devices":%s,' "$(json_str "$smi")" \
      "$(json_str "${icd_note:-${VK_ICD_FILENAMES:-system manifests}}")" "$(json_str "$listing")"
    printf '"device":%s,"device_kind":%s,' "$(json_str "$dev")" "$(json_str "$kind")"
    printf '"micro":%s,"micro_rows":%s,"decode":%s,' "$(json_file "$logs/micro.json")" \
      "$(json_file "$logs/micro-rows.json")" "$(json_file "$logs/decode.json")"
    printf '"cuda_tests":%s,"second_device":%s,"second_micro":%s,"second_decode":%s,' "$cuda_tests" \
      "$(json_str "$second")" "$(json_file "$logs/micro-2.json")" "$(json_file "$logs/decode-2.json")"
    printf '"errors":[%s],"seconds":%s}\n' "$errs" "$((SECONDS - started))"
  } >"$json"

  echo
  echo "## gpu-bench: ${dev:-no adapter}${kind:+ ($kind)} on $(uname -n)"
  [[ -n "$smi" ]] && echo "nvidia-smi: $smi"
  cat "$logs/micro.md" "$logs/micro-rows.md" "$logs/decode.md" 2>/dev/null
  if [[ -n "$second" ]]; then
    echo
    echo "## the same GPU as $second (quick)"
    cat "$logs/micro-2.md" "$logs/decode-2.md" 2>/dev/null
  fi
  echo
  echo "JSON: $json ($((SECONDS - started)) s)"
  if [[ -z "$dev" ]]; then exit 2; fi
  ((${#errors[@]} == 0)) || exit 1
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *)
    sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 64
    ;;
esac
