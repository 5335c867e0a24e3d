"""Stopping a run stops dbt the way dbt wants: SIGINT first, so it cancels its queries.

Real dbt on DuckDB with a model whose query would run for minutes. dbt cancels the
warehouse's open queries only on SIGINT (on SIGTERM it dies and, on Snowflake, the
query keeps running and billing), and prints "Exited because of keyboard interrupt".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_e2e_dbt import REPO, cli

pytestmark = pytest.mark.timeout(300)

DBT_CANCELLED = "Exited because of keyboard interrupt"
# A cross join DuckDB takes minutes over, on 2 cores.
SLOW_MODEL = "select sum(a.range * b.range) as total from range(200000000) a, range(100000) b\n"


def slow_project(root: Path) -> Path:
    project = root / "slow"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: slow\nversion: '1.0'\nconfig-version: 2\nprofile: slow\n")
    (project / "profiles.yml").write_text(
        "slow:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: slow.duckdb, threads: 1}\n"
    )
    (project / "models" / "slow_total.sql").write_text("{{ config(materialized='table') }}\n" + SLOW_MODEL)
    return project


def write_config(tmp_path: Path, timeout: str = "8s") -> Path:
    project = slow_project(tmp_path)
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "state_dir: state\n"
        "jobs:\n"
        "  slow:\n"
        "    schedule: '0 6 * * *'\n"
        f"    project_dir: {project}\n"
        f"    timeout: {timeout}\n"
        "    commands: ['dbt run']\n"
    )
    return config


def run_dirs(config: Path) -> list[Path]:
    return sorted((config.parent / "state" / "runs" / "slow").iterdir())


def dbt_processes(marker: Path) -> list[str]:
    """Live processes whose command line mentions `marker` (the job's project)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "dbt" in line and str(marker) in line]


def query_started(config: Path, attempt: int) -> bool:
    """The `attempt`-th run has started the slow model (dbt printed its START line)."""
    runs = run_dirs(config) if (config.parent / "state" / "runs" / "slow").is_dir() else []
    log = runs[-1] / "run.log" if len(runs) >= attempt else None
    return log is not None and log.is_file() and "slow_total" in log.read_text()


def test_timeout_sends_sigint_and_dbt_cancels_its_query(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for attempt in (1, 2):
        started = time.monotonic()
        done = cli(config, "run-now", "slow")
        elapsed = time.monotonic() - started
        assert done.returncode == 1, f"attempt {attempt}: {done.stdout}{done.stderr}"
        run = run_dirs(config)[-1]
        report = json.loads((run / "report.json").read_text())
        assert report["outcome"] == "timed_out", report
        log = (run / "run.log").read_text()
        assert DBT_CANCELLED in log, log[-2000:]  # dbt's own cancellation ran
        assert "did not stop within" not in log  # SIGINT was enough: no SIGTERM needed
        # Within seconds of the 8 s limit, not after the minutes the query would take.
        assert elapsed < 8 + 25, elapsed


def test_run_now_stops_dbt_and_records_cancelled_when_its_terminal_goes_away(tmp_path: Path) -> None:
    config = write_config(tmp_path, timeout="10m")
    for attempt in (1, 2):
        proc = subprocess.Popen(
            [sys.executable, "scheduler.py", "--config", str(config), "run-now", "slow"],
            cwd=REPO,
            env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not query_started(config, attempt):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.2)
            time.sleep(1)  # dbt has sent the query
            proc.send_signal(signal.SIGHUP)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert code == 1, proc.stdout.read()
        run = run_dirs(config)[-1]
        report = json.loads((run / "report.json").read_text())
        assert report["outcome"] == "cancelled"
        assert "SIGHUP" in report["reason"]
        assert DBT_CANCELLED in (run / "run.log").read_text()
        [row] = [r for r in json.loads(cli(config, "history", "--json").stdout) if r["run_id"] == run.name]
        assert row["outcome"] == "cancelled"
        assert dbt_processes(tmp_path / "slow") == []  # nothing left running unsupervised
