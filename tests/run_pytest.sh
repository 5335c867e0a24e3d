#!/usr/bin/env bash
# Runs the suite; pytest's exit code 5 ("no tests collected") is a failure, not a pass.
set -uo pipefail
python="${1:-python3}"
"$python" -m pytest "${@:2}"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: treating that as a failure" >&2
    exit 1
fi
exit "$rc"
