# The soak benchmark's stand-in for docker/run_commands.sh (bench/soak.py points
# DBT_SCHEDULER_RUN_COMMANDS here): the local runner starts it as it would start dbt.
# It does a little "work" and reports success the way run_commands.sh does.
sleep "${SOAK_RUN_SECONDS:-0.5}"
echo "[run_commands] EXIT 0"
