#!/usr/bin/env bash
# benchmarks/compare.sh -- build the C++ side (vitiq-bench-compare, Release, -march=native) and run
# the vitiq vs PyTorch comparison (benchmarks/compare.py, Debian's /usr/bin/python3 + python3-torch).
#   bash benchmarks/compare.sh [BUILD_DIR] [compare.py options, e.g. --markdown out.md]
# BUILD_DIR defaults to build-bench. Takes 5-10 minutes on two cores; run it on a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-bench}
shift || true
[ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target vitiq-bench-compare -j2
exec /usr/bin/python3 "$root/benchmarks/compare.py" --bench "$build/benchmarks/vitiq-bench-compare" "$@"
