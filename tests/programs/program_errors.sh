#!/usr/bin/env bash
# tests/programs/program_errors.sh -- the programs answer bad input with one clear line.
#
#   bash tests/programs/program_errors.sh PROGRAM BIN_DIR TEST_DATA_DIR
#
# PROGRAM is train, eval, predict or make-dataset; BIN_DIR holds vitiq-PROGRAM; TEST_DATA_DIR is
# tests/data (tiny weights and a 32 x 32 image). For each case (a missing file, an unreadable image,
# a wrong preset for a weights file, a vote out of range, an empty data set, an unwritable output
# folder; those that apply to PROGRAM) the program must exit with a code in 1..125 (not a signal,
# not an abort), print exactly one line on stderr, starting "vitiq-PROGRAM: " and matching the
# case's pattern, and nothing that looks like a crash. Registered with ctest from
# tests/CMakeLists.txt as programs.<PROGRAM>_errors.
set -uo pipefail

prog=$1
bin=$2/vitiq-$prog
data=$3
[ -x "$bin" ] || { echo "program_errors: $bin not found" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vitiq_program_errors.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
failures=0
cases=0

# expect NAME PATTERN -- COMMAND...: run COMMAND, check the answer.
expect() {
  local name=$1 pattern=$2
  shift 3
  cases=$((cases + 1))
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$?
  local lines
  lines=$(grep -c . "$tmp/err")
  local why=""
  if [ "$rc" -eq 0 ]; then why="exit code 0"
  elif [ "$rc" -gt 125 ]; then why="exit code $rc (a signal or an abort)"
  elif [ "$lines" -ne 1 ]; then why="$lines non-empty lines on stderr, expected 1"
  elif [ "$(grep -c '' "$tmp/err")" -ne 1 ]; then why="blank lines on stderr"
  elif ! head -n 1 "$tmp/err" | grep -q "^vitiq-$prog: "; then why="stderr does not start with 'vitiq-$prog: '"
  elif ! grep -Eq -- "$pattern" "$tmp/err"; then why="stderr does not match /$pattern/"
  elif grep -Eqi 'terminate called|what\(\)|Aborted|Segmentation|AddressSanitizer|runtime error|stack trace' "$tmp/err"; then
    why="stderr looks like a crash"
  fi
  if [ -n "$why" ]; then
    failures=$((failures + 1))
    echo "FAIL vitiq-$prog $name: $why"
    echo "  command: $*"
    echo "  stderr:"; sed 's/^/    /' "$tmp/err" | head -n 20
  else
    echo "ok   vitiq-$prog $name (exit $rc): $(cat "$tmp/err")"
  fi
}

# --- fixtures --------------------------------------------------------------------------------
# A tiny study of 32 x 32 images (preset tiny): 6 stimuli, 2 observers, every split present.
make_study() {  # DIR
  local d=$1 i
  mkdir -p "$d/images"
  printf 'image,source,split\n' >"$d/split.csv"
  printf 'image,observer,session,vote\n' >"$d/ratings.csv"
  local names=(00000a_I1_Q5.png 00001b_I2_Q15.png 00002c_I3_Q22.png 00003d_I4_Q40.png 00004e_I5_Q80.png 00005f_I3_Q20.png)
  local splits=(train train train val test test)
  for i in "${!names[@]}"; do
    cp "$data/predict_tiny.png" "$d/images/${names[$i]}"
    printf '%s,%s,%s\n' "${names[$i]}" "src$i" "${splits[$i]}" >>"$d/split.csv"
    printf '%s,1,1,%d\n%s,2,1,%d\n' "${names[$i]}" $((i % 5 + 1)) "${names[$i]}" $(((i + 2) % 5 + 1)) >>"$d/ratings.csv"
  done
}
make_study "$tmp/study"
cp -r "$tmp/study" "$tmp/bad_image"  # one training and one test stimulus are not images
printf 'not an image at all' >"$tmp/bad_image/images/00001b_I2_Q15.png"
printf 'not an image at all' >"$tmp/bad_image/images/00004e_I5_Q80.png"
cp "$tmp/study/images/00000a_I1_Q5.png" "$tmp/truncated.png"; truncate -s 40 "$tmp/truncated.png"
cp -r "$tmp/study" "$tmp/bad_vote"; sed -i '3s/,[0-9]$/,7/' "$tmp/bad_vote/ratings.csv"
cp -r "$tmp/study" "$tmp/empty"; printf 'image,observer,session,vote\n' >"$tmp/empty/ratings.csv"
mkdir -p "$tmp/runs/observer_1" "$tmp/runs/observer_2" "$tmp/nothing"
cp "$data/predict_tiny.safetensors" "$tmp/runs/observer_1/best.safetensors"
cp "$data/predict_tiny.safetensors" "$tmp/runs/observer_2/best.safetensors"
printf 'a file, not a folder' >"$tmp/afile"
unwritable="$tmp/afile/out"  # below a regular file: no one can create it, root included
img=$data/predict_tiny.png
w=$data/predict_tiny.safetensors

# --- the cases -------------------------------------------------------------------------------
case $prog in
  train)
    common=(--preset tiny --epochs 1 --batch 4 --crops 1 --threads 1)
    expect missing_study 'nonexistent' -- "$bin" --data "$tmp/nonexistent" --out "$tmp/o1" "${common[@]}"
    expect unreadable_image '00001b_I2_Q15.png' -- "$bin" --data "$tmp/bad_image" --out "$tmp/o2" --mode all "${common[@]}"
    expect wrong_preset 'configuration field|preset' -- \
      "$bin" --data "$tmp/study" --out "$tmp/o3" --mode iterative --init "$w" --preset aio --epochs 1 --threads 1
    expect missing_init 'nonexistent.safetensors' -- \
      "$bin" --data "$tmp/study" --out "$tmp/o4" --mode iterative --init "$tmp/nonexistent.safetensors" "${common[@]}"
    expect vote_out_of_range 'ratings.csv:3: vote 7 outside 1..5' -- "$bin" --data "$tmp/bad_vote" --out "$tmp/o5" "${common[@]}"
    expect empty_study 'no ratings' -- "$bin" --data "$tmp/empty" --out "$tmp/o6" "${common[@]}"
    expect unwritable_output 'afile/out' -- "$bin" --data "$tmp/study" --out "$unwritable" "${common[@]}"
    ;;
  eval)
    common=(--preset tiny --threads 1)
    expect missing_study 'nonexistent' -- "$bin" --data "$tmp/nonexistent" --runs "$tmp/runs" --out "$tmp/r1" "${common[@]}"
    expect missing_runs 'nonexistent' -- "$bin" --data "$tmp/study" --runs "$tmp/nonexistent" --out "$tmp/r2" "${common[@]}"
    expect unreadable_image '00004e_I5_Q80.png' -- "$bin" --data "$tmp/bad_image" --runs "$tmp/runs" --out "$tmp/r3" "${common[@]}"
    expect wrong_preset 'preset aio' -- "$bin" --data "$tmp/study" --runs "$tmp/runs" --out "$tmp/r4" --preset aio --threads 1
    expect vote_out_of_range 'ratings.csv:3: vote 7 outside 1..5' -- \
      "$bin" --data "$tmp/bad_vote" --runs "$tmp/runs" --out "$tmp/r5" "${common[@]}"
    expect empty_study 'no ratings' -- "$bin" --data "$tmp/empty" --runs "$tmp/runs" --out "$tmp/r6" "${common[@]}"
    expect no_models 'no AIOs' -- "$bin" --data "$tmp/study" --runs "$tmp/nothing" --out "$tmp/r7" "${common[@]}"
    expect unwritable_output 'afile/out' -- "$bin" --data "$tmp/study" --runs "$tmp/runs" --out "$unwritable" "${common[@]}"
    ;;
  predict)
    expect missing_weights 'nonexistent.safetensors' -- "$bin" --preset tiny --weights "$tmp/nonexistent.safetensors" "$img"
    expect missing_image 'nonexistent.png' -- "$bin" --preset tiny --weights "$w" "$tmp/nonexistent.png"
    expect unreadable_image 'truncated.png' -- "$bin" --preset tiny --weights "$w" "$tmp/truncated.png"
    expect not_an_image 'afile' -- "$bin" --preset tiny --weights "$w" "$tmp/afile"
    expect wrong_preset 'configuration field' -- "$bin" --preset aio --weights "$w" "$img"
    expect weights_not_safetensors 'predict_tiny.png' -- "$bin" --preset tiny --weights "$img" "$img"
    expect no_images 'no IMAGE' -- "$bin" --preset tiny --weights "$w"
    if [ -w /dev/full ]; then
      expect unwritable_output 'standard output' -- sh -c '"$0" "$@" >/dev/full' "$bin" --preset tiny --weights "$w" "$img"
    fi
    ;;
  make-dataset)
    mkdir -p "$tmp/photos_bad" "$tmp/photos_empty" "$tmp/photos_ok"
    printf 'garbage' >"$tmp/photos_bad/broken.png"
    cp "$img" "$tmp/photos_ok/p.png"
    expect missing_photos 'nonexistent' -- "$bin" --photos "$tmp/nonexistent" --out "$tmp/m1" --quiet
    expect unreadable_image 'broken.png' -- "$bin" --photos "$tmp/photos_bad" --out "$tmp/m2" --quiet --threads 1
    expect empty_photos 'no image files' -- "$bin" --photos "$tmp/photos_empty" --out "$tmp/m3" --quiet
    expect unwritable_output 'afile/out' -- "$bin" --photos "$tmp/photos_ok" --out "$unwritable" --quiet --threads 1
    ;;
  *) echo "program_errors: unknown program '$prog'" >&2; exit 2 ;;
esac

echo "program_errors: vitiq-$prog: $((cases - failures)) of $cases cases answered with one clear line"
[ "$failures" -eq 0 ]
