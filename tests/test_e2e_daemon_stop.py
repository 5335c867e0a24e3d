"""The real daemon stopped twice while real dbt runs a query that would take hours.

The first SIGTERM starts the shutdown grace (ten minutes here); the second must cut it
short: the daemon's loop thread cancels the run (its process group is stopped), history
records it cancelled, and the daemon exits 0 long before the grace would have ended.
The signal handlers only set flags (lib/daemon.py), so the second SIGTERM cannot
deadlock on a lock the interrupted shutdown holds.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.daemon_helpers import history_rows, running_daemon, wait_for

# DuckDB joins a million rows with a million: about 10^12 rows, hours on two cores.
FOREVER_SQL = """\
{{ config(materialized='table') }}
select sum((a.range * b.range) % 7) as total
from range(1000000) as a, range(1000000) as b
"""


def slow_project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        'name: slow\nversion: "1.0.0"\nprofile: slow\nmodel-paths: ["models"]\n'
        "flags:\n  send_anonymous_usage_stats: false\n"
    )
    (root / "profiles.yml").write_text(
        "slow:\n  target: dev\n  outputs:\n"
        "    dev:\n      type: duckdb\n      path: slow.duckdb\n      threads: 1\n"
    )
    (root / "models" / "forever.sql").write_text(FOREVER_SQL)
    return root


@pytest.mark.timeout(240)
def test_second_sigterm_cuts_the_grace_short_and_records_the_run_cancelled(tmp_path: Path) -> None:
    project = slow_project(tmp_path / "slow")
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "state_dir: state\n"
        "shutdown_grace: 10m\n"
        "jobs:\n"
        "  forever:\n"
        "    every: 10 seconds\n"
        f"    project_dir: {project}\n"
        "    commands: ['dbt run']\n"
    )
    state = tmp_path / "state"
    log_path = tmp_path / "daemon.log"
    with running_daemon(config, log_path) as daemon:

        def query_running() -> bool:
            rows = [r for r in history_rows(state) if r["outcome"] == "running"]
            run_log = Path(rows[0]["run_dir"]) / "run.log" if rows else None
            return (
                run_log is not None and run_log.is_file() and "START sql table model" in run_log.read_text()
            )

        wait_for(query_running, 120, "dbt to start the model's query")
        daemon.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping: waiting up to 600s" in log_path.read_text(), 30, "the shutdown grace")
        daemon.send_signal(signal.SIGTERM)
        # A hang guard, not a timing: the grace alone would keep the daemon for ten minutes.
        assert daemon.wait(timeout=120) == 0
    log = log_path.read_text()
    assert "second stop request, cancelling running jobs now" in log
    assert "dbt-scheduler stopped" in log
    ran = [r for r in history_rows(state) if r["outcome"] != "skipped"]
    assert [(r["job"], r["outcome"]) for r in ran] == [("forever", "cancelled")], log[-3000:]
    assert ran[0]["finished_at"] is not None
