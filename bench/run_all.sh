#!/usr/bin/env bash
# Runs the benchmarks one after the other (idle.py: local jobs, idle_ecs.py: ECS jobs on a
# moto server) and repeats their RESULT lines at the end.
#   bash bench/run_all.sh            full runs (about 37 minutes on 2 cores, retention.py 15 of them, soak.py 11)
#   bash bench/run_all.sh --quick    shorter runs (about 12 minutes)
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

# Each entry: a script name, then its own arguments.
benches=(overhead dispatch_latency alerts scale idle idle_ecs retention soak web)
results=()
status=0
for bench in "${benches[@]}"; do
  read -r -a words <<<"$bench"
  name=${words[0]}
  shown=("bench/$name.py" "${words[@]:1}" "${args[@]}")
  echo "=== ${shown[*]}"
  log=$(mktemp)
  "$python" "$here/$name.py" "${words[@]:1}" "${args[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep '^RESULT ' "$log" | tail -n 1)
  results+=("${line:-RESULT $bench no figures (exit $rc)}")
  ((rc == 0)) || status=1
  rm -f -- "$log"
  echo
done

echo "=== summary"
printf '%s\n' "${results[@]}"
exit "$status"
