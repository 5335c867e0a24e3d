"""A daemon killed with kill -9 leaves no dbt running unsupervised and no row dishonest.

Real daemon, real bash + dbt on DuckDB with a query that runs for minutes. The run's
process group outlives the killed daemon and keeps the job lock it inherited, so a
`run-now` meanwhile is skipped; the restarted daemon stops it through the SIGINT path
and records it `cancelled`, and scheduling goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lib import procs
from lib.orphans import ORPHAN_REASON
from tests.daemon_helpers import history_rows, running_daemon, wait_for
from tests.test_e2e_cancel import slow_project
from tests.test_e2e_dbt import REPO, cli

pytestmark = pytest.mark.timeout(600)


def write_config(tmp_path: Path) -> Path:
    project = slow_project(tmp_path)
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "state_dir: state\n"
        "jobs:\n"
        "  slow:\n"
        "    every: 5 seconds\n"
        f"    project_dir: {project}\n"
        "    timeout: 10m\n"
        "    commands: ['dbt run']\n"
        "  short:\n"
        "    schedule: '0 6 1 1 *'\n"
        f"    project_dir: {project}\n"
        "    timeout: 8s\n"
        "    commands: ['dbt run']\n"
    )
    return config


def slow_query_running(state: Path) -> dict | None:
    """The `slow` row that is running with its process recorded and dbt inside the query."""
    for row in history_rows(state):
        if row["job"] == "slow" and row["outcome"] == "running" and row["process_pid"]:
            log = Path(row["run_dir"]) / "run.log"
            if log.is_file() and "slow_total" in log.read_text():
                return row
    return None


def test_kill_9_leaves_the_run_locked_and_a_restart_stops_it_and_goes_on(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"
    stopped: list[str] = []
    for attempt in (1, 2):
        with running_daemon(config, tmp_path / f"daemon{attempt}.log") as daemon:
            if stopped:  # the previous attempt's orphan is stopped by this daemon
                wait_for(
                    lambda: all(
                        r["outcome"] != "running" for r in history_rows(state) if r["run_id"] in stopped
                    ),
                    120,
                    "the restarted daemon to stop the orphan",
                )
                row = next(r for r in history_rows(state) if r["run_id"] == stopped[-1])
                # dbt got SIGINT (it cancels its queries) and stopped on it: no SIGTERM needed
                assert (row["outcome"], row["reason"]) == ("cancelled", ORPHAN_REASON.format(signal="SIGINT"))
                assert not procs.group_alive(row["process_pid"])
            # The next fire runs normally: a new run starts dbt's query.
            wait_for(lambda: slow_query_running(state) is not None, 180, "a slow run to be in its query")
            running = slow_query_running(state)
            assert running is not None and running["run_id"] not in stopped
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait()
        # The orphan lives on, unsupervised for now, and holds the job lock.
        assert procs.same_process(running["process_pid"], running["process_start"])
        group = subprocess.run(
            ["ps", "-o", "pid,stat,args", "-g", str(running["process_pid"])], capture_output=True, text=True
        ).stdout
        assert "dbt run" in group, group + (Path(running["run_dir"]) / "run.log").read_text()
        skipped = cli(config, "run-now", "slow")
        assert "previous run still running" in skipped.stdout + skipped.stderr, skipped
        stopped.append(running["run_id"])

    # A last restart stops the second orphan too; then a clean SIGTERM stop.
    with running_daemon(config, tmp_path / "daemon3.log") as daemon:
        wait_for(
            lambda: all(r["outcome"] != "running" for r in history_rows(state) if r["run_id"] in stopped),
            120,
            "the orphan of attempt 2 to be stopped",
        )
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
    rows = history_rows(state)
    assert {r["outcome"] for r in rows if r["run_id"] in stopped} == {"cancelled"}
    assert all(r["outcome"] != "running" for r in rows)
    # No bash or dbt of any run is left: each run was its own process group.
    assert not any(procs.group_alive(r["process_pid"]) for r in rows if r["process_pid"])
    # Every fire time ends as exactly one row.
    fires = [(r["job"], r["scheduled_for"]) for r in rows if r["scheduled_for"]]
    assert len(fires) == len(set(fires))


def test_a_daemon_starting_leaves_a_run_now_of_another_shell_to_end_with_its_own_outcome(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("every: 5 seconds", "schedule: '0 6 1 1 *'"))
    state = tmp_path / "state"
    for attempt in (1, 2):
        run_now = subprocess.Popen(
            [sys.executable, "scheduler.py", "--config", str(config), "run-now", "short"],
            cwd=REPO,
            env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: any(r["job"] == "short" and r["outcome"] == "running" for r in history_rows(state)),
                60,
                "the run-now to start",
            )
            log_path = tmp_path / f"daemon{attempt}.log"
            with running_daemon(config, log_path) as daemon:
                wait_for(
                    lambda p=log_path: "dbt-scheduler started" in p.read_text(), 60, "the daemon to start"
                )
                [row] = [r for r in history_rows(state) if r["job"] == "short" and r["outcome"] == "running"]
                assert run_now.wait(timeout=120) == 1  # its own end: the 8 s timeout
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
        finally:
            if run_now.poll() is None:
                os.killpg(run_now.pid, signal.SIGKILL)
                run_now.wait()
        [ended] = [r for r in history_rows(state) if r["run_id"] == row["run_id"]]
        assert ended["outcome"] == "timed_out", ended
