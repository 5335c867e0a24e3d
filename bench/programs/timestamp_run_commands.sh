#!/usr/bin/env bash
# bench/overhead.py's breakdown run: runs the real run_commands.sh ($BENCH_REAL_SCRIPT) and
# appends "line <epoch seconds> <line>" for each output line to $BENCH_TIMES_FILE, passing
# the line through unchanged (the runner parses the markers).
times=$BENCH_TIMES_FILE
printf 'spawn %s\n' "${EPOCHREALTIME/,/.}" >>"$times"
bash "$BENCH_REAL_SCRIPT" 2>&1 | while IFS= read -r line; do
  printf '%s\n' "$line"
  printf 'line %s %s\n' "${EPOCHREALTIME/,/.}" "$line" >>"$times"
done
rc=${PIPESTATUS[0]}
printf 'exit %s\n' "${EPOCHREALTIME/,/.}" >>"$times"
exit "$rc"
