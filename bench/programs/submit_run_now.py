"""bench/dispatch_latency.py's submitter: run-now requests straight to the daemon's control socket.

Usage: submit_run_now.py REPO STATE_DIR JOB COUNT GAP_S OUT. COUNT times: note the time,
connect to <STATE_DIR>/control.sock, send a run-now of JOB without following it, read the
answer; append `RUN_ID SUBMITTED_AT` (or `refused CODE`) to OUT; wait GAP_S seconds. No
scheduler.py start-up is timed: latency is what the control plane and dispatch add.
Prints `SUBMITTED {"accepted": N, "refused": M}`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

repo, state_dir, job, count, gap, out = sys.argv[1:7]
sys.path.insert(0, repo)
from lib.control_socket import ask  # noqa: E402

accepted = refused = 0
with open(out, "a", encoding="ascii") as lines:
    for _ in range(int(count)):
        submitted = time.time()
        answer = ask(Path(state_dir), {"op": "run-now", "job": job, "follow": False})
        first = next(answer, None) if answer is not None else None
        if first is not None and first.get("event") == "accepted":
            accepted += 1
            lines.write(f"{first['run_ids'][0]} {submitted:.6f}\n")
        else:
            refused += 1
            lines.write(f"refused {first.get('code') if first else 'no-daemon'}\n")
        lines.flush()
        time.sleep(float(gap))
print("SUBMITTED " + json.dumps({"accepted": accepted, "refused": refused}))
