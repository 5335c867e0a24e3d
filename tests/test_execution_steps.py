"""lib/execution.py's chain of steps: the order it is assembled in, the steps left out when
their setting is absent, and a step answering without the rest (a held lock, a crash, a
detached run) — each run path run twice, on real SQLite and a real run folder."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from lib.app import App
from lib.config import Config
from lib.errors import RunDetached
from lib.execution import (
    Execution,
    JobLock,
    Next,
    RecordEnd,
    RecordStart,
    RunFolder,
    RunJob,
    Step,
    TellListeners,
    WriteReports,
    build_chain,
    keep_compiled_sql_of_nodes,
    mask_secrets,
    start_unless_cancelled,
)
from lib.locks import job_lock
from lib.models import RunOutcome, RunRecord, RunStatus, TriggerKind
from lib.runners.base import RunContext
from tests.fakes import CrashingRunner, FakeRunner

RUN_STEPS = [RunFolder, RecordStart, WriteReports, keep_compiled_sql_of_nodes, mask_secrets]


def kinds(steps: list[Step]) -> list[object]:
    """A step's class, or the function itself for a function step."""
    return [step if inspect.isfunction(step) else type(step) for step in steps]


def spy(name: str, seen: list[str]) -> Step:
    """A step that notes when it is entered and left."""

    def step(execution: Execution, next_: Next) -> RunRecord:
        seen.append(f"in {name}")
        record = next_(execution)
        seen.append(f"out {name}")
        return record

    return step


def test_build_chain_calls_steps_outermost_first_and_returns_through_them_in_reverse(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"nightly": {"schedule": "0 5 * * *"}})
    app = make_app(config)
    seen: list[str] = []

    def last(execution: Execution) -> RunRecord:
        seen.append("last")
        return execution.record(RunOutcome(RunStatus.SUCCEEDED))

    chain = build_chain([spy("a", seen), spy("b", seen)], last)
    for _ in range(2):
        execution = Execution(app.service.new_request(config.jobs["nightly"], TriggerKind.MANUAL), app.clock)
        assert chain(execution).outcome.status is RunStatus.SUCCEEDED
    assert seen == ["in a", "in b", "last", "out b", "out a"] * 2


def test_the_chain_is_assembled_in_one_order_and_a_step_without_its_setting_is_left_out(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config(
        {"skips": {"schedule": "0 5 * * *"}, "overlaps": {"schedule": "0 5 * * *", "overlap": "allow"}}
    )
    service = make_app(config).service

    def steps_of(job: str, **kw: object) -> list[object]:
        request = service.new_request(config.jobs[job], TriggerKind.MANUAL)
        return kinds(service.steps(Execution(request, service.clock, **kw)))  # type: ignore[arg-type]

    # No listeners: nobody to tell. `overlap: allow`: no lock.
    assert steps_of("overlaps") == [RecordEnd, start_unless_cancelled, *RUN_STEPS]
    service.listeners.append(lambda record: None)
    assert steps_of("skips") == [TellListeners, RecordEnd, JobLock, start_unless_cancelled, *RUN_STEPS]
    # A re-attached run was started long ago: no check of a cancel before its start.
    reattached = steps_of("skips", reattach_to=("arn:task/1", service.clock.now()))
    assert reattached == [TellListeners, RecordEnd, JobLock, *RUN_STEPS]
    # A run decided against is recorded and told, and goes no further.
    request = service.new_request(config.jobs["skips"], TriggerKind.SCHEDULE)
    assert kinds(service.steps(Execution(request, service.clock), runs=False)) == [TellListeners, RecordEnd]


def test_a_held_job_lock_skips_the_run_and_no_later_step_runs(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"nightly": {"schedule": "0 5 * * *"}})
    runner = FakeRunner()
    app = make_app(config, runner)
    service, job = app.service, config.jobs["nightly"]
    heard: list[RunRecord] = []
    service.listeners.append(heard.append)
    other = job_lock(config.state_dir, job.name)
    assert other.try_acquire("pid=1 run_id=other-run")  # another run-now holds the job
    try:
        for _ in range(2):
            seen: list[str] = []
            execution = Execution(service.new_request(job, TriggerKind.MANUAL), service.clock)
            steps = service.steps(execution)
            at = kinds(steps).index(JobLock)
            steps[at + 1 : at + 1] = [spy("after the lock", seen)]
            runs = RunJob(service.runners, service.history, service.state_dir)
            record = build_chain([spy("outside", seen), *steps], runs)(execution)

            assert record.outcome.status is RunStatus.SKIPPED
            assert (
                record.outcome.reason == "previous run still running (pid=1 run_id=other-run); overlap: skip"
            )
            assert seen == ["in outside", "out outside"]  # nothing inside the lock ran
            assert record.run_dir is None and not service.run_dir(execution.request).exists()
            row = app.history.get(record.run_id)
            assert row is not None and row["outcome"] == "skipped"
        assert runner.calls == [] and len(heard) == 2
    finally:
        other.release()
    # Free again: the lock step lets the run through, and lets go of the lock after it.
    for _ in range(2):
        record = service.execute(service.new_request(job, TriggerKind.MANUAL))
        assert record.outcome.status is RunStatus.SUCCEEDED
    assert len(runner.calls) == 2 and runner.calls[0].inherit_fds != ()
    assert other.try_acquire("the test, after the runs")
    other.release()


def test_a_crashing_runner_is_an_error_outcome_that_is_still_recorded_and_reported(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"nightly": {"schedule": "0 5 * * *", "env": {"DBT_ENV_SECRET_X": "hunter22"}}})
    app = make_app(config, CrashingRunner())
    service, job = app.service, config.jobs["nightly"]
    heard: list[RunRecord] = []
    service.listeners.append(heard.append)
    for _ in range(2):
        execution = Execution(
            service.new_request(job, TriggerKind.MANUAL), service.clock, service.masker_for(job)
        )
        seen: list[str] = []
        runs = RunJob(service.runners, service.history, service.state_dir)
        record = build_chain([spy("outside", seen), *service.steps(execution)], runs)(execution)

        assert seen == ["in outside", "out outside"]  # no exception came through the chain
        assert record.outcome.status is RunStatus.ERROR
        crash = "internal error in the local runner: RuntimeError: boom: DBT_ENV_SECRET_X is *****"
        assert record.outcome.reason == crash
        row = app.history.get(record.run_id)
        assert row is not None and row["outcome"] == "error" and "hunter22" not in row["reason"]
        assert record.run_dir is not None
        report = json.loads((record.run_dir / "report.json").read_text())
        assert report["outcome"] == "error" and "hunter22" not in json.dumps(report)
    assert [r.outcome.status for r in heard] == [RunStatus.ERROR] * 2
    lock = job_lock(config.state_dir, job.name)  # let go of after the crash
    assert lock.try_acquire("the test")
    lock.release()


class DetachingRunner:
    """Stands for an ECS run the stopping daemon leaves going."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, ctx: RunContext) -> RunOutcome:
        self.calls += 1
        ctx.on_external_id(f"arn:aws:ecs:task/{self.calls}", None)
        raise RunDetached(f"arn:aws:ecs:task/{self.calls}")


def test_a_detached_run_keeps_its_row_running_with_no_report_and_no_listener_told(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"nightly": {"schedule": "0 5 * * *"}})
    runner = DetachingRunner()
    app = make_app(config, runner)
    service, job = app.service, config.jobs["nightly"]
    heard: list[RunRecord] = []
    service.listeners.append(heard.append)
    for attempt in (1, 2):
        execution = Execution(service.new_request(job, TriggerKind.MANUAL), service.clock)
        record = service.chain(execution)(execution)

        assert execution.keep_running
        assert (record.outcome.status, record.outcome.reason) == (RunStatus.CANCELLED, "detached")
        row = app.history.get(record.run_id)
        assert row is not None and row["outcome"] == "running"
        assert row["external_id"] == f"arn:aws:ecs:task/{attempt}"
        assert record.run_dir is not None and not (record.run_dir / "report.json").exists()
    assert heard == [] and runner.calls == 2


def test_a_reattached_run_whose_lock_is_held_is_left_to_whoever_follows_it(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"nightly": {"schedule": "0 5 * * *"}})
    runner = FakeRunner()
    app = make_app(config, runner)
    service, job = app.service, config.jobs["nightly"]
    other = job_lock(config.state_dir, job.name)
    assert other.try_acquire("pid=1 run_id=another-daemon")
    try:
        for _ in range(2):
            request = service.new_request(job, TriggerKind.SCHEDULE)
            started = service.clock.now() - timedelta(minutes=5)
            app.history.start(request, started, service.run_dir(request), ("dbt build",))
            execution = Execution(request, service.clock, reattach_to=("arn:task/1", started))
            record = service.chain(execution)(execution)

            assert execution.keep_running and record.outcome.status is RunStatus.SKIPPED
            assert record.started_at == started
            row = app.history.get(request.run_id)
            assert row is not None and row["outcome"] == "running"  # untouched
    finally:
        other.release()
    assert runner.calls == []


def test_a_run_cancelled_before_it_started_is_skipped_before_its_folder(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"nightly": {"schedule": "0 5 * * *"}})
    runner = FakeRunner()
    app = make_app(config, runner)
    service, job = app.service, config.jobs["nightly"]
    for _ in range(2):
        execution = Execution(service.new_request(job, TriggerKind.SCHEDULE), service.clock)
        execution.cancel.cancel()
        record = service.chain(execution)(execution)

        assert record.outcome.reason == "the scheduler was stopping before the run started"
        assert execution.run_dir is None and not service.run_dir(execution.request).exists()
        row = app.history.get(record.run_id)
        assert row is not None and row["outcome"] == "skipped"
        # The lock was taken and let go of around the check.
        lock = job_lock(config.state_dir, job.name)
        assert lock.try_acquire("the test")
        lock.release()
    assert runner.calls == []


def test_a_step_asking_for_the_run_folder_before_run_folder_is_a_wiring_error(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"nightly": {"schedule": "0 5 * * *"}})
    app = make_app(config)
    execution = Execution(app.service.new_request(config.jobs["nightly"], TriggerKind.MANUAL), app.clock)
    chain = build_chain([mask_secrets], lambda e: e.record(RunOutcome(RunStatus.SUCCEEDED)))
    with pytest.raises(RuntimeError, match=r"^nightly: a step needs the run folder, but RunFolder has not"):
        chain(execution)
