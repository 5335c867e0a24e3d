"""Test doubles for the seams the scheduler injects: the clock and runners."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import datetime, timedelta
from typing import Any

from lib.models import RunOutcome, RunStatus
from lib.runners.base import RunContext


class FakeClock:
    """A clock whose `wait` advances time instead of sleeping, unless the event is already set."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._mono = 0.0
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._mono += (moment - self._now).total_seconds()
            self._now = moment

    def wait(self, seconds: float, event: threading.Event) -> bool:
        if event.is_set():
            return True
        self.waits.append(seconds)
        self.advance(seconds)
        return event.is_set()


class SteppingClock(FakeClock):
    """A FakeClock whose wall clock can jump during a wait while the monotonic clock does not.

    `step_during_next_wait(seconds)` models a host suspended in the middle of a wait, or a
    wall-clock step (NTP, a restored snapshot): the wait that follows still lasts only the
    seconds asked for, on the monotonic clock, but `now()` has moved `seconds` further.
    """

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._pending_step = 0.0

    def step_during_next_wait(self, seconds: float) -> None:
        self._pending_step = seconds

    def wait(self, seconds: float, event: threading.Event) -> bool:
        step, self._pending_step = self._pending_step, 0.0
        if step:
            with self._lock:
                self._now += timedelta(seconds=step)
        return super().wait(seconds, event)


class InlineExecutor(Executor):
    """Runs submitted work at once on the calling thread: deterministic daemon tests."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class ManualExecutor(Executor):
    """Holds submitted work until the test runs it: a submitted run is "running" meanwhile.

    `run_all()` runs what was submitted, in order, on the calling thread (work submitted
    while it runs is run too), so a test decides when a slot frees.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        self.pending.append((fn, args, kwargs))
        self.submitted += 1
        future: Future = Future()
        return future

    def run_all(self) -> None:
        while self.pending:
            fn, args, kwargs = self.pending.pop(0)
            fn(*args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.run_all()


class InlineThread:
    """What `Daemon(spawn=inline_spawn)` gets: the work ran at once on the calling thread."""

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        return None


def inline_spawn(name: str, work: Callable[[], object]) -> InlineThread:
    """A `Spawn` for deterministic daemon tests: background work (the prune) runs inline."""
    work()
    return InlineThread()


class FakeRunner:
    """Returns scripted outcomes, records what it was asked to run, and can take (fake) time."""

    def __init__(
        self,
        outcome: RunOutcome | Callable[[RunContext], RunOutcome] | None = None,
        duration: float = 0.0,
        clock: FakeClock | None = None,
    ) -> None:
        self.outcome = outcome or RunOutcome(RunStatus.SUCCEEDED)
        self.duration = duration
        self.clock = clock
        self.calls: list[RunContext] = []

    def run(self, ctx: RunContext) -> RunOutcome:
        self.calls.append(ctx)
        if self.duration and self.clock is not None:
            self.clock.advance(self.duration)
        return self.outcome(ctx) if callable(self.outcome) else self.outcome


class CrashingRunner:
    def run(self, ctx: RunContext) -> RunOutcome:
        raise RuntimeError("boom: DBT_ENV_SECRET_X is hunter22")
