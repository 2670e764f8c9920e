#!/usr/bin/env bash
# tests/programs/predict_matches_eval.sh -- vitiq-predict scores a stimulus as vitiq-eval does.
#
#   bash tests/programs/predict_matches_eval.sh PROGRAM_DIR
#
# PROGRAM_DIR holds vitiq-make-dataset, vitiq-train, vitiq-eval and vitiq-predict. Makes a small
# study (64-pixel stimuli, 2 observers), trains tiny AIOs very briefly (pipeline mode, one epoch
# each), evaluates them, then scores 20 test stimuli of observer 1's AIO with
# `vitiq-predict --json` and compares every probability, the expected vote and the arg-max with
# that AIO's rows of the report's predictions.csv (17 significant digits), within 1e-6:
#   1. with no flag but --weights: the preset and the view come from the model card vitiq-train
#      wrote (native tiles, the card's symmetries), against `vitiq-eval --tta <card's symmetries>`;
#   2. with --preset tiny --view tiles --symmetries 2, against `vitiq-eval --tta 2`.
# Also checks the "view" and "views" keys, and that --view resize is a different view (1 view).
# About 10 s on one core. Registered with ctest from tests/CMakeLists.txt as
# programs.predict_matches_eval.
set -euo pipefail

bin=$(cd "$1" && pwd)
for p in make-dataset train eval predict; do
  [ -x "$bin/vitiq-$p" ] || { echo "predict_matches_eval: $bin/vitiq-$p not found" >&2; exit 2; }
done
python=/usr/bin/python3
[ -x "$python" ] || python=python3

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vitiq_predict_matches_eval.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
cd "$tmp"

run() {  # LOG COMMAND...: run quietly, show the log when it fails
  local log=$1
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "FAIL: $*" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
}

run make.log "$bin/vitiq-make-dataset" --out study --crop 64 --observers 2 --sessions 1 --session-size 40 \
  --test-size 20 --threads 1 --quiet
run train.log "$bin/vitiq-train" --data study --out runs --preset tiny --mode pipeline --epochs 1 --finetune-epochs 1 \
  --crops 1 --probe-iterations 20 --threads 1 --jobs 1
weights=runs/observer_1/best.safetensors
[ -f "$weights" ] || { echo "FAIL: vitiq-train wrote no $weights" >&2; exit 1; }

# The card's symmetries (the test-time views vitiq-train chose), read from the safetensors header.
card_sym=$("$python" - "$weights" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    meta = json.loads(f.read(n)).get("__metadata__", {})
if "card.version" not in meta:
    sys.exit("FAIL: %s has no model card (card.* metadata): vitiq-train must write one" % sys.argv[1])
print(meta["card.symmetries"])
EOF
)
run eval_card.log "$bin/vitiq-eval" --data study --runs runs --out report_card --preset tiny --tta "$card_sym" --threads 1
run eval_tta2.log "$bin/vitiq-eval" --data study --runs runs --out report_tta2 --preset tiny --tta 2 --threads 1

# 20 test stimuli of observer 1's AIO, as the report lists them.
mapfile -t images < <(awk -F, 'NR > 1 && $1 == "observer_1" { print "study/images/" $3 }' report_card/predictions.csv | head -n 20)
[ "${#images[@]}" -eq 20 ] || { echo "FAIL: ${#images[@]} test stimuli of observer_1 in predictions.csv, expected 20" >&2; exit 1; }

"$bin/vitiq-predict" --weights "$weights" --json "${images[@]}" >card.jsonl 2>card.err ||
  { echo "FAIL: vitiq-predict (card defaults)" >&2; cat card.err >&2; exit 1; }
if [ -s card.err ]; then echo "FAIL: vitiq-predict with a carded file wrote to stderr:" >&2; cat card.err >&2; exit 1; fi
"$bin/vitiq-predict" --weights "$weights" --preset tiny --view tiles --symmetries 2 --json "${images[@]}" >tta2.jsonl
"$bin/vitiq-predict" --weights "$weights" --view resize --json "${images[0]}" >resize.jsonl

"$python" - "$card_sym" <<'EOF'
import csv, json, os, sys

card_sym = int(sys.argv[1])
tol = 1e-6
views_per_sym = (64 // 32) ** 2  # 64-pixel stimuli, 32-pixel tiles of preset tiny
failures = 0

def check(jsonl, report, sym, what):
    global failures
    rows = {r["image"]: r for r in csv.DictReader(open(report + "/predictions.csv")) if r["aio"] == "observer_1"}
    worst, n = 0.0, 0
    for line in open(jsonl):
        out = json.loads(line)
        name = os.path.basename(out["image"])
        row = rows[name]
        K = len(out["probabilities"])
        ref = [float(row["p_%d" % (k + 1)]) for k in range(K)]
        diffs = [abs(a - b) for a, b in zip(out["probabilities"], ref)]
        diffs.append(abs(out["expected_vote"] - float(row["expected_vote"])))
        worst = max(worst, max(diffs))
        n += 1
        if max(diffs) > tol:
            failures += 1
            print("FAIL %s %s: predict %s, eval %s" % (what, name, out["probabilities"], ref))
        if out["class"] != int(row["predicted_vote"]):
            failures += 1
            print("FAIL %s %s: class %d, eval's predicted_vote %s" % (what, name, out["class"], row["predicted_vote"]))
        if out["view"] != "native_tiles" or out["views"] != views_per_sym * sym:
            failures += 1
            print("FAIL %s %s: view %s with %d views, expected native_tiles with %d" %
                  (what, name, out["view"], out["views"], views_per_sym * sym))
    if n != 20:
        failures += 1
        print("FAIL %s: %d images scored, expected 20" % (what, n))
    print("%s: %d stimuli, largest difference to predictions.csv %.3g (limit %g)" % (what, n, worst, tol))

check("card.jsonl", "report_card", card_sym, "card defaults (symmetries %d)" % card_sym)
check("tta2.jsonl", "report_tta2", 2, "--view tiles --symmetries 2")
r = json.loads(open("resize.jsonl").readline())
if r["view"] != "resize" or r["views"] != 1:
    failures += 1
    print("FAIL --view resize: view %s with %d views" % (r["view"], r["views"]))
sys.exit(1 if failures else 0)
EOF
echo "predict_matches_eval: vitiq-predict agrees with vitiq-eval's predictions.csv"
