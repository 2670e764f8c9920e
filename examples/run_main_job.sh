#!/usr/bin/env bash
# examples/run_main_job.sh -- the main job on a fresh Debian 12 machine: install what is missing,
# configure, build, and run.
#
# For now (until the per-observer training programs land) the main job runs vitiq-predict on the
# bundled 32x32 test image with the bundled `tiny` weights (random weights written by the PyTorch
# reference, tests/reference/make_golden.py), printing logits, probabilities, the arg-max vote and
# the expected vote.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${VITIQ_BUILD_DIR:-build}
bash cmake/install_debian_deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DVITIQ_BUILD_EXAMPLES=ON
cmake --build "$build" -j"$(nproc)" --target vitiq-predict
"$build/examples/vitiq-predict" --preset tiny --weights tests/data/predict_tiny.safetensors \
  tests/data/predict_tiny.png tests/data/predict_tiny_resize.png
