"""The control plane (lib/control.py) with the daemon: run-now and cancel requests through the
loop's queue, and the event bus. FakeClock, no wall-clock sleeps; blocking runners are
released by events, never by timing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from lib.app import App
from lib.config import Config
from lib.control import (
    Accepted,
    Cancel,
    ControlQueue,
    EventBus,
    Pause,
    Refused,
    RunEvent,
    RunNow,
    admit_run_now,
    cancel_targets,
)
from lib.daemon import Daemon
from lib.models import RunOutcome, RunStatus
from lib.runners.base import RunContext
from tests.conftest import START
from tests.fakes import FakeClock, FakeRunner, InlineExecutor, inline_spawn

TIMEOUT = 10  # a hang guard only: every wait below ends on an event


class Gate:
    """A runner whose runs go on until released or cancelled; counts how many run at once."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self.running = 0
        self.peak = 0
        self.lines: list[str] = []

    def run(self, ctx: RunContext) -> RunOutcome:
        done = threading.Event()
        ctx.cancel.on_cancel(done.set)
        with self._lock:
            self._events[ctx.request.run_id] = done
            self.running += 1
            self.peak = max(self.peak, self.running)
        ctx.on_line(f"hello from {ctx.request.job.name}")
        self.started.release()
        try:
            assert done.wait(TIMEOUT), "a Gate run was never released"
        finally:
            with self._lock:
                self.running -= 1
        if ctx.cancel.cancelled:
            return RunOutcome(RunStatus.CANCELLED, reason=ctx.cancel.reason)
        return RunOutcome(RunStatus.SUCCEEDED)

    def wait_started(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.started.acquire(timeout=TIMEOUT), "a run did not start"

    def release(self, run_id: str | None = None) -> None:
        with self._lock:
            events = [e for rid, e in self._events.items() if run_id in (None, rid)]
        for event in events:
            event.set()


def pooled(app: App, **kw: Any) -> tuple[Daemon, ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=8)
    daemon = Daemon(
        app.config, app.service, app.clock, executor_factory=lambda n: pool, spawn=inline_spawn, **kw
    )
    daemon.start()
    return daemon, pool


def inline(app: App) -> Daemon:
    """A started daemon that runs each job on the calling thread."""
    daemon = Daemon(
        app.config, app.service, app.clock, executor_factory=lambda n: InlineExecutor(), spawn=inline_spawn
    )
    daemon.start()
    return daemon


def ask(daemon: Daemon, request: RunNow | Cancel) -> Any:
    """Submit as another thread would, then let the loop answer (one iteration's drain)."""
    future = daemon.control.queue.submit(request)
    daemon.control.queue.drain(daemon.answer)
    return future.result(timeout=TIMEOUT)


def runs_of(app: App, job: str) -> list[dict[str, Any]]:
    return list(reversed(app.history.runs(job, limit=None)))


# ---------------------------------------------------------------------- pure decisions


def test_admit_run_now_refuses_for_a_reason_and_runs_a_disabled_job(
    make_config: Callable[..., Config],
) -> None:
    config = make_config(
        {
            "a": {"every": "1 hour"},
            "off": {"every": "1 hour", "enabled": False},
            "both": {"every": "1 hour", "overlap": "allow"},
        }
    )
    jobs = config.jobs

    def admit(
        job: str, running: tuple[str, ...] = (), queued: tuple[str, ...] = (), stopping: bool = False
    ) -> Any:
        return admit_run_now(RunNow(job, "alice"), jobs, running, queued, stopping, 2)

    assert admit("a") is None
    assert admit("off") is None  # enabled: false keeps it off the schedule, not off run-now
    assert admit("both", running=("r1",)) is None  # overlap: allow runs beside it
    assert admit("nope").code == "unknown-job"
    assert "reload the daemon" in admit("nope").reason
    running = admit("a", running=("r1",))
    assert (
        running.code == "running" and "run r1" in running.reason and "scheduler.py cancel a" in running.reason
    )
    waiting = admit("a", queued=("r2",))
    assert waiting.code == "waiting" and "max_parallel 2" in waiting.reason
    assert admit("a", stopping=True).code == "stopping"


def test_cancel_targets_pick_the_runs_asked_for(make_config: Callable[..., Config]) -> None:
    jobs = make_config({"a": {"every": "1 hour"}}).jobs
    assert cancel_targets(Cancel("a", "bob"), jobs, ["r1", "r2"], ["r3"]) == (["r1", "r2"], ["r3"])
    assert cancel_targets(Cancel("a", "bob", run_id="r2"), jobs, ["r1", "r2"], ["r3"]) == (["r2"], [])
    assert cancel_targets(Cancel("a", "bob", run_id="r3"), jobs, ["r1"], ["r3"]) == ([], ["r3"])
    nothing = cancel_targets(Cancel("a", "bob", run_id="r9"), jobs, ["r1"], [])
    assert (
        isinstance(nothing, Refused)
        and nothing.code == "nothing-to-cancel"
        and "run r9 of a" in nothing.reason
    )
    assert cancel_targets(Cancel("a", "bob"), jobs, [], []).code == "nothing-to-cancel"  # type: ignore[union-attr]
    assert cancel_targets(Cancel("zz", "bob"), jobs, [], []).code == "unknown-job"  # type: ignore[union-attr]


# ---------------------------------------------------------------------- the queue


def test_a_closed_queue_refuses_at_once_and_a_failing_answer_is_refused_not_lost() -> None:
    queue = ControlQueue()
    woken = threading.Event()
    queue.bind(woken.set)
    first = queue.submit(RunNow("a", "alice"))
    assert woken.is_set() and queue.pending()

    def crash(request: Any) -> Any:
        raise RuntimeError("boom")

    assert queue.drain(crash) == 1
    refused = first.result(timeout=TIMEOUT)
    assert isinstance(refused, Refused) and refused.code == "error" and "boom" in refused.reason
    waiting = queue.submit(RunNow("a", "alice"))
    queue.close("the scheduler is stopping")
    assert waiting.result(timeout=TIMEOUT) == Refused("stopping", "the scheduler is stopping")
    assert queue.submit(RunNow("b", "bob")).result(timeout=TIMEOUT).code == "stopping"  # type: ignore[union-attr]
    assert not queue.pending()


def test_a_submit_from_another_thread_wakes_the_sleeping_loop_at_once(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    class WaitingClock(FakeClock):
        """The loop really waits on its event here (a day, as far as the clock knows)."""

        def wait(self, seconds: float, event: threading.Event) -> bool:
            self.waits.append(seconds)
            return event.wait(TIMEOUT)

    clock = WaitingClock(START)
    config = make_config({"a": {"schedule": "0 6 * * *"}})
    app = make_app(config)
    app.clock = clock
    app.service.clock = clock
    daemon = Daemon(
        app.config, app.service, clock, executor_factory=lambda n: InlineExecutor(), spawn=inline_spawn
    )
    loop = threading.Thread(target=daemon.run_forever)
    loop.start()
    try:
        for attempt in (1, 2):
            reply = daemon.control.queue.submit(RunNow("a", f"user{attempt}")).result(timeout=TIMEOUT)
            assert isinstance(reply, Accepted)
    finally:
        daemon.request_stop()
        loop.join(TIMEOUT)
    assert not loop.is_alive()
    assert [(r["trigger"], r["triggered_by"], r["outcome"]) for r in runs_of(app, "a")] == [
        ("manual", "user1", "succeeded"),
        ("manual", "user2", "succeeded"),
    ]


# ---------------------------------------------------------------------- run-now through the daemon


def test_run_now_goes_through_the_daemon_and_is_recorded_with_its_user(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"a": {"schedule": "0 6 * * *"}})
    runner = FakeRunner()
    app = make_app(config, runner)
    daemon = inline(app)
    with daemon.control.bus.subscribe(["a"]) as events:
        for user in ("alice", "bob"):
            reply = ask(daemon, RunNow("a", user, target="prod", select="orders+"))
            assert isinstance(reply, Accepted) and reply.waiting == 0
        kinds = []
        while (event := events.get(timeout=0)) is not None:
            kinds.append(event.kind)
    daemon.shutdown()
    rows = runs_of(app, "a")
    assert [(r["trigger"], r["triggered_by"], r["outcome"]) for r in rows] == [
        ("manual", "alice", "succeeded"),
        ("manual", "bob", "succeeded"),
    ]
    assert [r["target_override"] for r in rows] == ["prod", "prod"]
    assert [ctx.request.select for ctx in runner.calls] == ["orders+", "orders+"]
    assert kinds == ["started", "finished"] * 2


def test_overlap_and_max_parallel_hold_for_scheduled_and_submitted_runs_together(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"s": {"every": "1 minute"}, "m": {"schedule": "0 6 * * *"}}, max_parallel=1)
    gate = Gate()
    app = make_app(config, gate)
    daemon, pool = pooled(app)
    for _attempt in (1, 2):
        clock.advance(60)
        daemon.dispatch(daemon.tick(clock.now()))  # s takes the only slot
        gate.wait_started()
        # The job running now is refused (overlap: skip); the other waits for the slot.
        assert ask(daemon, RunNow("s", "alice")).code == "running"
        queued = ask(daemon, RunNow("m", "alice"))
        assert isinstance(queued, Accepted) and queued.waiting == 1
        assert ask(daemon, RunNow("m", "bob")).code == "waiting"
        assert [entry.job for entry in daemon.queued_runs()] == ["m"]
        gate.release()  # s ends; the loop starts the queued run-now in the freed slot
        _until(lambda: not daemon.active_runs())
        daemon._start_queued()
        gate.wait_started()
        assert daemon.active_runs() == {"m": 1}
        gate.release()
        _until(lambda: not daemon.active_runs())
    daemon.shutdown()
    pool.shutdown()
    assert gate.peak == 1
    assert [r["outcome"] for r in runs_of(app, "s")] == ["succeeded", "succeeded"]
    assert [(r["trigger"], r["triggered_by"]) for r in runs_of(app, "m")] == [("manual", "alice")] * 2


def test_a_queued_run_now_keeps_its_place_and_waits_past_the_misfire_limit(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"s": {"every": "1 minute"}, "m": {"every": "1 minute"}}, max_parallel=1)
    gate = Gate()
    app = make_app(config, gate)
    daemon, pool = pooled(app)
    daemon.next_fire["m"] = START + timedelta(days=1)  # only s fires at first
    clock.advance(60)
    daemon.dispatch(daemon.tick(clock.now()))
    gate.wait_started()
    [run_id] = ask(daemon, RunNow("m", "alice")).run_ids
    clock.advance(300)  # 5 minutes pass: far past the misfire limit of a fire time
    daemon.next_fire["m"] = clock.now()  # m's own fire time comes while the run-now waits
    daemon.dispatch(daemon.tick(clock.now()))
    assert [q.run_id for q in daemon.queued_runs()] == [run_id]
    gate.release()
    _until(lambda: not daemon.active_runs())
    daemon._start_queued()
    gate.wait_started()
    gate.release()
    _until(lambda: not daemon.active_runs())
    daemon.shutdown()
    pool.shutdown()
    m = runs_of(app, "m")
    assert [(r["run_id"] == run_id, r["outcome"]) for r in m] == [(False, "skipped"), (True, "succeeded")]
    assert f"a run-now of this job (run {run_id}) is waiting for a free slot" in m[0]["reason"]


def test_cancel_stops_a_running_run_through_its_token_and_drops_a_queued_one(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"a": {"schedule": "0 6 * * *"}, "b": {"schedule": "0 6 * * *"}}, max_parallel=1)
    gate = Gate()
    app = make_app(config, gate)
    daemon, pool = pooled(app)
    for _attempt in (1, 2):
        [running] = ask(daemon, RunNow("a", "alice")).run_ids
        gate.wait_started()
        [queued] = ask(daemon, RunNow("b", "alice")).run_ids
        assert ask(daemon, Cancel("a", "bob", run_id="nope")).code == "nothing-to-cancel"
        assert ask(daemon, Cancel("b", "bob")) == Accepted((queued,))
        assert daemon.queued_runs() == []
        with daemon.control.bus.subscribe(["a"]) as events:
            assert ask(daemon, Cancel("a", "bob", via="Ctrl-C in run-now")) == Accepted((running,))
            finished = _next_finished(events)
        assert finished.record is not None and finished.record.run_id == running
        _until(lambda: not daemon.active_runs())
        assert ask(daemon, Cancel("a", "bob")).code == "nothing-to-cancel"
    daemon.shutdown()
    pool.shutdown()
    a, b = runs_of(app, "a"), runs_of(app, "b")
    assert [(r["outcome"], r["reason"]) for r in a] == [
        ("cancelled", "cancelled by bob (Ctrl-C in run-now)")
    ] * 2
    assert [r["outcome"] for r in b] == ["skipped", "skipped"]
    assert b[0]["reason"] == (
        "cancelled by bob (scheduler.py cancel) before it started (it was waiting for a free slot)"
    )


def test_a_stopping_daemon_refuses_new_requests_and_a_queued_run_now_is_told(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    config = make_config({"a": {"schedule": "0 6 * * *"}, "b": {"schedule": "0 6 * * *"}}, max_parallel=1)
    gate = Gate()
    app = make_app(config, gate)
    daemon, pool = pooled(app)
    ask(daemon, RunNow("a", "alice"))
    gate.wait_started()
    [queued] = ask(daemon, RunNow("b", "alice")).run_ids
    with daemon.control.bus.subscribe(["b"]) as events:
        gate.release()
        daemon.request_stop()
        daemon.shutdown()
        finished = _next_finished(events)
    pool.shutdown()
    assert finished.run_id == queued and finished.record is not None
    assert finished.record.outcome.status is RunStatus.SKIPPED
    assert daemon.control.queue.submit(RunNow("a", "bob")).result(timeout=TIMEOUT).code == "stopping"  # type: ignore[union-attr]


# ---------------------------------------------------------------------- events


def test_a_blocking_listener_never_delays_publish_and_its_drops_are_counted() -> None:
    bus = EventBus()
    entered, release, all_seen = threading.Event(), threading.Event(), threading.Event()
    seen: list[RunEvent] = []

    def stuck(event: RunEvent) -> None:
        seen.append(event)
        entered.set()
        release.wait(TIMEOUT)
        if len(seen) == 11:
            all_seen.set()

    listener = bus.listen(stuck, "stuck", maxsize=10)
    bus.publish(RunEvent("started", "a", "r1"))
    assert entered.wait(TIMEOUT)  # the listener holds the first event and blocks on it
    for i in range(100):
        bus.publish(RunEvent("line", "a", "r1", line=str(i)))
    # All 100 were published while the listener was still stuck on the first event.
    assert not release.is_set() and len(seen) == 1
    assert listener.subscription.dropped == 90
    release.set()
    assert all_seen.wait(TIMEOUT)
    listener.close(TIMEOUT)
    assert [e.line for e in seen[1:]] == [str(i) for i in range(90, 100)]  # the newest were kept
    assert bus.subscribers == 0


def test_a_subscription_gets_only_its_jobs_and_close_wakes_a_reader() -> None:
    bus = EventBus()
    mine = bus.subscribe(["a"])
    bus.publish(RunEvent("line", "b", "r2", line="not mine"))
    bus.publish(RunEvent("line", "a", "r1", line="mine"))
    event = mine.get(timeout=0)
    assert event is not None and event.line == "mine"
    assert mine.get(timeout=0) is None
    woke: list[RunEvent | None] = []
    reader = threading.Thread(target=lambda: woke.append(mine.get()))
    reader.start()
    bus.close()
    reader.join(TIMEOUT)
    assert woke == [None]


def test_a_blocked_subscriber_never_delays_a_day_of_scheduled_runs(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"hourly": {"every": "1 hour"}, "quarter": {"every": "15 minutes"}})
    app = make_app(config)
    daemon = Daemon(
        app.config, app.service, clock, executor_factory=lambda n: InlineExecutor(), spawn=inline_spawn
    )
    release = threading.Event()
    never_read = daemon.control.bus.subscribe(maxsize=5)  # nobody drains it
    listener = daemon.control.bus.listen(lambda event: release.wait(TIMEOUT), "stuck", maxsize=5)
    # The runs are inline, on this very thread: a publish that waited would hang the test.
    daemon.run_forever(until=START + timedelta(days=1))
    assert not release.is_set()
    assert len(runs_of(app, "hourly")) == 24 and len(runs_of(app, "quarter")) == 96
    assert never_read.dropped == 2 * (24 + 96) - 5  # started + finished each, the buffer kept 5
    release.set()
    listener.close(TIMEOUT)


# ---------------------------------------------------------------------- helpers


def _until(predicate: Callable[[], bool]) -> None:
    """Wait for the pool's thread to finish a run's bookkeeping (a hang guard, no timing)."""
    done = threading.Event()
    for _ in range(100_000):
        if predicate():
            return
        done.wait(0.001)
    raise AssertionError("condition never held")


def _next_finished(events: Any) -> RunEvent:
    while True:
        event = events.get(timeout=TIMEOUT)
        assert event is not None, "no finished event"
        if event.kind == "finished":
            return event


@pytest.fixture(autouse=True)
def _no_threads_left() -> Any:
    before = set(threading.enumerate())
    yield
    stuck = [t for t in threading.enumerate() if t not in before and t.name.startswith("events-")]
    assert not stuck, stuck


def test_a_paused_job_is_not_run_at_its_fire_times_and_stays_paused_after_a_restart(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"a": {"every": "1 hour"}, "b": {"every": "1 hour"}})
    app = make_app(config)

    first = inline(app)
    assert isinstance(ask(first, Pause("a", "olga")), Accepted)
    assert ask(first, Pause("nope", "olga")).code == "unknown-job"
    for _hour in (1, 2):
        clock.advance(3600)
        first.dispatch(first.tick(clock.now()))
    assert [r["job"] for r in runs_of(app, "a")] == [] and len(runs_of(app, "b")) == 2
    assert isinstance(ask(first, RunNow("a", "olga")), Accepted)  # run-now still runs it
    first.shutdown()
    second = inline(app)  # a restart: still paused
    assert "a" not in second.next_fire and "b" in second.next_fire
    assert app.history.paused()["a"]["paused_by"] == "olga"
    clock.advance(3600)
    second.dispatch(second.tick(clock.now()))
    assert [r["trigger"] for r in runs_of(app, "a")] == ["manual"]
    assert isinstance(ask(second, Pause("a", "olga", paused=False)), Accepted)
    assert second.next_fire["a"] == clock.now() + timedelta(hours=1)  # nothing missed is caught up
    for _hour in (1, 2):
        clock.advance(3600)
        second.dispatch(second.tick(clock.now()))
    second.shutdown()
    assert [r["trigger"] for r in runs_of(app, "a")] == ["manual", "schedule", "schedule"]
    assert app.history.paused() == {}


def test_a_restart_after_a_resume_does_not_catch_up_what_passed_while_paused(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    """`catchup: latest` runs the fire time a restart missed, not one the job was paused for."""
    config = make_config({"a": {"every": "1 hour", "catchup": "latest", "catchup_grace": "3h"}})
    app = make_app(config)

    first = inline(app)
    clock.advance(3600)
    first.dispatch(first.tick(clock.now()))  # one scheduled run before the pause
    assert isinstance(ask(first, Pause("a", "olga")), Accepted)
    clock.advance(2 * 3600 + 60)  # two fire times pass while paused
    assert isinstance(ask(first, Pause("a", "olga", paused=False)), Accepted)
    resumed = clock.now()
    assert app.history.last_resumed("a") == resumed
    first.shutdown()
    for _restart in (1, 2):  # the resume is remembered across every restart, not only the first
        clock.advance(60)
        again = inline(app)
        assert again.next_fire["a"] > resumed  # not the fire times of the pause (within catchup_grace)
        again.dispatch(again.tick(clock.now()))
        again.shutdown()
    triggers = [(r["trigger"], r["outcome"]) for r in runs_of(app, "a")]
    assert triggers == [("schedule", "succeeded")], triggers
