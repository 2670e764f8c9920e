#!/usr/bin/env bash
# examples/make_attention_figure.sh -- regenerate the figures of docs/attention.md:
#   docs/images/attention_comparison.png  AIO comparison (deviation from the mean rollout map)
#   docs/images/attention_layers.png      per-block maps, rollout and gradient rollout of AIO0
#   docs/images/attention_check.png       attention inside a region before / after JPEG q = 5
# from scratch: the default study (vitiq-make-dataset), a short training of AIO0 and the five
# per-observer AIOs (vitiq-train, preset aio, 3 + 4 x 1 epochs; about 15 minutes on one core),
# then vitiq-attention on four high-quality (band I5) stimuli of four contents.
#
# usage: bash examples/make_attention_figure.sh [BUILD_DIR [WORK_DIR]]
#   BUILD_DIR  a configured build folder (default: build); the three programs are built in it
#   WORK_DIR   study, runs and the program's full output (default: $TMPDIR/vitiq-attention-figure);
#              an existing study or finished training there is reused
#   THREADS    environment: threads for the dataset builder and training (default: all cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=${2:-${TMPDIR:-/tmp}/vitiq-attention-figure}
threads=${THREADS:-$(nproc)}
export OMP_NUM_THREADS=$threads

cmake --build "$build" --target vitiq-make-dataset vitiq-train vitiq-attention
bin=$build/examples
mkdir -p "$work"
[ -f "$work/study/ratings.csv" ] || "$bin/vitiq-make-dataset" --out "$work/study" --threads "$threads" --quiet
observers=(observer_1 observer_2 observer_3 observer_4 observer_5)
[ -f "$work/runs/${observers[-1]}/best.safetensors" ] ||
  "$bin/vitiq-train" --data "$work/study" --out "$work/runs" --mode pipeline --preset aio \
    --epochs 3 --finetune-epochs 1 --seed 1 --threads "$threads"

# Four stimuli rated high (band I5, the mildest compression) of different contents: the ones
# the documentation shows, or the first I5 stimulus of that content when the study differs.
images=()
for want in 00555astronaut_I5_Q98 00585hubble_I5_Q100 00021chelsea_I5_Q87 00146motorcycle_I5_Q96; do
  f=$work/study/images/$want.jpeg
  content=$(echo "$want" | sed 's/^[0-9]*//; s/_I5_.*//')
  [ -f "$f" ] || f=$(ls "$work"/study/images/*"$content"_I5_*.jpeg 2>/dev/null | head -n 1 || true)
  # A study without that content: the next band-I5 stimulus not chosen yet.
  [ -n "$f" ] || f=$(ls "$work"/study/images/*_I5_*.jpeg | grep -v -F -x -f <(printf '%s\n' "${images[@]:-}") | head -n 1)
  images+=("$f")
done
weights=(--weights "$work/runs/aio0/best.safetensors")
for o in "${observers[@]}"; do weights+=(--weights "$work/runs/$o/best.safetensors"); done

"$bin/vitiq-attention" --preset aio "${weights[@]}" --out "$work/figure" \
  --region 80,80,96,96 --change jpeg:5 "${images[@]}"

mkdir -p "$root/docs/images"
cp "$work/figure/comparison.png" "$root/docs/images/attention_comparison.png"
cp "$work/figure/aio0/$(basename "${images[0]}" .jpeg)_layers.png" "$root/docs/images/attention_layers.png"
cp "$work/figure/check.png" "$root/docs/images/attention_check.png"
echo "figures written to $root/docs/images (full output in $work/figure)"
