"""The real daemon on a state_dir that fills up: it keeps scheduling, says so in one line per
failure (no traceback), records every fire time once space returns, and stops on SIGTERM
while the disk is full.

A real 1 MiB tmpfs (tests/disk_helpers.py) holds state_dir; a job fires every 2 seconds
and runs a stand-in script (DBT_SCHEDULER_RUN_COMMANDS) instead of dbt.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.daemon_helpers import REPO, history_rows, running_daemon, stand_in_project, wait_for
from tests.disk_helpers import fill, small_disk  # noqa: F401

RUN_SCRIPT = 'for i in $(seq 1 50); do echo "line $i of the run"; done\necho "[run_commands] EXIT 0"\n'
EVERY = timedelta(seconds=2)


def finished(state: Path) -> list[dict]:
    return [r for r in history_rows(state) if r["outcome"] != "running"]


@pytest.mark.timeout(300)
def test_a_full_state_dir_loses_no_fire_time_and_sigterm_stops_the_daemon(
    small_disk: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    state = small_disk / "state"
    config = tmp_path / "jobs.yaml"
    config.write_text(
        f"state_dir: {state}\njobs:\n  tick:\n    every: 2 seconds\n    project_dir: {project}\n"
    )
    env = {"DBT_SCHEDULER_RUN_COMMANDS": str(script)}

    for attempt in (1, 2):
        log_path = tmp_path / f"daemon{attempt}.log"
        with running_daemon(config, log_path, env=env) as daemon:
            before = len(finished(state))
            wait_for(lambda b=before: len(finished(state)) >= b + 2, 60, "two runs on a disk with room")
            filler = fill(small_disk)
            wait_for(
                lambda p=log_path: p.read_text().count("recorded when it can be") >= 2,
                60,
                "the daemon to say it kept runs it could not record",
            )
            shown = subprocess.run(
                [sys.executable, "scheduler.py", "--config", str(config), "status"],
                cwd=REPO, capture_output=True, text=True, timeout=60,
                env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
            )  # fmt: skip
            assert shown.returncode == 0 and "is full" in shown.stdout, shown.stdout + shown.stderr
            filler.unlink()
            wait_for(
                lambda p=log_path: "state_dir can be written again" in p.read_text(),
                60,
                "the pending rows to be written",
            )
            recorded = len(finished(state))
            wait_for(lambda r=recorded: len(finished(state)) >= r + 2, 60, "runs after space came back")
            if attempt == 2:
                fill(small_disk)  # SIGTERM while full: the daemon still stops, and says what is lost
                wait_for(
                    lambda p=log_path: p.read_text().count("recorded when it can be") >= 1,
                    60,
                    "a refused write",
                )
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=90) == 0
        text = log_path.read_text()
        assert "Traceback" not in text, text[-3000:]
        assert "dbt-scheduler stopped" in text
        if attempt == 2:
            (small_disk / "filler").unlink()

    rows = history_rows(state)
    assert all(r["outcome"] != "running" for r in rows)
    # Every fire time the daemon recorded is there once, and between the first and the last
    # of each daemon's life none is missing: the disk being full lost none of them.
    fires = sorted(datetime.fromisoformat(r["scheduled_for"]) for r in rows if r["scheduled_for"])
    assert len(fires) == len(set(fires))
    gaps = [b - a for a, b in itertools.pairwise(fires) if b - a != EVERY]
    assert len(gaps) <= 1, gaps  # one gap: the restart between the two daemons
    outcomes = {r["outcome"] for r in rows}
    assert "succeeded" in outcomes, outcomes
