"""The real daemon in a subprocess: real clock, real dbt on DuckDB, real SQLite, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.history import History

REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def history(config: Path) -> list[dict]:
    """What `history --json` prints (read straight from SQLite while jobs.yaml is broken)."""
    if config.read_text().count("fortnights"):
        return History(config.parent / "state" / "history.db").runs(limit=100)
    out = subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), "history", "--json", "--limit", "100"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.timeout(240)
def test_daemon_runs_records_reloads_and_stops(tmp_path: Path) -> None:
    config = tmp_path / "jobs.yaml"
    good = (
        "state_dir: state\n"
        "shutdown_grace: 20s\n"
        "jobs:\n"
        "  quick:\n"
        "    every: 5 seconds\n"
        f"    project_dir: {REPO / 'example'}\n"
        "    commands: ['dbt seed']\n"
    )
    config.write_text(good)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "scheduler.py", "--config", str(config), "run"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        )
    try:
        wait_for(lambda: "dbt-scheduler started" in log_path.read_text(), 30, "the daemon to start")
        # A second daemon on the same state_dir is refused, naming the first.
        second = subprocess.run(
            [sys.executable, "scheduler.py", "--config", str(config), "run"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "another dbt-scheduler daemon already runs" in second.stderr

        wait_for(lambda: sum(r["outcome"] == "succeeded" for r in history(config)) >= 2, 120, "two runs")
        # SIGHUP with a broken file: the daemon keeps its last good config and goes on.
        config.write_text(good.replace("every: 5 seconds", "every: 5 fortnights"))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the last good config" in log_path.read_text(), 30, "the failed reload")
        done_before = sum(r["outcome"] == "succeeded" for r in history(config))
        wait_for(
            lambda: sum(r["outcome"] == "succeeded" for r in history(config)) > done_before, 60, "another run"
        )
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log_path.read_text()
    assert "dbt-scheduler stopped" in text
    runs = history(config)
    assert {r["trigger"] for r in runs} == {"schedule"}
    assert all(r["outcome"] in {"succeeded", "skipped", "cancelled"} for r in runs), runs
    scheduled = sorted(r["scheduled_for"] for r in runs if r["outcome"] == "succeeded")
    # every 5 seconds on the epoch grid: each fire time a multiple of 5 s
    assert all(int(s[17:19]) % 5 == 0 for s in scheduled), scheduled
    for run in runs:
        if run["outcome"] == "succeeded":
            assert Path(run["log_path"]).is_file()
            assert (Path(run["log_path"]).parent / "report.json").is_file()
    assert not (tmp_path / "state" / "daemon.lock").read_text()  # released: holder cleared
