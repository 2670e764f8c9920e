#!/usr/bin/env bash
# benchmarks/gpu_check.sh -- the one prepared check of the CUDA backend on a real NVIDIA GPU
# (H100/H200, about 8 minutes): builds vitiq_cuda_tests and vitiq-bench-cuda for the card's
# architecture, runs the CUDA tests (per-op and whole-model agreement with the CPU backend),
# compute-sanitizer memcheck on a short training run, the GPU benchmark beside PyTorch on the same
# card, and prints a short table (also written to LOGDIR/table.md).
#
#   bash benchmarks/gpu_check.sh [LOGDIR]          LOGDIR defaults to $OUT, else build-gpucheck-logs
#   bash benchmarks/gpu_check.sh --stage-deps DIR  (on a Debian 12 machine with the packages of
#        cmake/install_debian_deps.sh) copy the header-only build dependencies (Eigen, xtensor,
#        xtl, Catch2, stb) into DIR as an install prefix, for a GPU machine that lacks them: the
#        check uses DIR when it exists (VITIQ_GPU_DEPS, default build-gpudeps). Nothing is
#        downloaded.
#
# Every step's output goes to LOGDIR/<step>.log; a failing step is reported and the later steps
# still run, so one session on a GPU yields as much as it can. Exit status: 0 when everything
# passed, 1 otherwise. Environment: JOBS (build jobs, default nproc), ITERS (timed steps, 20),
# PYTHON (interpreter with a CUDA PyTorch, default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=${VITIQ_GPU_DEPS:-$ROOT/build-gpudeps}

if [[ "${1:-}" == "--stage-deps" ]]; then
  dest=${2:?"--stage-deps needs a folder"}
  mkdir -p "$dest"/include "$dest"/share "$dest"/lib/cmake "$dest"/lib/x86_64-linux-gnu/cmake \
           "$dest"/lib/x86_64-linux-gnu/pkgconfig "$dest"/share/cmake
  cp -r /usr/include/eigen3 /usr/include/xtensor /usr/include/xtl /usr/include/catch2 /usr/include/stb "$dest"/include/
  cp -r /usr/share/eigen3 "$dest"/share/
  cp -r /usr/share/cmake/xtl "$dest"/share/cmake/
  cp -r /usr/lib/x86_64-linux-gnu/cmake/xtensor "$dest"/lib/x86_64-linux-gnu/cmake/
  cp -r /usr/lib/cmake/Catch2 "$dest"/lib/cmake/
  cp -P /usr/lib/x86_64-linux-gnu/libstb.so* "$dest"/lib/x86_64-linux-gnu/
  sed 's|^prefix=.*|prefix=${pcfiledir}/../../..|' /usr/lib/x86_64-linux-gnu/pkgconfig/stb.pc \
    > "$dest"/lib/x86_64-linux-gnu/pkgconfig/stb.pc
  du -sh "$dest"
  exit 0
fi

LOG=${1:-${OUT:-$ROOT/build-gpucheck-logs}}
mkdir -p "$LOG"
BUILD=$ROOT/build-gpucheck
JOBS=${JOBS:-$(nproc)}
ITERS=${ITERS:-20}
PYTHON=${PYTHON:-python3}
START=$SECONDS
declare -a SUMMARY=()
FAILED=0

# step NAME TIMEOUT_S CMD...: run with a time limit, log to LOG/NAME.log, record the outcome.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc=0
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$LOG/$name.log" 2>&1 || rc=$?
  local verdict="ok"
  if ((rc != 0)); then
    verdict="FAILED (exit $rc)"
    if ((rc == 124)); then verdict="FAILED (timed out)"; fi
    FAILED=1
    tail -n 25 "$LOG/$name.log" | sed 's/^/   | /'
  fi
  SUMMARY+=("$(printf '%-22s %-34s %4ds' "$name" "$verdict" $((SECONDS - t0)))")
  echo "   $verdict after $((SECONDS - t0)) s"
  return 0
}

# ---- the machine
{
  nvidia-smi || true
  nvcc --version || true
  compute-sanitizer --version || true
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' || true
  cmake --version | head -n1
} >"$LOG/machine.log" 2>&1
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .') || ARCH=""
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1) || GPU=""
if [[ -z "$ARCH" ]]; then
  echo "gpu_check: nvidia-smi reports no GPU; see $LOG/machine.log" >&2
  exit 1
fi
echo "gpu_check: $GPU (sm_$ARCH), logs in $LOG"

# ---- configure and build (only the CUDA targets)
cmake_args=(-S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH"
            -DVITIQ_BUILD_EXAMPLES=OFF -DVITIQ_BUILD_DOCS=OFF -DVITIQ_BUILD_BENCHMARKS=ON -DVITIQ_BUILD_TESTS=ON)
if [[ -d "$DEPS" ]]; then
  cmake_args+=(-DCMAKE_PREFIX_PATH="$DEPS")
  export PKG_CONFIG_PATH="$DEPS/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
step configure 120 cmake "${cmake_args[@]}"
step build 300 cmake --build "$BUILD" --target vitiq_cuda_tests vitiq-bench-cuda -j "$JOBS"
TESTS=$BUILD/tests/vitiq_cuda_tests
BENCH=$BUILD/benchmarks/vitiq-bench-cuda

if [[ -x "$TESTS" && -x "$BENCH" ]]; then
  # ---- correctness: per-op and whole-model agreement (prints the "cuda agreement" lines)
  step cuda_tests 240 env OMP_NUM_THREADS=4 "$TESTS" --durations yes
  # ---- memory errors: a short training run, then the small per-op tests, under memcheck
  step memcheck_train 150 compute-sanitizer --tool memcheck --error-exitcode 9 "$BENCH" --smoke
  step memcheck_ops 150 compute-sanitizer --tool memcheck --error-exitcode 9 "$TESTS" "[device]~[model]"
  # ---- speed: vitiq and PyTorch on the same card, same work, same batch sizes
  step bench_vitiq 150 "$BENCH" --json --iters "$ITERS"
  step bench_pytorch 150 "$PYTHON" "$ROOT/benchmarks/pytorch_gpu_peer.py" --iters "$ITERS"
else
  echo "gpu_check: the build produced no test or benchmark program; see $LOG/build.log" >&2
fi

# ---- the table
{
  echo "## GPU check on $GPU (sm_$ARCH), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo '```'
  printf '%s\n' "${SUMMARY[@]}"
  echo '```'
  echo
  echo "CPU/GPU agreement (float32, TF32 off; relative errors, see tests/cuda/test_cuda_model.cu):"
  echo
  echo '```'
  grep -h "^cuda agreement\|^cuda TF32\|^vitiq_cuda_tests: device\|test cases" "$LOG/cuda_tests.log" 2>/dev/null || echo "(no agreement lines: see cuda_tests.log)"
  echo '```'
  echo
  "$PYTHON" - "$LOG/bench_vitiq.log" "$LOG/bench_pytorch.log" <<'PY' || echo "(no benchmark table: see bench_vitiq.log, bench_pytorch.log)"
import json, sys
rows = {}
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        if line.startswith("{"):
            r = json.loads(line)
            rows.setdefault((r["preset"], r["work"], r["batch"]), {})[r["side"]] = r
print("| preset | work | batch | vitiq images/s | vitiq TFLOP/s | PyTorch images/s | PyTorch TFLOP/s | vitiq / PyTorch |")
print("|---|---|---|---|---|---|---|---|")
for (preset, work, batch), r in sorted(rows.items()):
    v, p = r.get("vitiq"), r.get("pytorch")
    f = lambda x, k, fmt: (fmt % x[k]) if x else "n/a"
    ratio = "%.2f" % (v["images_per_s"] / p["images_per_s"]) if v and p else "n/a"
    print(f"| {preset} | {work} | {batch} | {f(v, 'images_per_s', '%.0f')} | {f(v, 'tflops', '%.2f')} | "
          f"{f(p, 'images_per_s', '%.0f')} | {f(p, 'tflops', '%.2f')} | {ratio} |")
PY
  echo
  echo "float32, TF32 off on both sides; TFLOP/s counts the GEMM FLOPs of include/vitiq/model/flops.hpp."
  echo "Total time: $((SECONDS - START)) s"
} | tee "$LOG/table.md"

exit "$FAILED"
