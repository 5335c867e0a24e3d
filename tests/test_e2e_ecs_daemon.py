"""ECS jobs dispatched by the daemon, end to end against the moto server over HTTP.

The daemon, run service, history (SQLite) and ECS runner are the real ones; only the
clock is fake (its waits advance time), and moto's in-process backend is used for
what the ECS API cannot do: set a container's exit code or reason.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from lib.app import App, build_app
from lib.config import Config, parse_config
from lib.daemon import Daemon
from tests.conftest import START
from tests.ecs_helpers import ARTIFACTS, STAYS_RUNNING, Ecs, new_clients, record_calls, set_task_transition
from tests.fakes import FakeClock, InlineExecutor


def ecs_config(tmp_path: Path, ecs: Ecs, jobs: dict[str, dict[str, Any]]) -> Config:
    data = {
        "state_dir": str(tmp_path / "state"),
        "aws": {"region": ecs.settings.region},
        "jobs": {
            name: {
                "every": "1 hour",
                "runner": "ecs",
                "git": {"url": "https://git.example.com/shop.git"},
                **job,
            }
            for name, job in jobs.items()
        },
    }
    return replace(parse_config(data, base_dir=tmp_path), aws=ecs.settings)


def ecs_app(config: Config, ecs: Ecs, clock: FakeClock, clients: Any = None) -> App:
    from lib.runners.ecs import EcsRunner

    runner = EcsRunner(ecs.settings, clients or ecs.clients)
    return build_app(config, clock=clock, runners={"ecs": runner}, base_env={})


def finish_tasks_by_job(ecs: Ecs, outcomes: dict[str, dict[str, Any]]) -> None:
    """As each task starts, say how its container will end, by the job in startedBy."""

    def after_run_task(parsed: dict[str, Any], **_: Any) -> None:
        for task in parsed.get("tasks", []):
            job = task.get("startedBy", "").split("/", 1)[-1]
            if job in outcomes:
                ecs.finish(task["taskArn"], **outcomes[job])

    ecs.clients.ecs().meta.events.register("after-call.ecs.RunTask", after_run_task)


def test_daemon_runs_ecs_jobs_and_records_each_outcome(ecs: Ecs, tmp_path: Path) -> None:
    config = ecs_config(
        tmp_path,
        ecs,
        {
            "good": {},
            "broken": {},
            "unpullable": {},
            "slow": {"timeout": "15s"},
        },
    )
    finish_tasks_by_job(
        ecs,
        {
            "good": {"exit_code": 0},
            "broken": {"exit_code": 2},
            "unpullable": {"exit_code": None, "reason": "CannotPullContainerError: pull access denied"},
        },
    )
    ecs.upload_artifacts(ARTIFACTS / "failing", job="broken", run_id="ignored")  # other run ids: no nodes
    run_tasks = record_calls(ecs.clients, "RunTask")
    stops = record_calls(ecs.clients, "StopTask")
    clock = FakeClock(START)
    app = ecs_app(config, ecs, clock)
    Daemon(app.config, app.service, clock, executor_factory=lambda n: InlineExecutor()).run_forever(
        until=START + timedelta(hours=1)
    )

    runs = {r["job"]: r for r in app.history.runs(limit=None)}
    assert runs["good"]["outcome"] == "succeeded", runs["good"]
    assert runs["good"]["external_id"].startswith("arn:aws:ecs:")
    assert "$252Fecs$252F" in runs["good"]["log_url"]  # the console link, escaped as the console wants
    assert runs["broken"]["outcome"] == "failed" and runs["broken"]["exit_code"] == 2
    assert runs["unpullable"]["outcome"] == "failed_to_start"
    assert "CannotPullContainerError" in runs["unpullable"]["reason"]
    assert runs["slow"]["outcome"] == "timed_out"
    started = [call["startedBy"].split("/", 1)[-1] for call in run_tasks]
    assert started.count("unpullable") == 1 + ecs.settings.start_retries  # retried, then given up
    assert started.count("broken") == 1  # a dbt failure is never retried
    assert len(stops) == 1 and "exceeded its timeout" in stops[0]["reason"]
    overrides = ecs.task(runs["good"]["external_id"])["overrides"]["containerOverrides"][0]["environment"]
    env = {item["name"]: item["value"] for item in overrides}
    assert env["DBT_SCHEDULER_RUN_ID"] == runs["good"]["run_id"]
    assert env["DBT_COMMANDS"] == "dbt build"


def test_each_ecs_run_records_its_own_sha_and_whole_log(ecs: Ecs, tmp_path: Path) -> None:
    """Run 1's SHA is only in its artifacts (no marker in the log); run 2's only in a
    marker 10,000+ lines before the end of its log."""
    config = ecs_config(tmp_path, ecs, {"shop": {}})
    artifact_sha, marker_sha = "a1" * 20, "b2" * 20
    long_log = [f"[run_commands] GIT_SHA {marker_sha}"] + [f"dbt line {i}" for i in range(10_500)]
    logs = [["dbt build finished"], long_log]
    started: list[str] = []

    def after_run_task(parsed: dict[str, Any], **_: Any) -> None:
        for task in parsed.get("tasks", []):
            arn = task["taskArn"]
            env = task["overrides"]["containerOverrides"][0]["environment"]
            uri = next(item["value"] for item in env if item["name"] == "DBT_ARTIFACTS_S3_URI")
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            if not started:  # what the first task's uploader puts beside the dbt artifacts
                body = f"{artifact_sha}\n".encode()
                ecs.clients.s3().put_object(Bucket=bucket, Key=prefix + "git_sha", Body=body)
            ecs.finish(arn, exit_code=0)
            ecs.write_log(arn, logs[len(started)])
            started.append(arn)

    ecs.clients.ecs().meta.events.register("after-call.ecs.RunTask", after_run_task)
    clock = FakeClock(START)
    app = ecs_app(config, ecs, clock)
    Daemon(app.config, app.service, clock, executor_factory=lambda n: InlineExecutor()).run_forever(
        until=START + timedelta(hours=2)
    )

    runs = sorted(app.history.runs(limit=None), key=lambda r: r["run_id"])
    assert [r["outcome"] for r in runs] == ["succeeded", "succeeded"], runs
    assert [r["git_sha"] for r in runs] == [artifact_sha, marker_sha]
    assert [r["external_id"] for r in runs] == started
    second_log = Path(runs[1]["log_path"]).read_text().splitlines()
    assert second_log[1:] == long_log  # every line, not the last 200
    reports = [json.loads((Path(r["log_path"]).parent / "report.json").read_text()) for r in runs]
    assert [report["git_sha"] for report in reports] == [artifact_sha, marker_sha]


class RealWaitClock(FakeClock):
    """Fake time, but each wait yields the CPU for a moment so worker threads don't spin."""

    def wait(self, seconds: float, event: threading.Event) -> bool:
        if event.wait(0.01):
            return True
        return super().wait(seconds, event)


def wait_until(predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_restarted_daemon_reattaches_to_the_running_task(ecs: Ecs, tmp_path: Path) -> None:
    config = ecs_config(tmp_path, ecs, {"long": {}})
    set_task_transition(ecs.endpoint, STAYS_RUNNING)
    clock = RealWaitClock(START)
    first = ecs_app(config, ecs, clock)
    daemon = Daemon(first.config, first.service, clock)
    daemon.start()
    clock.advance(3600)
    daemon.dispatch(daemon.tick(clock.now()))
    wait_until(lambda: any(r["external_id"] for r in first.history.running()), "the task ARN in history")
    [row] = first.history.running()
    arn = row["external_id"]

    daemon.request_stop()
    daemon.shutdown()  # the ECS task is left running: a restart must not cost an hour of dbt
    assert first.history.get(row["run_id"])["outcome"] == "running"  # type: ignore[index]
    assert ecs.task(arn)["lastStatus"] == "RUNNING"

    # The task ends while no daemon runs; the next daemon (new clients) follows it.
    ecs.finish(arn, exit_code=0)
    set_task_transition(ecs.endpoint, None)
    clients = new_clients(ecs.settings)
    run_tasks = record_calls(clients, "RunTask")
    second = ecs_app(config, ecs, clock, clients)
    restarted = Daemon(second.config, second.service, clock)
    restarted.start()
    wait_until(lambda: not second.history.running(), "the re-attached run to finish")
    restarted.shutdown()

    assert run_tasks == []  # no second RunTask
    [run] = second.history.runs(limit=None)
    assert run["run_id"] == row["run_id"] and run["external_id"] == arn
    assert run["outcome"] == "succeeded"
