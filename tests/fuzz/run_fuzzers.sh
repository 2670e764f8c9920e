#!/usr/bin/env bash
# tests/fuzz/run_fuzzers.sh -- a bounded run of every libFuzzer target (tests/fuzz/fuzz_*.cpp).
#
#   bash tests/fuzz/run_fuzzers.sh BUILD_DIR [SECONDS_EACH]     (default 10 s each)
#
# BUILD_DIR was configured with clang and -DVITIQ_BUILD_FUZZERS=ON (see tests/fuzz/CMakeLists.txt)
# and holds tests/fuzz/fuzz_<target>. Each target starts from its seeds (tests/fuzz/corpus/<target>/)
# and the inputs that once found bugs (tests/data/fuzz_regressions/<target>/), one process on one
# core, with limits that make an over-allocation or a hang a failure: -malloc_limit_mb (one
# allocation larger than that is a crash), -rss_limit_mb, -timeout per input. Exits non-zero when
# any target finds a crash, a leak, a sanitizer report, a hang or an over-allocation; the input and
# the report are printed (the input is kept under $VITIQ_FUZZ_ARTIFACTS, default BUILD_DIR/fuzz-artifacts).
# The mutation seed is fixed (VITIQ_FUZZ_SEED, default 1), so a run is reproducible: a slower machine
# runs a prefix of the same input sequence, and CI never fails on a finding another run missed. Set
# another seed (or run a target by hand for longer) to explore.
set -uo pipefail

build=${1:?usage: run_fuzzers.sh BUILD_DIR [SECONDS_EACH]}
seconds=${2:-10}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
artifacts=${VITIQ_FUZZ_ARTIFACTS:-$build/fuzz-artifacts}
work=$(mktemp -d "${TMPDIR:-/tmp}/vitiq_fuzz_corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"

failed=()
for target in safetensors checkpoint ratings_csv study image; do
  bin=$build/tests/fuzz/fuzz_$target
  if [ ! -x "$bin" ]; then
    echo "run_fuzzers: $bin is missing" >&2
    failed+=("$target(missing)")
    continue
  fi
  # The image target decodes images of up to 2^20 pixels (fuzz_targets.hpp); no parser may
  # allocate much more than its input or than that.
  case $target in
    image) limits=(-rss_limit_mb=2048 -malloc_limit_mb=256 -max_len=8192) ;;
    checkpoint) limits=(-rss_limit_mb=1024 -malloc_limit_mb=128 -max_len=65536) ;;
    *) limits=(-rss_limit_mb=1024 -malloc_limit_mb=128 -max_len=4096) ;;
  esac
  mkdir -p "$work/$target"
  seeds=("$root/tests/fuzz/corpus/$target")
  [ -d "$root/tests/data/fuzz_regressions/$target" ] && seeds+=("$root/tests/data/fuzz_regressions/$target")
  log=$work/$target.log
  OMP_NUM_THREADS=1 "$bin" -seed="${VITIQ_FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=10 "${limits[@]}" -print_final_stats=1 \
    -artifact_prefix="$artifacts/$target-" "$work/$target" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)
  if [ "$rc" -ne 0 ]; then
    failed+=("$target")
    echo "run_fuzzers: $target FAILED (exit $rc); the end of its log:"
    grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse|INITED)' "$log" | tail -n 60
  else
    echo "run_fuzzers: $target: ${runs:-?} executions in ${seconds} s, nothing found"
  fi
done

if ((${#failed[@]})); then
  echo "run_fuzzers: failures in: ${failed[*]} (inputs under $artifacts)"
  exit 1
fi
