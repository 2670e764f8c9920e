#!/usr/bin/env bash
# examples/run_main_job.sh -- the main job on a fresh Debian 12 machine: install what is missing,
# configure, build, then the end-to-end per-observer demo on the default data:
#   1. vitiq-make-dataset: the default study (real photos from Debian's scikit-image data, JPEG
#      stimuli over five quality bands, five simulated observers calibrated to the real ones,
#      ground truth with each observer's Bayes ceiling and Q look-up baseline)
#   2. vitiq-train --mode pipeline: AIO0 on all training stimuli (band labels), then one AIO per
#      observer: its head fitted on AIO0's features (linear probe), then fine-tuned from AIO0
#      session by session, its stages (probe, sessions) averaged into one model; observers train
#      in parallel, one per core (preset `aio`, 64-pixel native crops on the JPEG grid, predictions
#      averaged over the 16 tiles of a stimulus; training crops lose a random share of their
#      colour, --desaturate 1, so that colourfulness is no shortcut for the compression level:
#      see docs/workflow.md). AIO0 is validated only after its last epoch
#      (--val-every 30), so the model kept is the end of the cosine schedule: its validation split
#      holds one or two scenes, and choosing an earlier epoch on them can choose an under-trained
#      model.
#   3. vitiq-eval: per-AIO metrics on the test split beside the baselines (Q look-up, majority,
#      self-agreement, Bayes ceiling), cross-comparison, panel, CSV/JSON and PNG figures
# Environment: VITIQ_BUILD_DIR (build), VITIQ_WORK_DIR (main_job), VITIQ_SEED (1), VITIQ_GEMM (blas where built, else eigen),
# VITIQ_TRAIN_ARGS (extra vitiq-train flags, e.g. "--epochs 40").
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${VITIQ_BUILD_DIR:-build}
work=${VITIQ_WORK_DIR:-main_job}
seed=${VITIQ_SEED:-1}
start=$(date +%s)
bash cmake/install_debian_deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DVITIQ_BUILD_EXAMPLES=ON
cmake --build "$build" -j"$(nproc)" --target vitiq-make-dataset vitiq-train vitiq-eval
bin="$build/examples"
# GEMMs on OpenBLAS with its own kernel choice where the build has vitiq::blas (20-25 % faster
# training on these machines, benchmarks/RESULTS.md); VITIQ_GEMM=eigen in the environment keeps Eigen.
if grep -q '^VITIQ_HAS_BLAS:INTERNAL=ON' "$build/CMakeCache.txt"; then
  export VITIQ_GEMM=${VITIQ_GEMM:-blas}
  unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
fi
stamp() { echo "main job: $1 after $(( $(date +%s) - start )) s"; }
stamp "built"
"$bin/vitiq-make-dataset" --out "$work/study" --seed "$seed"
stamp "data set in $work/study"
# shellcheck disable=SC2086
"$bin/vitiq-train" --data "$work/study" --out "$work/runs" --mode pipeline --preset aio --seed "$seed" \
  --epochs 30 --crops 2 --finetune-epochs 3 --val-every 30 --desaturate 1 ${VITIQ_TRAIN_ARGS:-}
stamp "models in $work/runs"
"$bin/vitiq-eval" --data "$work/study" --runs "$work/runs" --out "$work/report" --preset aio
stamp "done; the report is in $work/report (summary.json, per_aio.csv, figures *.png)"
