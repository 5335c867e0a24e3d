"""More runs due than `max_parallel` slots: the daemon's queue, driven by a FakeClock.

A queued run is not running (overlap), a queued fire time that grows older than the
misfire limit follows the catch-up policy, a stop starts nothing queued, and every fire
time ends as exactly one history row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from lib.app import App
from lib.config import Config
from lib.daemon import Daemon
from lib.policies import MISFIRE_TOLERANCE
from lib.queue_state import read_live
from tests.conftest import START
from tests.fakes import FakeClock, FakeRunner, InlineExecutor, ManualExecutor, inline_spawn


def runs_of(app: App, job: str) -> list[dict[str, Any]]:
    """The job's history rows in fire-time order."""
    return sorted(app.history.runs(job, limit=None), key=lambda r: r["scheduled_for"])


def fired(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run["scheduled_for"])


def late_s(run: dict[str, Any]) -> float:
    return (datetime.fromisoformat(run["started_at"]) - fired(run)).total_seconds()


def test_max_parallel_1_three_jobs_with_long_runs_every_fire_time_one_row_none_started_too_late(
    make_config: Callable[..., Config],
    make_app: Callable[..., App],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Three jobs due at once, one slot, each run 50 s of (fake) time: the third waits 100 s,
    # longer than the misfire limit. catchup: none skips it; catchup: latest runs it late.
    config = make_config(
        {
            "a": {"every": "2 minutes"},
            "b": {"every": "2 minutes"},
            "c": {"every": "2 minutes", "catchup": "latest", "catchup_grace": "10m"},
        },
        max_parallel=1,
    )
    app = make_app(config, FakeRunner(duration=50, clock=clock))
    daemon = Daemon(
        app.config, app.service, clock, executor_factory=lambda n: InlineExecutor(), spawn=inline_spawn
    )
    caplog.set_level(logging.INFO, logger="dbt_scheduler")
    daemon.run_forever(until=START + timedelta(minutes=20))

    expected = [START + timedelta(minutes=2 * i) for i in range(1, 11)]
    for job in ("a", "b", "c"):
        runs = runs_of(app, job)
        assert sorted(fired(r) for r in runs) == expected, job  # each fire time exactly one row
    for job in ("a", "b"):  # catchup: none never starts a run later than the misfire limit
        started = [r for r in runs_of(app, job) if r["outcome"] != "skipped"]
        assert all(late_s(r) <= MISFIRE_TOLERANCE for r in started), runs_of(app, job)
    skipped = [r for r in runs_of(app, "b") if r["outcome"] == "skipped"]
    assert skipped and all("for a free slot (max_parallel 1)" in r["reason"] for r in skipped)
    assert "catchup: none" in skipped[0]["reason"]
    c_runs = runs_of(app, "c")
    assert {r["outcome"] for r in c_runs} == {"succeeded"}  # caught up, within its grace
    assert "catch-up" in {r["trigger"] for r in c_runs}
    assert "waited 50 s for a free slot (max_parallel 1)" in caplog.text


def test_a_queued_run_is_not_running_for_overlap_and_a_second_fire_time_coalesces(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"long": {"every": "1 minute"}, "short": {"every": "1 minute"}}, max_parallel=1)
    app = make_app(config)
    pool = ManualExecutor()
    daemon = Daemon(app.config, app.service, clock, executor_factory=lambda n: pool, spawn=inline_spawn)
    daemon.start()
    for cycle in range(2):
        clock.advance(60)
        daemon.dispatch(daemon.tick(clock.now()))
        if cycle == 0:
            assert pool.submitted == 1  # "long" holds the slot; "short" waits in the daemon's queue
            [queued] = read_live(config.state_dir) or []
            assert queued.job == "short" and queued.queued_at == clock.now()
    # The second fire time: "long" really runs, so its run is skipped; "short" only waits.
    assert pool.submitted == 1
    [entry] = daemon.queued_runs()
    assert entry.job == "short" and entry.scheduled_for == START + timedelta(minutes=2)
    pool.run_all()  # "long" ends: the slot frees
    daemon.dispatch([])  # what the woken loop does
    pool.run_all()
    daemon.shutdown()
    assert read_live(config.state_dir) is None  # no daemon: the file is not believed

    long = runs_of(app, "long")
    assert [r["outcome"] for r in long] == ["succeeded", "skipped"]
    assert "previous run still running" in long[1]["reason"]
    short = runs_of(app, "short")
    assert [(r["outcome"], fired(r)) for r in short] == [
        ("skipped", START + timedelta(minutes=1)),
        ("succeeded", START + timedelta(minutes=2)),
    ]
    assert "coalesced into the run due" in short[0]["reason"]
    assert "still running" not in short[0]["reason"]


def test_after_a_stop_request_no_queued_run_starts_and_each_is_recorded_once(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({name: {"every": "1 minute"} for name in ("a", "b", "c")}, max_parallel=1)
    runner = FakeRunner()
    app = make_app(config, runner)
    pool = ManualExecutor()
    daemon = Daemon(app.config, app.service, clock, executor_factory=lambda n: pool, spawn=inline_spawn)
    daemon.start()
    for _ in range(2):  # the second time, "a" is still running and "b", "c" still queued
        clock.advance(60)
        daemon.dispatch(daemon.tick(clock.now()))
    daemon.request_stop()  # SIGTERM while "a" runs and two runs wait
    pool.run_all()  # "a" finishes during the grace: its slot frees
    daemon.dispatch([])  # a woken loop must not start a queued run now
    daemon.shutdown()

    assert [r.request.job.name for r in runner.calls] == ["a"]
    for job in ("b", "c"):
        runs = runs_of(app, job)
        assert [fired(r) for r in runs] == [START + timedelta(minutes=m) for m in (1, 2)]
        assert [r["outcome"] for r in runs] == ["skipped", "skipped"]
        assert runs[1]["reason"] == "the scheduler was stopping"
    assert [r["outcome"] for r in runs_of(app, "a")] == ["succeeded", "skipped"]


def test_a_queue_file_left_by_a_killed_daemon_is_not_shown_once_a_new_one_runs(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    from lib.queue_state import QueuedEntry, publish

    config = make_config({"a": {"every": "1 minute"}})
    app = make_app(config)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    publish(config.state_dir, [QueuedEntry("a", "r-old", START, START)], 1, START)  # kill -9 left it
    assert read_live(config.state_dir) is None  # no daemon holds the lock: not believed
    daemon = Daemon(
        app.config, app.service, clock, executor_factory=lambda n: InlineExecutor(), spawn=inline_spawn
    )
    daemon.start()
    try:
        assert read_live(config.state_dir) == []
    finally:
        daemon.shutdown()


@pytest.mark.parametrize(
    ("settings", "late", "trigger", "words"),
    [
        ({}, 60, "schedule", ""),  # within the misfire limit: runs as decided
        ({}, 75, None, "catchup: none"),
        ({"catchup": "latest", "catchup_grace": "10m"}, 75, "catch-up", "waited 75s for a free slot"),
        ({"catchup": "latest", "catchup_grace": "1m"}, 75, None, "catch-up grace of 60s"),
    ],
)
def test_decide_queued_applies_the_catch_up_policy_to_a_fire_time_grown_old_in_the_queue(
    make_config: Callable[..., Config], settings: dict[str, Any], late: int, trigger: str | None, words: str
) -> None:
    from lib.models import TriggerKind
    from lib.policies import Decision, decide_queued

    job = make_config({"j": {"every": "1 hour", **settings}}).jobs["j"]
    queued = Decision(job, START, TriggerKind.SCHEDULE)
    decision = decide_queued(job, queued, START + timedelta(seconds=late), late, 2)
    assert (decision.trigger.value if decision.trigger else None) == trigger
    assert words in decision.reason
    assert decision.scheduled_for == START


def test_the_prune_takes_no_run_slot(
    make_config: Callable[..., Config],
    make_app: Callable[..., App],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    import lib.daemon
    from lib.models import RunOutcome, RunStatus
    from lib.runners.base import RunContext

    release = threading.Event()
    monkeypatch.setattr(lib.daemon, "prune_and_log", lambda *args: release.wait(30))  # a long first prune
    ran = threading.Semaphore(0)

    class Signalling:
        def run(self, ctx: RunContext) -> RunOutcome:
            ran.release()
            return RunOutcome(RunStatus.SUCCEEDED)

    app = make_app(make_config({"a": {"every": "1 minute"}}, max_parallel=1), Signalling())
    daemon = Daemon(app.config, app.service, clock)  # the real pool of one worker, the real prune thread
    daemon.start()
    try:
        for _ in range(2):
            clock.advance(60)
            daemon.dispatch(daemon.tick(clock.now()))
            assert ran.acquire(timeout=10), "the run waited for the prune's slot"
            assert daemon._idle.wait(10)
    finally:
        release.set()
        daemon.shutdown()
    assert [r["outcome"] for r in runs_of(app, "a")] == ["succeeded", "succeeded"]
