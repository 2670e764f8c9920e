#!/usr/bin/env bash
# tests/programs/import_study.sh -- vitiq-import end to end: an original-layout study in, a study
# folder out that vitiq-train and vitiq-eval accept.
#
#   bash tests/programs/import_study.sh BIN_DIR
#
# Generates a small simulated study (vitiq-make-dataset: 3 observers, 32 x 32 stimuli, sessions
# 1..3, 4 = repeat of 1, 5 = common test set), lays its ratings out as the original project
# published them (Obs_iterative/Obs<N>/Obs<N>_<k>.csv, Obs<N>_4_selfacc.csv, Test/Obs<N>.csv,
# Dataset/Obs<N>.csv, plus an Obs0 that is no observer), imports it, checks the counts and the
# answers to a refused output folder and a bad option, then trains (preset tiny, one epoch) and
# evaluates on the imported folder. Registered with ctest from tests/CMakeLists.txt as
# programs.import_study.
set -uo pipefail
bin=$1
for p in vitiq-make-dataset vitiq-import vitiq-train vitiq-eval; do
  [ -x "$bin/$p" ] || { echo "import_study: $bin/$p not found" >&2; exit 2; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vitiq_import_study.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
failures=0
fail() { failures=$((failures + 1)); echo "FAIL: $*"; }
run() {  # run NAME COMMAND...: the command must exit 0; its output goes to $tmp/NAME.log
  local name=$1
  shift
  if ! "$@" >"$tmp/$name.log" 2>&1; then
    fail "$name exited non-zero"
    sed 's/^/    /' "$tmp/$name.log" | tail -n 20
    return 1
  fi
}

run make_dataset "$bin/vitiq-make-dataset" --out "$tmp/gen" --crop 32 --observers 3 --session-size 20 \
  --test-size 12 --threads 1 --quiet || { echo "import_study: $failures failure(s)"; exit 1; }

# The original layout from the long table (image,observer,session,vote,duration,timestamp).
orig=$tmp/orig
awk -F, -v root="$orig" '
  NR == 1 { next }
  {
    obs = "Obs" $2; line = $1 "," $4 "," $5 "," $6
    if ($3 <= 3) f = root "/Obs_iterative/" obs "/" obs "_" $3 ".csv"
    else if ($3 == 4) f = root "/Obs_iterative/" obs "/" obs "_4_selfacc.csv"
    else f = root "/Test/" obs ".csv"
    files[f] = files[f] line "\n"
    if ($3 <= 4) { d = root "/Dataset/" obs ".csv"; files[d] = files[d] line "\n" }
    if ($2 == 1 && $3 <= 3) { z = root "/Obs_iterative/Obs0/Obs0_" $3 ".csv"; files[z] = files[z] line "\n" }  # no observer
  }
  END {
    for (f in files) {
      dir = f; sub(/\/[^\/]*$/, "", dir)
      system("mkdir -p \"" dir "\"")
      printf "Image Name,Vote,Duration,Timestamp\n%s", files[f] > f
      close(f)
    }
  }' "$tmp/gen/ratings.csv"
[ -f "$orig/Test/Obs3.csv" ] && [ -f "$orig/Obs_iterative/Obs2/Obs2_4_selfacc.csv" ] && [ -f "$orig/Dataset/Obs1.csv" ] ||
  fail "the original layout was not written"

study=$tmp/study
if run import "$bin/vitiq-import" --ratings "$orig" --images "$tmp/gen/images" --out "$study"; then
  for f in ratings.csv split.csv import_report.json; do [ -s "$study/$f" ] || fail "import: $f missing"; done
  grep -q '^layout: original' "$tmp/import.log" || fail "import: layout not reported as original"
  want=$(($(wc -l <"$tmp/gen/ratings.csv") - 1))
  got=$(($(wc -l <"$study/ratings.csv") - 1))
  [ "$got" -eq "$want" ] || fail "import: $got votes written, the generated study has $want"
  grep -q '"test_session":5' "$study/import_report.json" || fail "import: the test set is not session 5"
  grep -q 'Obs0' "$study/import_report.json" || fail "import: the Obs0 files are not listed as skipped"
  # The test split is the common test set: exactly the generated study's test images.
  diff <(awk -F, '$3 == "test" { print $1 }' "$study/split.csv" | sort) \
       <(awk -F, '$3 == "test" { print $1 }' "$tmp/gen/split.csv" | sort) >/dev/null ||
    fail "import: the test split differs from the common test set"
  n_images=$(find "$study/images" -type l | wc -l)
  [ "$n_images" -eq $(($(wc -l <"$study/split.csv") - 1)) ] || fail "import: $n_images image links for $(($(wc -l <"$study/split.csv") - 1)) split rows"
fi

# A second import into the same folder is refused with one line and exit 1; a bad option: exit 2.
"$bin/vitiq-import" --ratings "$orig" --images "$tmp/gen/images" --out "$study" >/dev/null 2>"$tmp/err"
rc=$?
{ [ "$rc" -eq 1 ] && [ "$(grep -c . "$tmp/err")" -eq 1 ] && grep -q '^vitiq-import: .*not empty' "$tmp/err"; } ||
  fail "import into a non-empty folder: exit $rc, stderr '$(cat "$tmp/err")'"
"$bin/vitiq-import" --ratings "$orig" --images "$tmp/gen/images" --out "$tmp/x" --overlap=maybe >/dev/null 2>"$tmp/err"
rc=$?
{ [ "$rc" -eq 2 ] && [ "$(grep -c . "$tmp/err")" -eq 1 ] && [ ! -e "$tmp/x" ]; } ||
  fail "--overlap=maybe: exit $rc, stderr '$(cat "$tmp/err")'"
# A vote out of range: exit 1, one line naming file and line, nothing written.
cp -r "$orig" "$tmp/bad"
sed -i '3s/,[0-9],/,9,/' "$tmp/bad/Obs_iterative/Obs2/Obs2_2.csv"
"$bin/vitiq-import" --ratings "$tmp/bad" --images "$tmp/gen/images" --out "$tmp/y" >/dev/null 2>"$tmp/err"
rc=$?
{ [ "$rc" -eq 1 ] && grep -q '^vitiq-import: .*Obs2_2.csv:3: vote 9 outside 1..5$' "$tmp/err" && [ ! -e "$tmp/y" ]; } ||
  fail "a vote of 9: exit $rc, stderr '$(cat "$tmp/err")'"

# The imported folder trains and evaluates.
if [ -s "$study/split.csv" ]; then
  if run train "$bin/vitiq-train" --data "$study" --out "$tmp/runs" --preset tiny --mode pipeline --epochs 1 \
       --finetune-epochs 1 --crops 1 --batch 8 --probe-iterations 20 --threads 1 --jobs 1; then
    if run eval "$bin/vitiq-eval" --data "$study" --runs "$tmp/runs" --out "$tmp/report" --preset tiny --threads 1; then
      [ -s "$tmp/report/summary.json" ] || fail "eval: summary.json missing"
    fi
  fi
fi

if [ "$failures" -eq 0 ]; then echo "import_study: all checks passed"; else echo "import_study: $failures failure(s)"; exit 1; fi
