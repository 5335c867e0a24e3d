"""Fills a history.db for bench/web.py: RUNS runs spread over a year across the jobs of a
jobs.yaml (run through lib.history, so the schema is the daemon's), a few with a run folder
(report.json with nodes, run.log), and an admin token. Prints `WEB {"token": …, "run_ids": […]}`.

Usage: web_history.py REPO STATE_DIR JOBS RUNS
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, sys.argv[1])

from lib.clock import SystemClock
from lib.history import History
from lib.web.roles import Role
from lib.web.tokens import TokenStore

OUTCOMES = ["succeeded"] * 17 + ["failed", "skipped", "cancelled"]


def main() -> None:
    state, jobs, runs = Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
    history = History(state / "history.db")
    history.check()  # creates and migrates it
    rng = random.Random(11)
    now = datetime.now(UTC)
    rows = []
    for i in range(runs):
        job = jobs[i % len(jobs)]
        started = now - timedelta(days=365) * (1 - i / runs) - timedelta(seconds=rng.random() * 60)
        duration = rng.uniform(20, 600)
        outcome = rng.choice(OUTCOMES)
        rows.append(
            (
                f"{started:%Y%m%dT%H%M%SZ}-{i:06x}",
                job,
                "schedule" if i % 10 else "manual",
                "bench",
                started.isoformat(),
                (started + timedelta(seconds=duration)).isoformat(),
                duration,
                outcome,
                0 if outcome == "succeeded" else 1,
                json.dumps({"success": 20, "total": 20}),
            )
        )
    with history.transaction() as conn:
        conn.executemany(
            "INSERT INTO runs (run_id, job, trigger, triggered_by, started_at, finished_at, duration_s,"
            " outcome, exit_code, counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    # The newest run of a few jobs gets a folder like a real run's: what the run page reads.
    picked = [row for row in rows[-len(jobs) :]][:5]
    for row in picked:
        run_dir = state / "runs" / row[1] / row[0]
        run_dir.mkdir(parents=True)
        nodes = [
            {
                "unique_id": f"model.shop.m{n}",
                "name": f"m{n}",
                "resource_type": "model",
                "status": "success",
                "message": "OK",
                "failures": None,
                "execution_time": 0.4,
                "skipped_because": [],
                "command": 1,
                "compiled_path": None,
                "freshness": None,
            }
            for n in range(40)
        ]
        report = {
            "job": row[1],
            "run_id": row[0],
            "trigger": row[2],
            "triggered_by": "bench",
            "outcome": row[7],
            "started_at": row[4],
            "finished_at": row[5],
            "duration_s": row[6],
            "nodes": nodes,
        }
        (run_dir / "report.json").write_text(json.dumps(report))
        (run_dir / "run.log").write_text(
            "".join(f"12:00:{n % 60:02d}  {n} of 40 OK model m{n}\n" for n in range(400))
        )
        with history.transaction() as conn:
            conn.execute("UPDATE runs SET run_dir = ? WHERE run_id = ?", (str(run_dir), row[0]))
    token, _info = TokenStore(history, SystemClock()).create("bench", Role.ADMIN)
    print("WEB " + json.dumps({"token": token, "run_ids": [row[0] for row in picked], "jobs": len(jobs)}))


if __name__ == "__main__":
    main()
