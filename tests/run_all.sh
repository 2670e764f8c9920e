#!/usr/bin/env bash
# tests/run_all.sh -- the project's whole check, as CI runs it (.ci/run): install what is missing
# (only when run as root), configure into build/, build everything, build the docs, run ctest.
# Exits non-zero on any failure.
#
#   bash tests/run_all.sh                  # everything except tests labelled `slow`
#   ctest --test-dir build -L slow         # afterwards: only the [slow] Catch2 tests
#   ctest --test-dir build                 # afterwards: every test
# Environment: VITIQ_BUILD_DIR (default: build), VITIQ_JOBS (default: nproc).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${VITIQ_BUILD_DIR:-build}
jobs=${VITIQ_JOBS:-$(nproc)}

# --- Debian packages -------------------------------------------------------------------------
bash cmake/install_debian_deps.sh

# --- configure, build, docs ------------------------------------------------------------------
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DVITIQ_BUILD_TESTS=ON -DVITIQ_BUILD_EXAMPLES=ON -DVITIQ_BUILD_BENCHMARKS=ON -DVITIQ_BUILD_DOCS=ON
cmake --build "$build" -j"$jobs"

if command -v doxygen >/dev/null; then
  cmake --build "$build" --target docs
  log="$build/docs/doxygen-warnings.log"
  [ -f "$log" ] && echo "run_all: docs in $build/docs/html ($(grep -c 'warning:' "$log" || true) Doxygen warnings, see $log)"
fi

# --- tests -----------------------------------------------------------------------------------
ctest_log="$build/ctest-run_all.log"
set +e
ctest --test-dir "$build" --output-on-failure -j2 -LE slow 2>&1 | tee "$ctest_log"
rc=${PIPESTATUS[0]}
set -e
summary=$(grep -E '[0-9]+% tests passed' "$ctest_log" | tail -n 1 || true)
echo "run_all: ctest (label 'slow' excluded): ${summary:-no summary line (ctest exit $rc)}"
exit "$rc"
