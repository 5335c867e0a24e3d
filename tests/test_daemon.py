"""The daemon driven by a FakeClock: a simulated week runs in milliseconds, no sleeping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lib.app import App, build_app
from lib.config import Config
from lib.daemon import MAX_SLEEP, Daemon
from lib.errors import ConfigError, ConfigIssue, LockedError
from lib.models import RunOutcome, RunRequest, RunStatus, TriggerKind
from lib.policies import MAX_FOLDED_ROWS
from lib.runners.base import CancelToken, RunContext
from tests.conftest import START
from tests.fakes import CrashingRunner, FakeClock, FakeRunner, InlineExecutor, SteppingClock, inline_spawn

WEEK = timedelta(days=7)


def daemon_for(app: App, **kw: Any) -> Daemon:
    kw.setdefault("executor_factory", lambda n: InlineExecutor())
    kw.setdefault("spawn", inline_spawn)
    return Daemon(app.config, app.service, app.clock, **kw)


def runs_of(app: App, job: str) -> list[dict[str, Any]]:
    return list(reversed(app.history.runs(job, limit=None)))


def test_a_simulated_week_fires_every_time_exactly_once(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config(
        {
            "hourly": {"every": "1 hour"},
            "berlin": {"schedule": "0 6 * * *", "timezone": "Europe/Berlin"},
            "off": {"every": "1 minute", "enabled": False},
        }
    )
    runner = FakeRunner()
    app = make_app(config, runner)
    daemon = daemon_for(app)
    assert daemon.run_forever(until=START + WEEK) == 0

    hourly = runs_of(app, "hourly")
    assert len(hourly) == 7 * 24
    assert [datetime.fromisoformat(r["scheduled_for"]) for r in hourly] == [
        START + timedelta(hours=h) for h in range(1, 7 * 24 + 1)
    ]
    assert {r["outcome"] for r in hourly} == {"succeeded"}
    assert {r["trigger"] for r in hourly} == {"schedule"}
    berlin = [datetime.fromisoformat(r["scheduled_for"]) for r in runs_of(app, "berlin")]
    assert berlin == [datetime(2026, 3, d, 5, tzinfo=UTC) for d in range(2, 9)]  # 06:00 CET
    assert runs_of(app, "off") == []
    # Waits are capped at MAX_SLEEP (a clock step is noticed within it) and otherwise end at
    # the next fire time: no more waits than the cap's ticks plus one per fire time.
    assert max(clock.waits) <= MAX_SLEEP
    assert len(clock.waits) <= WEEK / timedelta(seconds=MAX_SLEEP) + 7 * 24 + 7 + 1
    assert len(runner.calls) == 7 * 24 + 7


def test_dst_week_keeps_local_time(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    clock.set(datetime(2026, 3, 26, tzinfo=UTC))
    config = make_config({"berlin": {"every": "day at 06:00", "timezone": "Europe/Berlin"}})
    app = make_app(config)
    daemon_for(app).run_forever(until=clock.now() + WEEK)
    fired = [datetime.fromisoformat(r["scheduled_for"]) for r in runs_of(app, "berlin")]
    hours = [f.hour for f in fired]
    assert hours == [5, 5, 5, 4, 4, 4, 4]  # CET until 29 March, CEST after


def test_failing_and_crashing_runs_do_not_stop_the_loop(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"bad": {"every": "1 hour"}, "crash": {"every": "1 hour"}})
    app = make_app(config, FakeRunner(RunOutcome(RunStatus.FAILED, reason="1 test failed", exit_code=1)))
    app.service.runners = {"local": FakeRunner(RunOutcome(RunStatus.FAILED, exit_code=1))}  # type: ignore[misc]

    class Pick:
        def run(self, ctx: RunContext) -> RunOutcome:
            if ctx.request.job.name == "crash":
                return CrashingRunner().run(ctx)
            return RunOutcome(RunStatus.FAILED, reason="1 test failed", exit_code=1)

    app.service.runners = {"local": Pick()}  # type: ignore[misc]
    daemon_for(app).run_forever(until=START + timedelta(hours=3))
    assert [r["outcome"] for r in runs_of(app, "bad")] == ["failed"] * 3
    crashes = runs_of(app, "crash")
    assert [r["outcome"] for r in crashes] == ["error"] * 3
    assert "RuntimeError: boom" in crashes[0]["reason"]


def test_secrets_never_reach_history_from_a_crash(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"crash": {"every": "1 hour", "env": {"DBT_ENV_SECRET_X": "hunter22"}}})
    app = make_app(config, CrashingRunner())
    daemon_for(app).run_forever(until=START + timedelta(hours=1))
    [run] = runs_of(app, "crash")
    assert "hunter22" not in run["reason"] and "*****" in run["reason"]


def test_overlap_skip_records_a_skipped_run_and_allow_runs_both(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"slow": {"every": "1 minute"}, "both": {"every": "1 minute", "overlap": "allow"}})
    release = threading.Event()
    started = threading.Semaphore(0)

    class Blocking:
        def run(self, ctx: RunContext) -> RunOutcome:
            started.release()
            release.wait(10)
            return RunOutcome(RunStatus.SUCCEEDED)

    app = make_app(config, Blocking())
    pool = ThreadPoolExecutor(max_workers=8)
    daemon = daemon_for(app, executor_factory=lambda n: pool)
    daemon.start()
    clock.advance(60)
    daemon.dispatch(daemon.tick(clock.now()))
    assert started.acquire(timeout=5) and started.acquire(timeout=5)
    clock.advance(60)
    daemon.dispatch(daemon.tick(clock.now()))
    assert started.acquire(timeout=5)  # the second "both" run started beside the first
    release.set()
    daemon.shutdown()
    slow = runs_of(app, "slow")
    assert [r["outcome"] for r in slow] == ["succeeded", "skipped"]
    assert "previous run still running" in slow[1]["reason"]
    assert [r["outcome"] for r in runs_of(app, "both")] == ["succeeded", "succeeded"]


def test_max_parallel_bounds_concurrent_runs(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({f"j{i}": {"every": "1 minute"} for i in range(5)}, max_parallel=2)
    lock = threading.Lock()
    running, peak = 0, 0

    class Counting:
        def run(self, ctx: RunContext) -> RunOutcome:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            threading.Event().wait(0.05)
            with lock:
                running -= 1
            return RunOutcome(RunStatus.SUCCEEDED)

    app = make_app(config, Counting())
    daemon = Daemon(app.config, app.service, clock)  # the real thread pool of max_parallel workers
    daemon.start()
    clock.advance(60)
    daemon.dispatch(daemon.tick(clock.now()))
    # What the loop does: woken when a slot frees, it starts the next queued run (real time:
    # the FakeClock would end the shutdown grace at once).
    for _ in range(100):
        if not daemon.queued_runs() and daemon._idle.is_set():
            break
        daemon._wake.wait(1)
        daemon._wake.clear()
        daemon.dispatch([])
    daemon.shutdown()
    assert peak == 2
    assert [r["outcome"] for i in range(5) for r in runs_of(app, f"j{i}")] == ["succeeded"] * 5


def test_catchup_latest_runs_the_missed_fire_time_once(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"daily": {"schedule": "0 6 * * *", "catchup": "latest", "catchup_grace": "3h"}})
    app = make_app(config)
    # A first daemon runs the 06:00 fire time of 2 March, then the host is down until 07:30 on 4 March.
    daemon_for(app).run_forever(until=datetime(2026, 3, 2, 6, 30, tzinfo=UTC))
    clock.set(datetime(2026, 3, 4, 7, 30, tzinfo=UTC))
    daemon_for(app).run_forever(until=datetime(2026, 3, 4, 8, tzinfo=UTC))
    runs = runs_of(app, "daily")
    assert [(r["trigger"], r["scheduled_for"], r["outcome"]) for r in runs] == [
        ("schedule", "2026-03-02T06:00:00+00:00", "succeeded"),
        # 3 March is coalesced into the catch-up run of the latest, and still gets its row.
        ("schedule", "2026-03-03T06:00:00+00:00", "skipped"),
        ("catch-up", "2026-03-04T06:00:00+00:00", "succeeded"),
    ]
    assert runs[1]["reason"].startswith("coalesced into the run due 2026-03-04T06:00:00+00:00")


def test_catchup_beyond_grace_is_recorded_as_skipped(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"daily": {"schedule": "0 6 * * *", "catchup": "latest", "catchup_grace": "1h"}})
    app = make_app(config)
    daemon_for(app).run_forever(until=datetime(2026, 3, 2, 6, 30, tzinfo=UTC))
    clock.set(datetime(2026, 3, 3, 9, 0, tzinfo=UTC))
    daemon_for(app).run_forever(until=datetime(2026, 3, 3, 9, 1, tzinfo=UTC))
    runs = runs_of(app, "daily")
    assert [r["outcome"] for r in runs] == ["succeeded", "skipped"]
    assert "catch-up grace" in runs[1]["reason"]


def test_catchup_none_does_not_run_what_was_missed_while_down(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"daily": {"schedule": "0 6 * * *"}})
    app = make_app(config)
    daemon_for(app).run_forever(until=datetime(2026, 3, 2, 6, 30, tzinfo=UTC))
    clock.set(datetime(2026, 3, 4, 7, 30, tzinfo=UTC))
    daemon_for(app).run_forever(until=datetime(2026, 3, 5, 7, 0, tzinfo=UTC))
    assert [r["scheduled_for"] for r in runs_of(app, "daily")] == [
        "2026-03-02T06:00:00+00:00",
        "2026-03-05T06:00:00+00:00",
    ]


def test_a_stalled_daemon_skips_missed_fire_times_with_catchup_none(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"q": {"every": "15 minutes"}})
    app = make_app(config, FakeRunner(duration=40 * 60, clock=clock))  # each run blocks the clock 40 min
    daemon_for(app).run_forever(until=START + timedelta(minutes=50))
    runs = runs_of(app, "q")
    # While the first run blocked the loop, 0:30 and 0:45 came due: one row each.
    assert [(r["scheduled_for"][11:16], r["outcome"]) for r in runs] == [
        ("00:15", "succeeded"),
        ("00:30", "skipped"),
        ("00:45", "skipped"),
    ]
    assert runs[1]["reason"].startswith("coalesced into the fire time due")
    assert "missed" in runs[2]["reason"] and "catchup: none" in runs[2]["reason"]


def test_a_suspend_longer_than_a_day_of_fire_times_caps_the_rows_and_says_how_many_more(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    """A 1-minute job, the host suspended for three days: MAX_FOLDED_ROWS rows, the last
    saying how many more fire times there were, then the latest runs: no flood of rows."""

    # The first run holds the clock for three days: what a suspended host looks like to the loop.
    def first_blocks(ctx: Any) -> RunOutcome:
        if len(runner.calls) == 1:
            clock.advance(3 * 86400)
        return RunOutcome(RunStatus.SUCCEEDED)

    runner = FakeRunner(first_blocks)
    app = make_app(make_config({"m": {"every": "1 minute"}}), runner)
    daemon_for(app).run_forever(until=START + timedelta(days=3, seconds=90))
    skipped = [r for r in runs_of(app, "m") if r["outcome"] == "skipped"]
    assert len(skipped) == MAX_FOLDED_ROWS  # 4319 fire times passed: a day of them, one row each
    assert "(and 2879 later ones up to" in skipped[-1]["reason"]
    assert [r["outcome"] for r in runs_of(app, "m")].count("succeeded") == 2  # before and after
    assert len({r["scheduled_for"] for r in skipped}) == len(skipped)


def test_reload_keeps_last_good_config_and_applies_a_valid_one(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    good = make_config({"a": {"every": "1 hour"}})
    newer = make_config({"a": {"every": "1 hour"}, "b": {"every": "30 minutes"}})
    app = make_app(good)
    versions: list[Any] = [ConfigError([ConfigIssue("jobs.a.every", "bad", line=3)]), newer]

    def reload() -> Config:
        item = versions.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    daemon = daemon_for(app, reload_config=reload)
    daemon.start()
    first_fire = daemon.next_fire["a"]
    assert daemon.reload() is False
    assert set(daemon.config.jobs) == {"a"}
    assert daemon.reload() is True
    assert set(daemon.config.jobs) == {"a", "b"}
    assert daemon.next_fire["a"] == first_fire  # an unchanged schedule keeps its place
    assert daemon.next_fire["b"] == START + timedelta(minutes=30)
    daemon.shutdown()


def test_sighup_style_request_reload_is_handled_by_the_loop(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    app = make_app(make_config({"a": {"every": "1 hour"}}))
    calls: list[int] = []

    def reload() -> Config:
        calls.append(1)
        raise ConfigError([ConfigIssue("jobs", "broken")])

    daemon = daemon_for(app, reload_config=reload)
    daemon.request_reload()
    daemon.run_forever(until=START + timedelta(hours=2))
    assert calls == [1]
    assert len(runs_of(app, "a")) == 2  # still running on the last good config


def test_second_daemon_on_the_same_state_dir_is_refused(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    app = make_app(make_config({"a": {"every": "1 hour"}}))
    first = daemon_for(app)
    first.start()
    with pytest.raises(LockedError, match="another dbt-scheduler daemon already runs"):
        daemon_for(app).start()
    first.shutdown()
    second = daemon_for(app)
    second.start()  # the lock is free again
    second.shutdown()


def test_stop_cancels_running_jobs_after_the_grace(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"long": {"every": "1 minute"}}, shutdown_grace="5s")
    started = threading.Event()

    class UntilCancelled:
        def run(self, ctx: RunContext) -> RunOutcome:
            started.set()
            stop = threading.Event()
            ctx.cancel.on_cancel(stop.set)
            stop.wait(10)
            return RunOutcome(RunStatus.CANCELLED if ctx.cancel.cancelled else RunStatus.SUCCEEDED)

    app = make_app(config, UntilCancelled())
    daemon = Daemon(app.config, app.service, clock)
    daemon.start()
    clock.advance(60)
    daemon.dispatch(daemon.tick(clock.now()))
    assert started.wait(5)
    daemon.request_stop()
    daemon.shutdown()
    [run] = runs_of(app, "long")
    assert run["outcome"] == "cancelled"
    assert 5.0 in clock.waits  # it gave the job its grace first


def test_loop_exits_on_stop_request(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    app = make_app(make_config({"a": {"every": "1 hour"}}))
    daemon = daemon_for(app)

    class StopAfterSecond:
        calls = 0

        def run(self, ctx: RunContext) -> RunOutcome:
            self.calls += 1
            if self.calls == 2:
                daemon.request_stop()
            return RunOutcome(RunStatus.SUCCEEDED)

    app.service.runners = {"local": StopAfterSecond()}  # type: ignore[misc]
    assert daemon.run_forever() == 0
    assert len(runs_of(app, "a")) == 2
    assert clock.now() == START + timedelta(hours=2)


def test_restart_reattaches_to_remote_runs_instead_of_running_again(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"remote": {"schedule": "0 6 * * *"}})

    class Reattaching(FakeRunner):
        def __init__(self) -> None:
            super().__init__()
            self.followed: list[str] = []

        def reattach(self, ctx: RunContext, external_id: str) -> RunOutcome:
            self.followed.append(external_id)
            return RunOutcome(RunStatus.SUCCEEDED, external_id=external_id, exit_code=0)

    runner = Reattaching()
    app = make_app(config, runner)
    started = START - timedelta(minutes=5)
    job = config.jobs["remote"]
    app.history.start(RunRequest(job, "r-remote", TriggerKind.SCHEDULE, started), started, None)
    app.history.set_external_id("r-remote", "arn:aws:ecs:eu-west-1:1:task/dbt/abc")
    gone = RunRequest(replace(job, name="gone"), "r-gone", TriggerKind.SCHEDULE, started)
    app.history.start(gone, started, None)
    app.history.set_external_id("r-gone", "arn:aws:ecs:eu-west-1:1:task/dbt/def")

    daemon = daemon_for(app)
    daemon.start()
    daemon.shutdown()
    assert runner.followed == ["arn:aws:ecs:eu-west-1:1:task/dbt/abc"]
    assert runner.calls == []  # no second RunTask: run() was never called
    row = app.history.get("r-remote")
    assert row is not None and row["outcome"] == "succeeded" and row["started_at"] == started.isoformat()
    gone_row = app.history.get("r-gone")
    assert gone_row is not None and gone_row["outcome"] == "cancelled"
    assert "no longer in jobs.yaml" in gone_row["reason"]


def test_restart_stops_a_left_container_and_leaves_runs_a_live_scheduler_elsewhere_follows(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    import sqlite3
    import subprocess

    from lib.orphans import ORPHAN_CONTAINER
    from lib.procs import start_time

    config = make_config({"boxed": {"schedule": "0 6 * * *"}})

    class Containers(FakeRunner):
        def __init__(self) -> None:
            super().__init__()
            self.stopped: list[str] = []

        def stop_container(self, name: str) -> bool:
            self.stopped.append(name)
            return True

    runner = Containers()
    app = make_app(config, runner)
    job = config.jobs["boxed"]
    started = START - timedelta(minutes=5)
    # Another live process stands for a `run-now` in another shell supervising two runs.
    other = subprocess.Popen(["sleep", "300"])
    try:
        for attempt in (1, 2):
            left, elsewhere, local = (f"{name}-{attempt}" for name in ("left", "elsewhere", "local"))
            for run_id in (left, elsewhere, local):
                app.history.start(RunRequest(job, run_id, TriggerKind.SCHEDULE, started), started, None)
            app.history.set_external_id(left, f"dbt-scheduler-boxed-{left}")
            app.history.set_external_id(elsewhere, f"dbt-scheduler-boxed-{elsewhere}")
            with sqlite3.connect(app.history.path) as conn:
                conn.execute(
                    "UPDATE runs SET supervisor_pid = ?, supervisor_start = ? WHERE run_id IN (?, ?)",
                    (other.pid, start_time(other.pid), elsewhere, local),
                )
            daemon = daemon_for(app)
            daemon.start()
            daemon.shutdown()
            assert runner.stopped[-1] == f"dbt-scheduler-boxed-{left}" and len(runner.stopped) == attempt
            row = app.history.get(left)
            assert row is not None and row["outcome"] == "cancelled"
            assert row["reason"] == ORPHAN_CONTAINER.format(name=f"dbt-scheduler-boxed-{left}")
            for run_id in (elsewhere, local):  # their own scheduler records their real outcome
                assert app.history.get(run_id)["outcome"] == "running"  # type: ignore[index]
            assert runner.calls == []
    finally:
        other.kill()
        other.wait()


# --------------------------------------------------------------------------------------
# DST nights: several jobs in one zone, every fire time once, nothing missed
# --------------------------------------------------------------------------------------


def _hours(day: datetime, *hours: float) -> list[datetime]:
    return [day + timedelta(hours=hour) for hour in hours]


# (zone, simulate from, until, expected UTC fire times per job). Midnight UTC of the DST day
# is the reference; negative hours are the evening before.
_BERLIN_FALL = datetime(2026, 10, 25, tzinfo=UTC)  # 03:00 CEST → 02:00 CET at 01:00 UTC
_BERLIN_SPRING = datetime(2026, 3, 29, tzinfo=UTC)  # 02:00 CET → 03:00 CEST at 01:00 UTC
_NEW_YORK_SPRING = datetime(2026, 3, 8, tzinfo=UTC)  # 02:00 EST → 03:00 EDT at 07:00 UTC
_NEW_YORK_FALL = datetime(2026, 11, 1, tzinfo=UTC)  # 02:00 EDT → 01:00 EST at 06:00 UTC
DST_NIGHTS = {
    "berlin-fall-back": (
        "Europe/Berlin",
        _BERLIN_FALL - timedelta(hours=3),
        _BERLIN_FALL + timedelta(hours=6),
        {
            "at_0230": _hours(_BERLIN_FALL, 0.5),  # 02:30 CEST, not again at 02:30 CET
            "at_0130": _hours(_BERLIN_FALL, -0.5),
            "hourly": _hours(_BERLIN_FALL, *range(-2, 7)),  # 02:00 CEST and 02:00 CET both
            "six_hours": _hours(_BERLIN_FALL, -2, 5),  # 00:00 CEST, 06:00 CET: 7 real hours
        },
    ),
    "berlin-spring-forward": (
        "Europe/Berlin",
        _BERLIN_SPRING - timedelta(hours=2),
        _BERLIN_SPRING + timedelta(hours=6),
        {
            "at_0230": _hours(_BERLIN_SPRING, 1),  # 02:30 does not exist: at the jump, 03:00 CEST
            "at_0130": _hours(_BERLIN_SPRING, 0.5),
            "hourly": _hours(_BERLIN_SPRING, *range(-1, 7)),
            "six_hours": _hours(_BERLIN_SPRING, -1, 4),  # 00:00 CET, 06:00 CEST: 5 real hours
        },
    ),
    "new-york-spring-forward": (
        "America/New_York",
        _NEW_YORK_SPRING + timedelta(hours=4),
        _NEW_YORK_SPRING + timedelta(hours=12),
        {
            "at_0230": _hours(_NEW_YORK_SPRING, 7),  # at the jump, 03:00 EDT
            "at_0130": _hours(_NEW_YORK_SPRING, 6.5),
            "hourly": _hours(_NEW_YORK_SPRING, *range(5, 13)),
            "six_hours": _hours(_NEW_YORK_SPRING, 5, 10),
        },
    ),
    "new-york-fall-back": (
        "America/New_York",
        _NEW_YORK_FALL + timedelta(hours=3),
        _NEW_YORK_FALL + timedelta(hours=12),
        {
            "at_0230": _hours(_NEW_YORK_FALL, 7.5),
            "at_0130": _hours(_NEW_YORK_FALL, 5.5),  # 01:30 EDT, not again at 01:30 EST
            "hourly": _hours(_NEW_YORK_FALL, *range(4, 13)),
            "six_hours": _hours(_NEW_YORK_FALL, 4, 11),
        },
    ),
}


@pytest.mark.parametrize("night", DST_NIGHTS)
def test_dst_night_runs_every_fire_time_of_every_job_once_and_misses_none(
    night: str, make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    zone, start, until, expected = DST_NIGHTS[night]
    clock.set(start)
    config = make_config(
        {
            "at_0230": {"schedule": "30 2 * * *", "timezone": zone},
            "at_0130": {"schedule": "30 1 * * *", "timezone": zone},
            "hourly": {"schedule": "0 * * * *", "timezone": zone},
            "six_hours": {"every": "6 hours", "timezone": zone},
        }
    )
    app = make_app(config)
    daemon_for(app).run_forever(until=until)
    for job, fire_times in expected.items():
        runs = runs_of(app, job)
        assert [(r["trigger"], r["outcome"]) for r in runs] == [("schedule", "succeeded")] * len(
            fire_times
        ), (
            job,
            runs,
        )
        assert [datetime.fromisoformat(r["scheduled_for"]) for r in runs] == fire_times, job
        assert all(r["scheduled_for"].endswith("+00:00") for r in runs)  # stored in UTC


def test_next_fire_map_holds_utc(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    app = make_app(make_config({"berlin": {"schedule": "30 2 * * *", "timezone": "Europe/Berlin"}}))
    daemon = daemon_for(app)
    daemon.start()
    assert daemon.next_fire["berlin"] == datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    assert daemon.next_fire["berlin"].tzinfo is UTC
    daemon.shutdown()


# --------------------------------------------------------------------------------------
# The sleep cap
# --------------------------------------------------------------------------------------


def test_no_wait_is_longer_than_max_sleep_even_with_nothing_due_for_days(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    app = make_app(make_config({"weekly": {"every": "week"}, "off": {"every": "1 hour", "enabled": False}}))
    daemon_for(app).run_forever(until=START + timedelta(days=2))
    assert clock.waits and max(clock.waits) <= MAX_SLEEP


def test_a_wall_clock_step_during_a_wait_is_noticed_and_the_fire_time_runs_on_time(
    make_config: Callable[..., Config],
) -> None:
    # The host is suspended (or NTP steps the clock) during the first wait: the wall clock
    # moves almost six hours while the monotonic wait lasts one minute. An uncapped wait of
    # six hours would then end at ~12:00 and record the 06:00 run as missed.
    clock = SteppingClock(START)
    config = make_config({"daily": {"schedule": "0 6 * * *"}})
    app = build_app(config, clock=clock, runners={"local": FakeRunner()}, base_env={})
    clock.step_during_next_wait(timedelta(hours=6).total_seconds() - 90)
    daemon_for(app).run_forever(until=datetime(2026, 3, 2, 6, 30, tzinfo=UTC))
    assert [(r["trigger"], r["outcome"], r["scheduled_for"]) for r in runs_of(app, "daily")] == [
        ("schedule", "succeeded", "2026-03-02T06:00:00+00:00")
    ]
    assert clock.waits[0] == MAX_SLEEP


# --------------------------------------------------------------------------------------
# Stop requests are signal-safe: flags only, the work on the loop's thread
# --------------------------------------------------------------------------------------


class _UntilCancelled:
    """A run that lasts until it is cancelled; records the thread its cancel came on."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled_on: list[str] = []

    def run(self, ctx: RunContext) -> RunOutcome:
        stop = threading.Event()
        ctx.cancel.on_cancel(lambda: (self.cancelled_on.append(threading.current_thread().name), stop.set()))
        self.started.set()
        stop.wait(30)
        return RunOutcome(RunStatus.CANCELLED if ctx.cancel.cancelled else RunStatus.SUCCEEDED)


def test_a_second_stop_request_only_sets_flags_and_shutdown_cancels_without_the_grace(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"long": {"every": "1 minute"}}, shutdown_grace="1h")
    runner = _UntilCancelled()
    app = make_app(config, runner)
    daemon = Daemon(app.config, app.service, clock)
    daemon.start()
    clock.advance(60)
    daemon.dispatch(daemon.tick(clock.now()))
    assert runner.started.wait(5)
    daemon.request_stop()
    daemon.request_stop()  # what a second SIGTERM's handler calls
    assert runner.cancelled_on == []  # nothing was cancelled inside the "handler"
    loop = threading.Thread(target=daemon.shutdown, name="loop")
    loop.start()
    loop.join(30)
    assert not loop.is_alive()
    assert runner.cancelled_on == ["loop"]
    assert 3600.0 not in clock.waits  # the second request cut the hour of grace short
    [run] = runs_of(app, "long")
    assert run["outcome"] == "cancelled"


def test_a_stop_request_landing_while_runs_are_being_cancelled_does_not_deadlock(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock, monkeypatch: Any
) -> None:
    # A signal handler runs on the main thread between two bytecodes, for example while
    # shutdown() holds a run's CancelToken lock. A handler that cancelled runs itself would
    # take that lock again and wait for ever.
    import lib.daemon

    config = make_config({"long": {"every": "1 minute"}}, shutdown_grace="5s")
    runner = _UntilCancelled()
    app = make_app(config, runner)
    daemon = Daemon(app.config, app.service, clock)

    class SignalledWhileCancelling(CancelToken):
        def cancel(self) -> None:
            with self._lock:
                daemon.request_stop()  # the second SIGTERM arrives here
            super().cancel()

    monkeypatch.setattr(lib.daemon, "CancelToken", SignalledWhileCancelling)
    daemon.start()
    clock.advance(60)
    daemon.dispatch(daemon.tick(clock.now()))
    assert runner.started.wait(5)
    daemon.request_stop()
    loop = threading.Thread(target=daemon.shutdown, name="loop", daemon=True)
    loop.start()
    loop.join(30)
    assert not loop.is_alive(), "shutdown deadlocked on a stop request made while cancelling"
    [run] = runs_of(app, "long")
    assert run["outcome"] == "cancelled"


def test_reload_rebuilds_the_runners_when_their_settings_change(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    """A job added with a new runner runs after SIGHUP, not "no runner 'docker' is configured"."""
    local_only = make_config({"a": {"every": "1 hour"}})
    with_docker = make_config(
        {"a": {"every": "1 hour"}, "d": {"every": "1 hour", "runner": "docker"}},
        docker={"engine": "podman", "image": "img:1"},
    )
    other_image = make_config(
        {"a": {"every": "1 hour"}, "d": {"every": "1 hour", "runner": "docker"}},
        docker={"engine": "podman", "image": "img:2"},
    )
    app = make_app(local_only)
    versions = [with_docker, with_docker, other_image]
    built: list[Config] = []

    def factory(config: Config) -> dict[str, Any]:
        built.append(config)
        return {kind: FakeRunner() for kind in ("local", "docker")}

    daemon = daemon_for(app, reload_config=lambda: versions.pop(0), runner_factory=factory)
    daemon.start()
    assert daemon.reload() is True
    assert built == [with_docker] and set(app.service.runners) == {"local", "docker"}
    daemon.run_forever(until=START + timedelta(hours=2))
    assert [r["outcome"] for r in runs_of(app, "d")] == ["succeeded", "succeeded"]
    assert daemon.reload() is True  # the same runner settings: nothing rebuilt
    assert built == [with_docker]
    assert daemon.reload() is True  # another docker image: rebuilt
    assert built == [with_docker, other_image]
    daemon.shutdown()


def test_reload_keeps_config_and_runners_when_the_runner_factory_fails(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    app = make_app(make_config({"a": {"every": "1 hour"}}))
    runners = app.service.runners
    with_docker = make_config({"a": {"every": "1 hour"}, "d": {"every": "1 hour", "runner": "docker"}})

    def factory(config: Config) -> dict[str, Any]:
        raise RuntimeError("podman is not installed")

    daemon = daemon_for(app, reload_config=lambda: with_docker, runner_factory=factory)
    daemon.start()
    assert daemon.reload() is False
    assert set(daemon.config.jobs) == {"a"} and app.service.runners is runners
    daemon.run_forever(until=START + timedelta(hours=2))
    assert [r["outcome"] for r in runs_of(app, "a")] == ["succeeded", "succeeded"]
    daemon.shutdown()
