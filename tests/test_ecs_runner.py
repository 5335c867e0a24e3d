"""The ECS runner against a real moto server over HTTP.

What moto cannot do through the API is done in-process: a container's exit code and
reason (and the task's stopCode) are set on moto's backend from `on_external_id`,
which the runner calls right after RunTask. Task progression uses moto's state
manager in `manual` mode (one step per DescribeTasks call; RUNNING → STOPPED takes
four), which does not depend on wall time, so a FakeClock makes every wait instant.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from lib.aws.clients import AwsClients
from lib.aws.logs import console_link
from lib.bootstrap.policies import RUNTIME_OPERATION_ACTIONS, runtime_policy
from lib.dbt_results import load_node_results, summarize
from lib.models import GitSource, Job, RunRequest, RunStatus, TriggerKind
from lib.runners.base import CancelToken, RunContext
from lib.runners.ecs import EcsRunner, artifacts_uri, classify_task, ran_image, started_by
from lib.secrets import SecretMasker
from lib.triggers import parse_every
from tests.aws_helpers import with_
from tests.ecs_helpers import (
    ARTIFACTS,
    STAYS_RUNNING,
    Ecs,
    new_clients,
    record_calls,
    register_task_definition,
    set_task_transition,
)
from tests.fakes import FakeClock
from tests.test_upload_artifacts import aws_env, upload

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
SECRET = "hunter2-very-secret"
GIT_SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f80912345678"


def make_job(**kw: Any) -> Job:
    base: dict[str, Any] = {
        "name": "nightly",
        "trigger": parse_every("1 day", ZoneInfo("UTC")),
        "timezone": ZoneInfo("UTC"),
        "runner": "ecs",
        "git": GitSource(url="https://git.example.com/shop.git", ref="main"),
        "commands": ("dbt build",),
    }
    base.update(kw)
    return Job(**base)


@dataclass
class Ctx:
    ctx: RunContext
    clock: FakeClock
    lines: list[str]
    external_ids: list[tuple[str, str | None]]


def make_ctx(
    tmp_path: Path,
    on_task: Callable[[str], None] = lambda arn: None,
    job: Job | None = None,
    clock: FakeClock | None = None,
    run_id: str = "r1",
) -> Ctx:
    """A run context whose on_external_id records the ARN and then calls `on_task(arn)`."""
    clock = clock or FakeClock(START)
    lines: list[str] = []
    external_ids: list[tuple[str, str | None]] = []

    def on_external_id(arn: str, url: str | None) -> None:
        external_ids.append((arn, url))
        on_task(arn)

    ctx = RunContext(
        request=RunRequest(job or make_job(), run_id, TriggerKind.MANUAL),
        run_dir=tmp_path / "run",
        clock=clock,
        masker=SecretMasker([SECRET]),
        on_line=lines.append,
        cancel=CancelToken(),
        on_external_id=on_external_id,
    )
    return Ctx(ctx, clock, lines, external_ids)


# --- success and dbt failures -----------------------------------------------------


def test_success_downloads_node_results_writes_the_masked_log_and_passes_overrides(
    ecs: Ecs, tmp_path: Path
) -> None:
    run_tasks = record_calls(ecs.clients, "RunTask")
    ecs.upload_artifacts(ARTIFACTS / "passing")
    status_when_told: list[str] = []

    def on_task(arn: str) -> None:
        status_when_told.append(ecs.task(arn)["lastStatus"])
        ecs.finish(arn, exit_code=0)
        ecs.write_log(
            arn, [f"[run_commands] GIT_SHA {GIT_SHA}", f"password={SECRET}", "Completed successfully"]
        )

    run = make_ctx(tmp_path, on_task)
    outcome = ecs.runner().run(run.ctx)

    assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
    assert outcome.exit_code == 0
    assert outcome.nodes == load_node_results(ARTIFACTS / "passing")
    assert (run.ctx.run_dir / "run_results.json").is_file()
    assert outcome.git_sha == GIT_SHA
    [(arn, url)] = run.external_ids
    assert status_when_told and status_when_told[0] != "STOPPED"  # told before the task ended
    assert outcome.external_id == arn
    task_id = arn.rsplit("/", 1)[-1]
    s = ecs.settings
    assert url == outcome.log_url == console_link(s.region, s.log_group, f"dbt/dbt/{task_id}")
    assert outcome.log_path == run.ctx.run_dir / "run.log"
    assert outcome.image == ecs.task(arn)["containers"][0]["image"]  # what the task ran
    log = outcome.log_path.read_text()
    assert SECRET not in log and "password=*****" in log and "Completed successfully" in log
    assert run.lines[-1] == "Completed successfully" and SECRET not in "".join(run.lines)
    # moto: four describes from RUNNING to STOPPED, one of them ours in on_task.
    assert run.clock.waits == [10.0, 10.0]

    assert len(run_tasks) == 1
    assert run_tasks[0]["taskDefinition"] == s.task_family and run_tasks[0]["launchType"] == "EC2"
    task = ecs.task(arn)
    assert task["startedBy"] == "dbt-scheduler/nightly"
    [override] = task["overrides"]["containerOverrides"]
    assert override["name"] == s.container_name
    env = {item["name"]: item["value"] for item in override["environment"]}
    assert env["DBT_COMMANDS"] == "dbt build"
    assert env["DBT_GIT_REF"] == "main"
    assert env["DBT_SCHEDULER_RUN_ID"] == "r1"
    assert env["DBT_ARTIFACTS_S3_URI"] == f"s3://{s.bucket}/dbt-scheduler/artifacts/nightly/r1/"


def test_a_dbt_failure_is_failed_with_the_summary_and_not_retried(ecs: Ecs, tmp_path: Path) -> None:
    run_tasks = record_calls(ecs.clients, "RunTask")
    ecs.upload_artifacts(ARTIFACTS / "failing")
    run = make_ctx(tmp_path, lambda arn: ecs.finish(arn, exit_code=1))
    outcome = ecs.runner().run(run.ctx)
    nodes = load_node_results(ARTIFACTS / "failing")
    assert nodes
    assert outcome.status is RunStatus.FAILED
    assert outcome.exit_code == 1
    assert outcome.reason == summarize(nodes)
    assert outcome.nodes == nodes
    assert len(run_tasks) == 1


def test_out_of_memory_is_said_plainly_with_the_containers_own_reason(ecs: Ecs, tmp_path: Path) -> None:
    oom = "OutOfMemoryError: Container killed due to memory usage"
    run = make_ctx(tmp_path, lambda arn: ecs.finish(arn, exit_code=137, reason=oom))
    outcome = ecs.runner().run(run.ctx)
    assert outcome.status is RunStatus.FAILED
    assert outcome.exit_code == 137
    assert outcome.reason.startswith(f"killed: out of memory (exit 137): {oom}")
    assert "Essential container" not in outcome.reason
    assert outcome.nodes == ()  # nothing in S3: no results, no crash


# --- the whole log and the commit SHA ----------------------------------------------

LONG_LOG_LINES = 10_700  # more than one GetLogEvents page (moto: 10,000 events; AWS: also 1 MB)


def long_log(sha: str, run: int) -> list[str]:
    """run_commands.sh's output: the SHA marker first, then 10,000+ lines of dbt."""
    head = ["[run_commands] STEP fetch: git clone", f"[run_commands] GIT_SHA {sha}", f"password={SECRET}"]
    body = [f"run {run}: dbt line {i}" for i in range(LONG_LOG_LINES - len(head) - 1)]
    return [*head, *body, "Completed successfully"]


def test_every_line_of_a_long_log_reaches_run_log_and_the_sha_is_found(ecs: Ecs, tmp_path: Path) -> None:
    runner = ecs.runner()
    for run, sha in enumerate((GIT_SHA, "f" * 40), start=1):
        lines = long_log(sha, run)
        ecs.upload_artifacts(ARTIFACTS / "passing", run_id=f"r{run}")

        def on_task(arn: str, lines: list[str] = lines) -> None:
            ecs.finish(arn, exit_code=0)
            ecs.write_log(arn, lines)

        ctx = make_ctx(tmp_path / f"run{run}", on_task, run_id=f"r{run}")
        outcome = runner.run(ctx.ctx)

        assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
        assert outcome.git_sha == sha  # its marker is 10,000 lines before the end
        masked = [line.replace(SECRET, "*****") for line in lines]
        logged = (outcome.log_path or Path("missing")).read_text().splitlines()
        assert logged[0].startswith("[dbt-scheduler] started ECS task ")
        assert logged[1:] == masked  # every line, in order, masked
        assert ctx.lines[1:] == masked


def test_the_sha_comes_from_the_runs_artifacts_first(ecs: Ecs, tmp_path: Path, moto_endpoint: str) -> None:
    # Run 1: the log has no GIT_SHA marker (a lost or late CloudWatch stream); the
    # container's uploader put git_sha next to the dbt artifacts.
    target = tmp_path / "target"
    target.mkdir()
    for name in ("run_results.json", "manifest.json"):
        (target / name).write_bytes((ARTIFACTS / "passing" / name).read_bytes())
    (target / "git_sha").write_text(GIT_SHA + "\n")
    # The first command's own results, as run_commands.sh keeps them per command.
    (target / "run_results.1.json").write_bytes((ARTIFACTS / "passing" / "run_results.json").read_bytes())
    uri = artifacts_uri(ecs.settings, "nightly", "r1")
    uploaded = upload(target, uri or "", aws_env(moto_endpoint))
    assert uploaded.returncode == 0, uploaded.stderr

    def ends_without_marker(arn: str) -> None:
        ecs.finish(arn, exit_code=0)
        ecs.write_log(arn, ["dbt build finished"])

    runner = ecs.runner()
    first = make_ctx(tmp_path / "run1", ends_without_marker, run_id="r1")
    outcome = runner.run(first.ctx)
    assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
    assert outcome.git_sha == GIT_SHA
    assert (first.ctx.run_dir / "git_sha").read_text().strip() == GIT_SHA  # kept with the run
    assert (first.ctx.run_dir / "run_results.1.json").is_file()  # each command's results come too

    # Run 2: both say a SHA; the artifact wins (it does not depend on reading the log).
    # Run 3: no git_sha artifact: the marker in the log is used.
    second_sha, marker_sha = "2" * 40, "3" * 40
    ecs.upload_artifacts(ARTIFACTS / "passing", run_id="r2", git_sha=second_sha)
    ecs.upload_artifacts(ARTIFACTS / "passing", run_id="r3")

    def ends_with_marker(arn: str) -> None:
        ecs.finish(arn, exit_code=0)
        ecs.write_log(arn, [f"[run_commands] GIT_SHA {marker_sha}", "dbt build finished"])

    second = make_ctx(tmp_path / "run2", ends_with_marker, run_id="r2")
    assert runner.run(second.ctx).git_sha == second_sha
    third = make_ctx(tmp_path / "run3", ends_with_marker, run_id="r3")
    assert runner.run(third.ctx).git_sha == marker_sha
    assert not (third.ctx.run_dir / "git_sha").exists()


def test_a_log_read_that_fails_midway_keeps_what_it_read_and_says_so(ecs: Ecs, tmp_path: Path) -> None:
    pages = [0]

    def second_page_fails_once(params: dict[str, Any], **_: Any) -> None:
        pages[0] += 1
        if pages[0] == 2:
            raise EndpointConnectionError(endpoint_url="https://logs.eu-west-1.amazonaws.com")

    logs = ecs.clients.logs()
    logs.meta.events.register("before-parameter-build.logs.GetLogEvents", second_page_fails_once)
    runner = ecs.runner()
    for run in (1, 2):
        lines = long_log(GIT_SHA, run)

        def on_task(arn: str, lines: list[str] = lines) -> None:
            ecs.finish(arn, exit_code=0)
            ecs.write_log(arn, lines)

        ctx = make_ctx(tmp_path / f"run{run}", on_task, run_id=f"r{run}")
        outcome = runner.run(ctx.ctx)
        logged = (outcome.log_path or Path("missing")).read_text().splitlines()
        assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
        assert outcome.git_sha == GIT_SHA
        if run == 1:  # the first page (10,000 events on moto), then one line saying why not more
            assert logged[1:-1] == [line.replace(SECRET, "*****") for line in lines[:10_000]]
            assert logged[-1].startswith("[dbt-scheduler] could not read the rest of CloudWatch log ")
            assert "EndpointConnectionError" in logged[-1]
        else:  # the next run reads its whole log again
            assert len(logged) == 1 + len(lines)


def test_a_log_over_the_size_cap_keeps_its_head_and_tail_with_a_note(ecs: Ecs, tmp_path: Path) -> None:
    cap = 4096
    runner = ecs.runner(max_log_bytes=cap)
    error = "dbt build failed: Could not connect to Snowflake backend"
    big = [f"[run_commands] GIT_SHA {GIT_SHA}"] + [f"line {i:04d}" for i in range(2000)]
    big += [f"[run_commands] ERROR {error}", f"password={SECRET}"]
    small = ["[run_commands] GIT_SHA " + "a" * 40, "line 0000", "line 0001"]
    for run, lines in ((1, big), (2, small)):

        def on_task(arn: str, lines: list[str] = lines) -> None:
            ecs.finish(arn, exit_code=1)
            ecs.write_log(arn, lines)

        ctx = make_ctx(tmp_path / f"run{run}", on_task, run_id=f"r{run}")
        outcome = runner.run(ctx.ctx)
        log = (outcome.log_path or Path("missing")).read_text()
        assert outcome.status is RunStatus.FAILED
        if run == 2:  # the cap is per run: a small log is whole, with no note
            assert outcome.git_sha == "a" * 40
            assert log.splitlines()[1:] == small
            continue
        # The markers are found on both sides of the cut.
        assert outcome.git_sha == GIT_SHA
        assert outcome.reason == error
        logged = log.splitlines()
        [note] = [line for line in logged if "run.log truncated" in line]
        assert note.startswith("[dbt-scheduler] run.log truncated: the log is larger than 4 KiB; ")
        assert f"the last 200 lines follow. The whole log: {outcome.log_url}" in note
        head, tail = logged[1 : logged.index(note)], logged[logged.index(note) + 1 :]
        omitted = int(note.split("; ")[1].split(" lines")[0])
        assert len(head) + omitted + len(tail) == len(big)  # each line: kept, counted or shown
        assert head == big[: len(head)] and sum(len(line) + 1 for line in head) <= cap
        assert tail == [*big[-200:-1], "password=*****"]
        assert len(log.encode()) < cap + 200 * 20  # bounded: head + note + 200 short lines
        assert SECRET not in log


# --- start failures and retries ---------------------------------------------------


def test_an_image_that_cannot_be_pulled_fails_to_start_after_every_retry(ecs: Ecs, tmp_path: Path) -> None:
    run_tasks = record_calls(ecs.clients, "RunTask")
    pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found"
    run = make_ctx(tmp_path, lambda arn: ecs.finish(arn, None, pull, stop_code="TaskFailedToStart"))
    outcome = ecs.runner().run(run.ctx)
    assert outcome.status is RunStatus.FAILED_TO_START
    assert len(run_tasks) == 1 + ecs.settings.start_retries == 3
    assert pull in outcome.reason and "after 3 attempts" in outcome.reason
    assert "Essential container" not in outcome.reason
    assert outcome.exit_code is None
    arns = [arn for arn, _ in run.external_ids]
    assert len(set(arns)) == 3 and outcome.external_id == arns[-1]
    # Backoff 30 s then 60 s between attempts, via the clock (three polls per attempt).
    assert [w for w in run.clock.waits if w != 10.0] == [30.0, 60.0]


def test_a_transient_resource_initialization_error_succeeds_on_retry(ecs: Ecs, tmp_path: Path) -> None:
    run_tasks = record_calls(ecs.clients, "RunTask")
    env_files = (
        "ResourceInitializationError: failed to download env files: "
        "file download command: non empty error stream"
    )

    def on_task(arn: str) -> None:
        if len(run_tasks) == 1:
            ecs.finish(arn, None, env_files, stop_code="TaskFailedToStart")
        else:
            ecs.finish(arn, exit_code=0)

    run = make_ctx(tmp_path, on_task)
    outcome = ecs.runner().run(run.ctx)
    assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
    assert len(run_tasks) == 2
    assert outcome.external_id == run.external_ids[-1][0]


def test_run_task_errors_fail_to_start_and_only_transient_ones_are_retried(
    ecs: Ecs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto answers RunTask on a cluster without container instances with an HTTP 500
    # (AWS: InvalidParameterException "No Container Instances were found"); one HTTP
    # attempt per call keeps botocore's own retry sleeps out of the test.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    empty = with_(ecs.settings, cluster=ecs.settings.cluster + "-empty", start_retries=1)
    clients = new_clients(empty)
    clients.ecs().create_cluster(clusterName=empty.cluster)
    run_tasks = record_calls(clients, "RunTask")
    outcome = EcsRunner(empty, clients).run(make_ctx(tmp_path).ctx)
    assert outcome.status is RunStatus.FAILED_TO_START
    assert outcome.reason.startswith("RunTask failed: ") and "after 2 attempts" in outcome.reason
    assert "\n" not in outcome.reason
    assert len(run_tasks) == 2

    # A cluster that does not exist: no retry will fix that.
    missing = with_(ecs.settings, cluster="no-such-cluster")
    clients = new_clients(missing)
    run_tasks = record_calls(clients, "RunTask")
    outcome = EcsRunner(missing, clients).run(make_ctx(tmp_path).ctx)
    assert outcome.status is RunStatus.FAILED_TO_START
    assert (
        outcome.reason.startswith("RunTask failed: ClusterNotFoundException")
        and "bootstrap" in outcome.reason
    )
    assert len(run_tasks) == 1


def test_run_task_failures_are_failed_to_start_in_words(ecs: Ecs, tmp_path: Path) -> None:
    # moto never fills RunTask's `failures`; answer this call the way AWS does when no
    # container instance has room (botocore's before-call hook may answer a call).
    answer = {
        "tasks": [],
        "failures": [
            {"arn": "arn:aws:ecs:eu-west-1:123456789012:container-instance/x", "reason": "RESOURCE:MEMORY"}
        ],
    }
    ecs.clients.ecs().meta.events.register(
        "before-call.ecs.RunTask", lambda **_: (AWSResponse("http://moto", 200, {}, None), answer)
    )
    outcome = ecs.runner().run(make_ctx(tmp_path).ctx)
    assert outcome.status is RunStatus.FAILED_TO_START
    assert "RESOURCE:MEMORY (no container instance in the cluster has enough free memory)" in outcome.reason
    assert "after 3 attempts" in outcome.reason
    assert outcome.external_id is None
    log = (outcome.log_path or Path("missing")).read_text()
    assert log.count("ECS could not place the task: RESOURCE:MEMORY") == 3
    assert "retrying in 30s" in log and "retrying in 1m" in log


def test_a_task_too_big_for_the_instance_fails_to_start(ecs: Ecs, tmp_path: Path) -> None:
    # A new revision needing more memory than the instance has: moto places nothing and
    # says nothing (tasks and failures both empty).
    register_task_definition(ecs, container={"memory": 10_000_000})
    settings = with_(ecs.settings, start_retries=0)
    outcome = EcsRunner(settings, ecs.clients).run(make_ctx(tmp_path).ctx)
    assert outcome.status is RunStatus.FAILED_TO_START
    assert "started no task" in outcome.reason


# --- timeout, cancel, lost tasks, transient errors ---------------------------------


def test_the_timeout_stops_the_task(ecs: Ecs, tmp_path: Path) -> None:
    set_task_transition(ecs.endpoint, STAYS_RUNNING)
    run = make_ctx(tmp_path, job=make_job(timeout=25.0))
    outcome = ecs.runner().run(run.ctx)
    assert outcome.status is RunStatus.TIMED_OUT
    assert outcome.reason == "exceeded its timeout of 25s: the ECS task was stopped"
    task = ecs.task(outcome.external_id or "")
    assert task["lastStatus"] == "STOPPED"
    assert task["stoppedReason"] == "dbt-scheduler: nightly exceeded its timeout of 25s"
    assert run.clock.waits == [10.0, 10.0, 5.0]  # the last wait ends at the deadline


def test_cancel_stops_the_task(ecs: Ecs, tmp_path: Path) -> None:
    set_task_transition(ecs.endpoint, STAYS_RUNNING)
    holder: list[Ctx] = []
    run = make_ctx(tmp_path, lambda arn: holder[0].ctx.cancel.cancel())
    holder.append(run)
    outcome = ecs.runner().run(run.ctx)
    assert outcome.status is RunStatus.CANCELLED
    task = ecs.task(outcome.external_id or "")
    assert task["lastStatus"] == "STOPPED" and "cancelled" in task["stoppedReason"]
    assert run.clock.waits == []  # the cancel wakes the poll at once


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({"image": "1.dkr.ecr/x@sha256:ab"}, "1.dkr.ecr/x@sha256:ab"),
        ({"image": "1.dkr.ecr/x:latest", "imageDigest": "sha256:cd"}, "1.dkr.ecr/x@sha256:cd"),
        ({"image": "host:5000/x", "imageDigest": "sha256:ef"}, "host:5000/x@sha256:ef"),
        ({"image": "host:5000/x:1.2"}, "host:5000/x:1.2"),
        ({}, None),
    ],
)
def test_the_image_a_task_ran_is_named_by_digest_when_ecs_says_it(
    container: dict[str, str], expected: str | None
) -> None:
    assert ran_image({"containers": [{"name": "dbt", **container}]}, "dbt") == expected


def test_every_call_an_ecs_run_makes_is_in_the_ops_boxs_runtime_policy(ecs: Ecs, tmp_path: Path) -> None:
    """Recorded against moto: a run that succeeds (artifacts, logs) and one that times out
    (StopTask) call nothing the runtime policy (`bootstrap --ops-policy runtime`) does not grant."""
    operations: set[str] = set()
    clients = new_clients(ecs.settings)  # the runner's own: the test's helpers write logs and artifacts
    for service in ("ecs", "s3", "logs"):
        clients.client(service).meta.events.register(
            f"before-call.{service}", lambda model, **_: operations.add(model.name)
        )
    ecs.upload_artifacts(ARTIFACTS / "passing")

    def on_task(arn: str) -> None:
        ecs.finish(arn, exit_code=0)
        ecs.write_log(arn, [f"[run_commands] GIT_SHA {GIT_SHA}", "Completed successfully"])

    first = EcsRunner(ecs.settings, clients).run(make_ctx(tmp_path / "1", on_task).ctx)
    assert first.status is RunStatus.SUCCEEDED, first.reason
    set_task_transition(ecs.endpoint, STAYS_RUNNING)
    second = EcsRunner(ecs.settings, clients).run(make_ctx(tmp_path / "2", job=make_job(timeout=25.0)).ctx)
    assert second.status is RunStatus.TIMED_OUT

    assert {"RunTask", "DescribeTasks", "StopTask", "GetLogEvents", "GetObject"} <= operations
    assert operations <= set(RUNTIME_OPERATION_ACTIONS)
    assert set(clients._clients) <= {"ecs", "s3", "logs"}  # no other service was called
    policy = runtime_policy(ecs.settings)
    granted = {
        a
        for st in policy["Statement"]
        for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert {RUNTIME_OPERATION_ACTIONS[op] for op in operations} <= granted


class _DaemonDied(Exception):
    pass


class DyingClock(FakeClock):
    """The daemon process ends during its first wait."""

    def wait(self, seconds: float, event: threading.Event) -> bool:
        raise _DaemonDied


def test_a_restarted_daemon_reattaches_and_starts_nothing(ecs: Ecs, tmp_path: Path) -> None:
    set_task_transition(ecs.endpoint, STAYS_RUNNING)
    first = make_ctx(tmp_path, clock=DyingClock(START))
    with pytest.raises(_DaemonDied):
        ecs.runner().run(first.ctx)
    [(arn, _)] = first.external_ids

    # The task ends while no daemon watches; a new daemon (new clients) follows it.
    ecs.finish(arn, exit_code=0)
    ecs.upload_artifacts(ARTIFACTS / "passing")
    ecs.write_log(arn, ["dbt build finished"])
    set_task_transition(ecs.endpoint, None)
    clients = new_clients(ecs.settings)
    run_tasks = record_calls(clients, "RunTask")
    second = make_ctx(tmp_path)
    outcome = EcsRunner(ecs.settings, clients).reattach(second.ctx, arn)

    assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
    assert outcome.external_id == arn
    assert outcome.nodes == load_node_results(ARTIFACTS / "passing")
    assert "dbt build finished" in (second.ctx.run_dir / "run.log").read_text()
    assert run_tasks == [] and second.external_ids == []


def test_reattaching_to_a_task_ecs_forgot_says_its_outcome_is_lost(ecs: Ecs, tmp_path: Path) -> None:
    arn = f"arn:aws:ecs:{ecs.settings.region}:123456789012:task/{ecs.settings.cluster}/0123456789abcdef"
    outcome = ecs.runner().reattach(make_ctx(tmp_path).ctx, arn)
    assert outcome.status is RunStatus.FAILED
    assert outcome.reason == (
        "task 0123456789abcdef is no longer known to ECS (stopped more than an hour ago?): "
        "its outcome is lost"
    )
    assert outcome.external_id == arn and outcome.log_url


def _failing_describes(clients: AwsClients, count: int) -> None:
    left = [count]

    def fail(**_: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise EndpointConnectionError(endpoint_url="http://ecs.eu-west-1.amazonaws.com")

    clients.ecs().meta.events.register("before-parameter-build.ecs.DescribeTasks", fail)


def test_transient_describe_errors_are_ridden_out(ecs: Ecs, tmp_path: Path) -> None:
    _failing_describes(ecs.clients, 3)
    run = make_ctx(tmp_path, lambda arn: ecs.finish(arn, exit_code=0))
    outcome = ecs.runner().run(run.ctx)
    assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
    assert run.clock.waits == [10.0, 20.0, 40.0, 10.0, 10.0, 10.0]  # backing off while it fails


def test_describe_errors_that_last_give_an_honest_failure(ecs: Ecs, tmp_path: Path) -> None:
    _failing_describes(ecs.clients, 1000)
    outcome = ecs.runner(describe_retries=3).run(make_ctx(tmp_path).ctx)
    assert outcome.status is RunStatus.FAILED
    assert outcome.reason.startswith("DescribeTasks failed 4 times in a row (last: EndpointConnectionError")
    assert outcome.reason.endswith("the task may still be running")
    assert outcome.external_id


# --- FARGATE ------------------------------------------------------------------------


def test_fargate_passes_the_awsvpc_network_configuration(ecs: Ecs, tmp_path: Path) -> None:
    ec2 = ecs.clients.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"dbt-{vpc}", Description="dbt", VpcId=vpc)["GroupId"]
    # AWS needs a FARGATE-compatible, awsvpc task definition; moto 5.2.5 crashes
    # building such a task's ENI attachment (NetworkInterface has no
    # private_dns_name), so the fixture's EC2 task definition is run with launch type
    # FARGATE instead — moto does not mind — and the attachment is not checked.
    settings = with_(ecs.settings, launch_type="FARGATE", subnets=(subnet,), security_groups=(group,))
    run_tasks = record_calls(ecs.clients, "RunTask")
    run = make_ctx(tmp_path, lambda arn: ecs.finish(arn, exit_code=0))
    outcome = EcsRunner(settings, ecs.clients).run(run.ctx)
    assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
    assert run_tasks[0]["launchType"] == "FARGATE"
    assert run_tasks[0]["networkConfiguration"] == {
        "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}
    }
    assert ecs.task(outcome.external_id or "")["launchType"] == "FARGATE"


# --- pure parts ---------------------------------------------------------------------


def test_started_by_fits_in_36_characters_and_keeps_long_names_apart() -> None:
    assert started_by("nightly") == "dbt-scheduler/nightly"
    assert started_by("nightly.full refresh") == "dbt-scheduler/nightly-full-refresh"
    long_a, long_b = (
        started_by("a_very_long_job_name_number_one"),
        started_by("a_very_long_job_name_number_two"),
    )
    assert len(long_a) == len(long_b) == 36 and long_a != long_b
    assert long_a.startswith("dbt-scheduler/a_very_long_job")


def _stopped(
    exit_code: int | None, reason: str = "", stop_code: str = "", stopped: str = ""
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "dbt"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if reason:
        container["reason"] = reason
    return {
        "lastStatus": "STOPPED",
        "stopCode": stop_code,
        "stoppedReason": stopped,
        "containers": [container],
    }


@pytest.mark.parametrize(
    ("task", "status", "reason"),
    [
        (_stopped(0), RunStatus.SUCCEEDED, ""),
        (
            _stopped(137, stop_code="UserInitiated", stopped="stopped by ops"),
            RunStatus.FAILED,
            "killed by StopTask (exit 137): stopped by ops",
        ),
        (
            _stopped(143, stop_code="SpotInterruption", stopped="Your Spot Task was interrupted."),
            RunStatus.FAILED,
            "killed: ECS stopped the task (SpotInterruption, exit 143): Your Spot Task was interrupted.",
        ),
        (
            _stopped(None, stop_code="UserInitiated", stopped="oops"),
            RunStatus.FAILED,
            "stopped (UserInitiated) before the container ran: oops",
        ),
        (
            _stopped(None, stop_code="TaskFailedToStart", stopped="Task failed to start"),
            RunStatus.FAILED_TO_START,
            "the ECS task stopped before dbt ran: Task failed to start",
        ),
        (
            _stopped(11, stopped="Essential container in task exited"),
            RunStatus.FAILED_TO_START,
            "fetching the dbt project's code failed",
        ),
        (
            _stopped(1, reason="Some container note"),
            RunStatus.FAILED,
            "exit code 1 (dbt wrote no run_results.json) (container: Some container note)",
        ),
    ],
)
def test_classify_task(task: dict[str, Any], status: RunStatus, reason: str) -> None:
    assert classify_task(task, "dbt", nodes=None, log_tail=[], job_name="nightly")[:2] == (status, reason)


def test_colour_codes_in_the_task_log_never_reach_run_log(ecs: Ecs, tmp_path: Path) -> None:
    """A job that forces dbt's colours (--use-colors) on ECS: run.log is plain text."""

    def ends_with_colours(arn: str) -> None:
        ecs.finish(arn, exit_code=0)
        ecs.write_log(
            arn, ["\x1b[32mOK created sql view model main.stg_orders\x1b[0m", "\x1b[1mDone.\x1b[0m"]
        )

    runner = ecs.runner()
    for n in (1, 2):
        run = make_ctx(tmp_path / f"run{n}", ends_with_colours, run_id=f"c{n}")
        outcome = runner.run(run.ctx)
        log = (run.ctx.run_dir / "run.log").read_text()
        assert "\x1b[" not in log, log
        assert "OK created sql view model main.stg_orders" in log and outcome.status is RunStatus.SUCCEEDED
