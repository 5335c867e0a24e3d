"""The web API's read routes over the control socket (`scheduler.py api PATH`), from the
real daemon — without `web:` configured, so no HTTP server runs — and without one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.daemon_helpers import REPO, history_rows, running_daemon, stand_in_project, wait_for

PASSING_RUN = 'echo "[run_commands] STEP command 1/1: dbt build"\necho "[run_commands] EXIT 0"\nexit 0\n'


def api(config: Path, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), "api", path],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
    )


def test_the_api_read_routes_answer_over_the_socket(tmp_path: Path) -> None:
    project, script = stand_in_project(tmp_path, PASSING_RUN)
    config = tmp_path / "jobs.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"jobs:\n  tick: {{every: 2 seconds, project_dir: {project}}}\n"
        f"  other: {{schedule: '0 5 * * *', project_dir: {project}}}\n"
    )
    assert api(config, "/api/jobs").returncode == 5  # no daemon yet
    with running_daemon(
        config, tmp_path / "daemon.log", {"DBT_SCHEDULER_RUN_COMMANDS": str(script)}
    ) as daemon:
        wait_for(lambda: (tmp_path / "state" / "control.sock").exists(), 30, "the control socket")
        for _ in range(2):  # the app is built at the first read and kept
            jobs = api(config, "/api/jobs")
            assert jobs.returncode == 0, jobs.stderr
            listed = {job["name"]: job for job in json.loads(jobs.stdout)["jobs"]}
            assert set(listed) == {"tick", "other"} and listed["other"]["last_run"] is None
        wait_for(
            lambda: sum(r["outcome"] == "succeeded" for r in history_rows(tmp_path / "state")) >= 2,
            60,
            "2 runs",
        )
        runs = json.loads(api(config, "/api/jobs/tick/runs?limit=5&outcome=succeeded").stdout)["runs"]
        assert len(runs) >= 2 and {r["outcome"] for r in runs} == {"succeeded"}
        for run in runs[:2]:
            report = json.loads(api(config, f"/api/runs/{run['run_id']}").stdout)
            assert report["run_id"] == run["run_id"] and report["outcome"] == "succeeded"
            log = api(config, f"/api/runs/{run['run_id']}/log")
            assert log.returncode == 0 and "[run_commands] EXIT 0" in log.stdout
        missing = api(config, "/api/runs/20990101T000000Z-000000")
        assert missing.returncode == 1 and "404" in missing.stderr
        assert api(config, "/metrics").returncode == 1  # only /api/ routes, and only GET
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
