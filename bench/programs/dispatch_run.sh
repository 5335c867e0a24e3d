# bench/dispatch_latency.py's stand-in for docker/run_commands.sh (DBT_SCHEDULER_RUN_COMMANDS
# points here). It must stay this small: anything before `date` would count as latency.
date +%s.%N >"$BENCH_STARTS/$DBT_SCHEDULER_RUN_ID"
echo "[run_commands] EXIT 0"
