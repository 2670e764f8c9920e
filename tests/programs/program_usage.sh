#!/usr/bin/env bash
# tests/programs/program_usage.sh -- every program shares one command-line layer (CLI11 through
# examples/common/cli.hpp) and answers it the same way:
#
#   bash tests/programs/program_usage.sh PROGRAM BIN_DIR
#
# --help prints a help text on stdout and exits 0; an unknown option, an option without its value,
# a value that is not of the option's type and a value outside the option's choices each print
# exactly one line on stderr, "vitiq-PROGRAM: <what> (see --help)", and exit with code 2;
# `--opt=value` is the same as `--opt value` (checked on an option that then fails for another
# reason than usage: a folder that does not exist gives exit code 1, not 2). Registered with ctest
# from tests/CMakeLists.txt as programs.<PROGRAM>_usage.
set -uo pipefail

prog=$1
bin=$2/vitiq-$prog
[ -x "$bin" ] || { echo "program_usage: $bin not found" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vitiq_program_usage.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
failures=0
cases=0

# check NAME WANT_RC PATTERN -- COMMAND...: exit code WANT_RC; with WANT_RC 2 exactly one stderr
# line "vitiq-PROGRAM: ... (see --help)" matching PATTERN; with 0 a help text on stdout.
check() {
  local name=$1 want=$2 pattern=$3
  shift 4
  cases=$((cases + 1))
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$? why=""
  if [ "$rc" -ne "$want" ]; then why="exit code $rc, expected $want"
  elif [ "$want" -eq 0 ] && ! grep -q -- "$pattern" "$tmp/out"; then why="stdout does not contain '$pattern'"
  elif [ "$want" -ne 0 ] && [ "$(grep -c '' "$tmp/err")" -ne 1 ]; then why="$(grep -c '' "$tmp/err") lines on stderr, expected 1"
  elif [ "$want" -eq 2 ] && ! grep -Eq -- "^vitiq-$prog: .*$pattern.* \(see --help\)$" "$tmp/err"; then
    why="stderr does not match 'vitiq-$prog: ...$pattern... (see --help)'"
  elif [ "$want" -eq 1 ] && ! grep -Eq -- "^vitiq-$prog: .*$pattern" "$tmp/err"; then why="stderr does not match /$pattern/"
  fi
  if [ -n "$why" ]; then
    failures=$((failures + 1))
    echo "FAIL vitiq-$prog $name: $why"
    echo "  command: $*"
    sed 's/^/    stderr: /' "$tmp/err" | head -n 5
  else
    echo "ok   vitiq-$prog $name (exit $rc): $(head -n 1 "$tmp/err")"
  fi
}

missing=$tmp/nonexistent
check help 0 "--help" -- "$bin" --help
check unknown_option 2 "unknown option '--no-such-option'" -- "$bin" --no-such-option
case $prog in
  train)
    check missing_value 2 "--epochs" -- "$bin" --data "$missing" --out "$tmp/o" --epochs
    check bad_number 2 "--epochs" -- "$bin" --data "$missing" --out "$tmp/o" --epochs many
    check bad_choice 2 "--mode" -- "$bin" --data "$missing" --out "$tmp/o" --mode sometimes
    check bad_preset 2 "unknown preset 'huge'" -- "$bin" --data "$missing" --out "$tmp/o" --preset huge
    check equals_form 1 "nonexistent" -- "$bin" --data="$missing" --out="$tmp/o" --preset=tiny --epochs=1
    ;;
  eval)
    check missing_value 2 "--threads" -- "$bin" --data "$missing" --runs "$missing" --out "$tmp/o" --threads
    check bad_number 2 "--threads" -- "$bin" --data "$missing" --runs "$missing" --out "$tmp/o" --threads many
    check bad_choice 2 "--tta" -- "$bin" --data "$missing" --runs "$missing" --out "$tmp/o" --tta 3
    check bad_preset 2 "unknown preset 'huge'" -- "$bin" --data "$missing" --runs "$missing" --out "$tmp/o" --preset huge
    check equals_form 1 "nonexistent" -- "$bin" --data="$missing" --runs="$missing" --out="$tmp/o" --preset=tiny
    ;;
  predict)
    check missing_value 2 "--weights" -- "$bin" --weights
    check bad_preset 2 "unknown preset 'huge'" -- "$bin" --preset huge --weights "$missing" x.png
    check equals_form 1 "nonexistent" -- "$bin" --preset=tiny --weights="$missing" x.png
    ;;
  attention)
    check missing_value 2 "--weights" -- "$bin" --weights
    check bad_preset 2 "unknown preset 'huge'" -- "$bin" --preset huge --weights "$missing" x.png
    ;;
  make-dataset)
    check missing_value 2 "--crop" -- "$bin" --out "$tmp/o" --crop
    check bad_number 2 "--crop" -- "$bin" --out "$tmp/o" --crop wide
    check bad_split 2 "--split" -- "$bin" --out "$tmp/o" --split 1,2
    check equals_form 1 "nonexistent" -- "$bin" --out="$tmp/o" --photos="$missing" --quiet
    ;;
  import)
    check missing_value 2 "--ratings" -- "$bin" --images "$missing" --out "$tmp/o" --ratings
    check bad_choice 2 "--layout" -- "$bin" --ratings "$missing" --images "$missing" --out "$tmp/o" --layout weird
    check equals_form 1 "nonexistent" -- "$bin" --ratings="$missing" --images="$missing" --out="$tmp/o"
    ;;
  *) echo "program_usage: unknown program '$prog'" >&2; exit 2 ;;
esac
echo "program_usage: vitiq-$prog: $((cases - failures)) of $cases cases answered as the shared command line does"
[ "$failures" -eq 0 ]
