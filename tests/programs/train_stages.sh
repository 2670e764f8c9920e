#!/usr/bin/env bash
# tests/programs/train_stages.sh -- vitiq-train's per-observer stages on a tiny study.
#
#   bash tests/programs/train_stages.sh BIN_DIR TEST_DATA_DIR
#
# Runs the pipeline (AIO0, then each observer's linear probe and session-by-session fine-tuning)
# on a 6-stimulus study of 32 x 32 images (preset tiny, one epoch) with --finetune-runs 2, and
# checks what it wrote: every observer folder holds the probe, both runs' session weights and the
# averaged best.safetensors; stages.csv lists the probe, run_1/ and run_2/ sessions and the
# average, one row marked selected. Then --final select: exactly one stage row selected and no
# average row. Registered with ctest from tests/CMakeLists.txt as programs.train_stages.
set -uo pipefail
bin=$1/vitiq-train
data=$2
[ -x "$bin" ] || { echo "train_stages: $bin not found" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vitiq_train_stages.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
failures=0
fail() { failures=$((failures + 1)); echo "FAIL: $*"; }

d=$tmp/study
mkdir -p "$d/images"
printf 'image,source,split\n' >"$d/split.csv"
printf 'image,observer,session,vote\n' >"$d/ratings.csv"
names=(00000a_I1_Q5.png 00001b_I2_Q15.png 00002c_I3_Q22.png 00003d_I4_Q40.png 00004e_I5_Q80.png 00005f_I3_Q20.png)
splits=(train train train val test test)
for i in "${!names[@]}"; do
  cp "$data/predict_tiny.png" "$d/images/${names[$i]}"
  printf '%s,%s,%s\n' "${names[$i]}" "src$i" "${splits[$i]}" >>"$d/split.csv"
  for obs in 1 2; do  # two sessions per observer
    printf '%s,%d,1,%d\n%s,%d,2,%d\n' "${names[$i]}" $obs $(((i + obs) % 5 + 1)) "${names[$i]}" $obs $(((i + 2 * obs) % 5 + 1)) >>"$d/ratings.csv"
  done
done

common=(--data "$d" --preset tiny --epochs 1 --finetune-epochs 1 --batch 4 --crops 1 --threads 1 --jobs 1)
if ! "$bin" "${common[@]}" --out "$tmp/avg" --finetune-runs 2 >"$tmp/avg.log" 2>&1; then
  fail "--finetune-runs 2 exited non-zero"; sed 's/^/    /' "$tmp/avg.log" | tail -n 20
fi
for obs in 1 2; do
  o=$tmp/avg/observer_$obs
  for f in probe.safetensors run_1/session_1/best.safetensors run_1/session_2/best.safetensors \
           run_2/session_1/best.safetensors run_2/session_2/best.safetensors best.safetensors stages.csv; do
    [ -s "$o/$f" ] || fail "observer $obs: $f missing"
  done
  [ -f "$o/stages.csv" ] || continue
  want=$'stage\nprobe\nrun_1/session_1\nrun_1/session_2\nrun_2/session_1\nrun_2/session_2\naverage'
  got=$(cut -d, -f1 "$o/stages.csv")
  [ "$got" = "$want" ] || fail "observer $obs: stages.csv rows are '$(echo $got)', expected '$(echo $want)'"
  [ "$(awk -F, 'NR > 1 && $4 == 1' "$o/stages.csv" | cut -d, -f1)" = average ] ||
    fail "observer $obs: the average row is not the one selected"
done
grep -q 'average of 5 stages (2 runs)' "$tmp/avg.log" || fail "the log does not say the 2 runs' stages were averaged"

if ! "$bin" "${common[@]}" --out "$tmp/sel" --final select >"$tmp/sel.log" 2>&1; then
  fail "--final select exited non-zero"; sed 's/^/    /' "$tmp/sel.log" | tail -n 20
fi
for obs in 1 2; do
  s=$tmp/sel/observer_$obs/stages.csv
  [ -f "$s" ] || { fail "observer $obs: stages.csv missing (select)"; continue; }
  [ "$(cut -d, -f1 "$s" | tr '\n' ' ')" = "stage probe session_1 session_2 " ] ||
    fail "observer $obs: select stages are '$(cut -d, -f1 "$s" | tr '\n' ' ')'"
  [ "$(awk -F, 'NR > 1 && $4 == 1' "$s" | wc -l)" -eq 1 ] || fail "observer $obs: not exactly one stage selected"
done

if [ "$failures" -eq 0 ]; then echo "train_stages: all checks passed"; else echo "train_stages: $failures failure(s)"; exit 1; fi
