"""The real daemon with one slot and more runs due than it holds: a queue, no overlap, one row each.

Three jobs fire every 10 seconds and each run takes 2 s (a stand-in run script through
DBT_SCHEDULER_RUN_COMMANDS instead of dbt), so at each fire time two runs wait for the
slot. `status`, another process, shows them; a SIGTERM while two wait starts neither.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.daemon_helpers import REPO, history_rows, running_daemon, stand_in_project, wait_for

JOBS = ("j1", "j2", "j3")
EVERY = timedelta(seconds=10)

RUN_SCRIPT = """sleep 2
echo "[run_commands] EXIT 0"
"""


def queued(state: Path) -> list[dict]:
    """The daemon's queue as it last published it (what `status` reads)."""
    try:
        return json.loads((state / "queue.json").read_text())["queued"]
    except (OSError, ValueError, KeyError):
        return []


def status(config: Path) -> str:
    out = subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.timeout(240)
def test_one_slot_three_jobs_every_fire_time_one_row_no_overlap_and_status_shows_the_queue(
    tmp_path: Path,
) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "state_dir: state\nmax_parallel: 1\nshutdown_grace: 30s\njobs:\n"
        + "".join(f"  {job}:\n    every: 10 seconds\n    project_dir: {project}\n" for job in JOBS)
    )
    state = tmp_path / "state"
    log_path = tmp_path / "daemon.log"
    seen_queue = ""
    with running_daemon(config, log_path, env={"DBT_SCHEDULER_RUN_COMMANDS": str(script)}) as daemon:
        wait_for(lambda: "dbt-scheduler started" in log_path.read_text(), 30, "the daemon to start")

        def queue_shown() -> bool:
            nonlocal seen_queue
            seen_queue = status(config)
            return "oldest waiting" in seen_queue

        wait_for(queue_shown, 60, "`status` to show runs waiting for the slot")
        wait_for(
            lambda: len({r["scheduled_for"] for r in history_rows(state) if r["outcome"] != "running"}) >= 3,
            90,
            "three fire times",
        )
        # SIGTERM while one run holds the slot and two wait: neither of those may start.
        wait_for(lambda: len(queued(state)) == 2, 30, "two runs waiting in queue.json")
        stopped_at = datetime.now(UTC)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0

    assert "run(s) waiting for a free slot (max_parallel 1)" in seen_queue
    text = log_path.read_text()
    assert "for a free slot (max_parallel 1)" in text
    rows = history_rows(state)
    assert rows and all(r["outcome"] in {"succeeded", "skipped"} for r in rows), rows
    # Every fire time is one row per job: the same fire times for all three, on the 10 s grid.
    per_job = {job: sorted(r["scheduled_for"] for r in rows if r["job"] == job) for job in JOBS}
    fire_times = per_job["j1"]
    assert all(per_job[job] == fire_times for job in JOBS), per_job
    assert len(set(fire_times)) == len(fire_times) >= 3
    moments = [datetime.fromisoformat(f) for f in fire_times]
    assert all(b - a == EVERY for a, b in itertools.pairwise(moments)), fire_times
    # One slot: no two runs ever ran at the same time.
    ran = sorted(
        (datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"]))
        for r in rows
        if r["outcome"] == "succeeded"
    )
    assert len(ran) >= 2 * len(JOBS)
    assert all(start < stopped_at for start, _ in ran), (stopped_at, ran)  # nothing started after
    stopping = [r for r in rows if r["reason"] == "the scheduler was stopping"]
    assert stopping and all(r["scheduled_for"] == fire_times[-1] for r in stopping), stopping
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(ran)), ran
