#!/usr/bin/env bash
# Runs the four benchmarks one after the other and repeats their RESULT lines at the end.
#   bash bench/run_all.sh            full runs (about 9 minutes on 2 cores)
#   bash bench/run_all.sh --quick    shorter runs (about 5 minutes)
# PYTHON=/path/to/python picks the interpreter (default: the repo's .venv).
# Exit status: 0 when every benchmark produced its figures (a FAIL against a target
# is a figure, not an error), 1 when one of them could not measure.
set -uo pipefail

here=$(cd -- "$(dirname -- "$0")" && pwd)
repo=$(dirname -- "$here")
python=${PYTHON:-$repo/.venv/bin/python}
if [[ ! -x $python ]]; then
  echo "run_all.sh: $python not found: run 'make venv' or set PYTHON" >&2
  exit 2
fi

args=()
for arg in "$@"; do
  case $arg in
    --quick) args+=(--quick) ;;
    *)
      echo "usage: $0 [--quick]" >&2
      exit 2
      ;;
  esac
done

results=()
status=0
for name in overhead dispatch_latency scale idle; do
  echo "=== bench/$name.py ${args[*]:-}"
  log=$(mktemp)
  "$python" "$here/$name.py" "${args[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep '^RESULT ' "$log" | tail -n 1)
  results+=("${line:-RESULT $name no figures (exit $rc)}")
  ((rc == 0)) || status=1
  rm -f -- "$log"
  echo
done

echo "=== summary"
printf '%s\n' "${results[@]}"
exit "$status"
