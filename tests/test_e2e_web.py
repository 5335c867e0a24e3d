"""The web API end to end: the real daemon (`scheduler.py run` with `web.listen`), real HTTP
over loopback (urllib), a token made by `scheduler.py token create`, and a stand-in for
docker/run_commands.sh (no dbt: these tests are about the server and the queue)."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_helpers import REPO, history_rows, running_daemon, stand_in_project, wait_for

pytestmark = pytest.mark.timeout(180)

RUN_SCRIPT = """echo "[run_commands] STEP command 1/1: dbt build"
for i in 1 2 3 4 5 6; do echo "working $i of $DBT_SCHEDULER_JOB"; sleep 0.1; done
echo "[run_commands] EXIT 0"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def http(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def write_config(tmp_path: Path, project: Path, listen: str, max_parallel: int = 1) -> Path:
    config = tmp_path / "jobs.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"max_parallel: {max_parallel}\n"
        f'web: {{listen: "{listen}"}}\n'
        "jobs:\n"
        f"  api_job: {{schedule: '0 6 * * *', project_dir: {project}}}\n"
        f"  cli_job: {{schedule: '0 6 * * *', project_dir: {project}}}\n"
    )
    return config


def test_api_run_now_over_real_http_with_a_cli_run_now_under_max_parallel(tmp_path: Path) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, project, f"127.0.0.1:{port}", max_parallel=1)
    made = cli(config, "token", "create", "--user", "ci-bot", "--role", "operator")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    env = {"DBT_SCHEDULER_RUN_COMMANDS": str(script)}
    with running_daemon(config, tmp_path / "daemon.log", env) as daemon:
        wait_for(lambda: _healthy(base), 30, "the web server to answer /healthz")
        assert http("GET", f"{base}/api/jobs")[0] == 401
        status, jobs = http("GET", f"{base}/api/jobs", token)
        assert status == 200 and [job["name"] for job in jobs["jobs"]] == ["api_job", "cli_job"]
        run_ids = []
        for attempt in (1, 2):
            # A CLI run-now of the other job at the same time: one slot, so one waits.
            follower = subprocess.Popen(
                [sys.executable, "scheduler.py", "--config", str(config), "run-now", "cli_job"],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            status, answer = http("POST", f"{base}/api/jobs/api_job/runs", token, {"target": None})
            assert status == 202, answer
            run_ids.append(answer["run_id"])
            out, _ = follower.communicate(timeout=120)
            assert follower.returncode == 0, out
            wait_for(
                lambda want=2 * attempt: (
                    all(r["outcome"] != "running" for r in history_rows(tmp_path / "state"))
                    and len(history_rows(tmp_path / "state")) == want
                ),
                60,
                f"round {attempt}'s two runs to end",
            )
        status, log = http("GET", f"{base}/api/runs/{run_ids[1]}/log", token)
        assert status == 200 and "working 6 of api_job" in log
        status, report = http("GET", f"{base}/api/runs/{run_ids[0]}", token)
        assert status == 200 and report["outcome"] == "succeeded" and report["triggered_by"] == "ci-bot"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    rows = history_rows(tmp_path / "state")
    api_rows = [r for r in rows if r["job"] == "api_job"]
    assert [(r["run_id"], r["triggered_by"], r["trigger"], r["outcome"]) for r in api_rows] == [
        (run_id, "ci-bot", "manual", "succeeded") for run_id in run_ids
    ]
    assert [r["outcome"] for r in rows if r["job"] == "cli_job"] == ["succeeded", "succeeded"]
    spans = sorted((r["started_at"], r["finished_at"]) for r in rows)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"two runs overlapped under max_parallel 1: {spans}"
    audit = cli(config, "audit", "--json")
    assert audit.returncode == 0, audit.stderr
    assert audit.stdout.count('"run"') >= 2 and "ci-bot" in audit.stdout


def test_a_taken_port_is_one_error_naming_web_listen_and_the_daemon_keeps_scheduling(tmp_path: Path) -> None:
    project, script = stand_in_project(tmp_path, 'echo "[run_commands] EXIT 0"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "jobs.yaml"
        config.write_text(
            f"state_dir: {tmp_path / 'state'}\n"
            f'web: {{listen: "127.0.0.1:{port}"}}\n'
            f"jobs:\n  tick: {{every: 1 second, project_dir: {project}}}\n"
        )
        log_path = tmp_path / "daemon.log"
        with running_daemon(config, log_path, {"DBT_SCHEDULER_RUN_COMMANDS": str(script)}) as daemon:
            wait_for(lambda: len(history_rows(tmp_path / "state")) >= 2, 60, "two scheduled runs")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
    errors = [line for line in log_path.read_text().splitlines() if f"web.listen 127.0.0.1:{port}" in line]
    assert len(errors) == 1 and "in use" in errors[0], log_path.read_text()


def _healthy(base: str) -> bool:
    try:
        return http("GET", f"{base}/healthz")[0] == 200
    except OSError:
        return False


def test_a_job_paused_over_http_stays_paused_across_a_restart_of_the_real_daemon(tmp_path: Path) -> None:
    project, script = stand_in_project(tmp_path, 'echo "[run_commands] EXIT 0"\n')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "jobs.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f'web: {{listen: "127.0.0.1:{port}"}}\n'
        "jobs:\n"
        f"  tick: {{every: 1 second, project_dir: {project}}}\n"
        f"  other: {{every: 1 second, project_dir: {project}}}\n"
    )
    token = cli(config, "token", "create", "--user", "ops-bot", "--role", "operator").stdout.strip()
    env = {"DBT_SCHEDULER_RUN_COMMANDS": str(script)}
    for restart in (1, 2):
        with running_daemon(config, tmp_path / f"daemon{restart}.log", env) as daemon:
            wait_for(lambda: _healthy(base), 30, "the web server")
            if restart == 1:
                assert http("POST", f"{base}/api/jobs/tick/pause", token)[0] == 200
            ticks = len([r for r in history_rows(tmp_path / "state") if r["job"] == "tick"])
            seen = len(history_rows(tmp_path / "state"))
            wait_for(lambda n=seen: len(history_rows(tmp_path / "state")) >= n + 3, 60, "other's runs")
            assert len([r for r in history_rows(tmp_path / "state") if r["job"] == "tick"]) == ticks
            jobs = {job["name"]: job for job in http("GET", f"{base}/api/jobs", token)[1]["jobs"]}
            assert jobs["tick"]["paused"]["paused_by"] == "ops-bot" and jobs["tick"]["next_run"] is None
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
    status = cli(config, "status")
    assert "paused by" in status.stdout and "ops-bot" in status.stdout, status.stdout  # rich wraps the cell
