"""The control plane: the one queue every run request goes through, and the run events it publishes.

Requests. Anything outside the daemon's loop that wants a run started or stopped — a
`run-now` over the control socket (lib/control_socket.py), later the web UI, retry and
chained runs — submits a `RunNow` or `Cancel` to the `ControlQueue` from its own thread.
`submit` never waits for the loop: it appends, wakes the loop through the same event
signals use, and returns a `Future` that the loop answers with an `Accepted` (the run
ids) or a `Refused` (a code and a one-line reason). The loop's own thread drains the
queue (`drain`), so an accepted run goes through the very path a scheduled run takes:
the daemon's queue, the overlap policy and `max_parallel`. Once closed (the daemon is
stopping) every waiting and later request is refused at once, never left unanswered.

What is admitted is decided here as pure functions over plain data (`admit_run_now`,
`cancel_targets`); the daemon only applies the answer.

Events. Each run's lifecycle — `started` (it got a slot), each masked output `line`,
`finished` (its record, once history has it; skips included) — is published on the
`EventBus`. `publish` never blocks on a subscriber: every subscription has a bounded
buffer (`maxsize`); when it is full the oldest event is dropped and counted
(`Subscription.dropped`), so a follower that stalls loses lines, never delays a run
or a dispatch. A subscription is drained by whoever owns it: a socket handler's thread
(`Subscription.get`), or a thread of its own for a callback (`EventBus.listen`).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

from lib.models import Job, RunRecord

log = logging.getLogger("dbt_scheduler")

# How many events a subscription holds before it drops the oldest: a few screens of dbt
# output, so a follower whose terminal stutters loses nothing, one that stops loses lines.
DEFAULT_BUFFER = 2000


# ---------------------------------------------------------------------- requests and replies


@dataclass(frozen=True)
class RunNow:
    """Run `job` now, on behalf of `triggered_by` (recorded on the run, trigger `manual`)."""

    job: str
    triggered_by: str
    target: str | None = None
    select: str | None = None


@dataclass(frozen=True)
class Cancel:
    """Stop `job`'s run `run_id` (every running or waiting run of the job when None)."""

    job: str
    by: str
    run_id: str | None = None
    via: str = "scheduler.py cancel"  # how it was asked, for the run's reason


@dataclass(frozen=True)
class Pause:
    """Pause `job`'s schedule (`paused` True) or resume it, on behalf of `by`. A paused job's
    fire times pass without a run (none is recorded, none is caught up on resume); run-now
    still runs it. Kept in history.db, so it outlives a restart."""

    job: str
    by: str
    paused: bool = True


Request = RunNow | Cancel | Pause

RefusalCode = Literal["unknown-job", "running", "waiting", "stopping", "nothing-to-cancel", "error"]


@dataclass(frozen=True)
class Accepted:
    """The request was taken: the run ids it concerns (the new run, or the runs cancelled).
    `waiting` counts the runs in the daemon's queue ahead of (and including) a new run
    when it has to wait for a free slot; 0 when it started at once."""

    run_ids: tuple[str, ...]
    waiting: int = 0


@dataclass(frozen=True)
class Refused:
    code: RefusalCode
    reason: str


Reply = Accepted | Refused


def admit_run_now(
    request: RunNow,
    jobs: Mapping[str, Job],
    running: Collection[str],
    queued: Collection[str],
    stopping: bool,
    max_parallel: int,
) -> Refused | None:
    """Whether the daemon takes a run-now of `request.job` (None) or why not.

    `running` and `queued` are the job's run ids running now and waiting for a slot.
    Refused: while the daemon stops; a job not in the daemon's jobs.yaml; with
    `overlap: skip` a job already running (a scheduled fire time would be skipped too);
    a job that already has a run waiting (the queue holds one run per job). A disabled
    job is run: `enabled: false` only keeps it off the schedule, as for run-now without
    a daemon. A refused request leaves no history row: the caller is told at once.
    """
    job = jobs.get(request.job)
    if stopping:
        return Refused("stopping", "the scheduler is stopping: no new run starts; try again once it is back")
    if job is None:
        return Refused(
            "unknown-job",
            f"the daemon has no job {request.job!r}: if it was just added to jobs.yaml, reload the "
            "daemon first (`systemctl reload dbt-scheduler`, or SIGHUP)",
        )
    if job.overlap == "skip" and running:
        return Refused(
            "running",
            f"{job.name} is already running (run {', '.join(sorted(running))}); overlap: skip — "
            f"`scheduler.py cancel {job.name}` stops it",
        )
    if queued:
        return Refused(
            "waiting",
            f"{job.name} already has a run waiting for a free slot (run {', '.join(sorted(queued))}, "
            f"max_parallel {max_parallel})",
        )
    return None


def cancel_targets(
    request: Cancel, jobs: Mapping[str, Job], running: Collection[str], queued: Collection[str]
) -> tuple[list[str], list[str]] | Refused:
    """(running run ids to stop, queued run ids to drop) for a cancel, or why there are none.

    Without a run id every run of the job goes: those running (stopped through their
    cancel token: SIGINT to dbt first) and the one waiting for a slot (recorded skipped).
    """
    if request.job not in jobs and not running and not queued:
        return Refused("unknown-job", f"the daemon has no job {request.job!r}")
    wanted = (lambda run_id: True) if request.run_id is None else (lambda run_id: run_id == request.run_id)
    stop = sorted(run_id for run_id in running if wanted(run_id))
    drop = sorted(run_id for run_id in queued if wanted(run_id))
    if not stop and not drop:
        which = f"run {request.run_id} of {request.job}" if request.run_id else f"{request.job}"
        return Refused(
            "nothing-to-cancel",
            f"{which}: nothing running or waiting in the daemon (see `scheduler.py history {request.job}`)",
        )
    return stop, drop


class ControlQueue:
    """Run requests from any thread, answered on the daemon loop's thread (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: deque[tuple[Request, Future[Reply]]] = deque()
        self._closed: str | None = None
        self._wake: Callable[[], None] = lambda: None

    def bind(self, wake: Callable[[], None]) -> None:
        """`wake` is called after each submit: the daemon's loop event (`Daemon._wake.set`)."""
        self._wake = wake

    def submit(self, request: Request) -> Future[Reply]:
        """Queue `request` and wake the loop; the future is answered by the loop (or at once,
        refused, when the queue is closed)."""
        future: Future[Reply] = Future()
        with self._lock:
            closed = self._closed
            if closed is None:
                self._pending.append((request, future))
        if closed is not None:
            future.set_result(Refused("stopping", closed))
            return future
        self._wake()
        return future

    def pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def drain(self, answer: Callable[[Request], Reply]) -> int:
        """Answer every waiting request, oldest first, with `answer` (called on this thread).
        A request whose answer raises is refused with the error, and the rest are answered."""
        count = 0
        while True:
            with self._lock:
                if not self._pending:
                    return count
                request, future = self._pending.popleft()
            try:
                reply = answer(request)
            except Exception as exc:  # a bug in one answer must not leave the caller waiting
                log.exception("control: answering %r failed", request)
                reply = Refused("error", f"internal error: {type(exc).__name__}: {exc}")
            future.set_result(reply)
            count += 1

    def close(self, reason: str) -> None:
        """Refuse every waiting and every later request with `reason` (the daemon stops)."""
        with self._lock:
            self._closed = reason
            pending, self._pending = list(self._pending), deque()
        for _request, future in pending:
            future.set_result(Refused("stopping", reason))


# ---------------------------------------------------------------------- lifecycle events


EventKind = Literal["started", "line", "finished"]


@dataclass(frozen=True)
class RunEvent:
    """One step in a run's life: `started` (it got a slot), `line` (one masked output line),
    `finished` (its record, already in history; a skipped run has only this one)."""

    kind: EventKind
    job: str
    run_id: str
    line: str | None = None
    record: RunRecord | None = None


class Subscription:
    """A bounded buffer of the events one subscriber wants; drained by its owner with `get`."""

    def __init__(self, bus: EventBus, jobs: frozenset[str] | None, maxsize: int) -> None:
        self._bus = bus
        self.jobs = jobs
        self._events: deque[RunEvent] = deque(maxlen=maxsize)
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self.dropped = 0  # events lost because the buffer was full (the oldest go first)

    def wants(self, event: RunEvent) -> bool:
        return self.jobs is None or event.job in self.jobs

    def offer(self, event: RunEvent) -> None:
        """Add an event without ever waiting for the subscriber: a full buffer drops its oldest."""
        with self._cond:
            if self._closed:
                return
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(event)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> RunEvent | None:
        """The oldest buffered event; None after `timeout` seconds without one, or once closed."""
        with self._cond:
            if not self._events and not self._closed:
                self._cond.wait(timeout)
            return self._events.popleft() if self._events else None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving; a `get` waiting now returns None."""
        self._bus.unsubscribe(self)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@dataclass
class Listener:
    """A callback subscriber on a thread of its own (`EventBus.listen`)."""

    subscription: Subscription
    thread: threading.Thread

    def close(self, timeout: float | None = None) -> None:
        self.subscription.close()
        self.thread.join(timeout)


class EventBus:
    """Publishes run events to every subscription that wants them; never waits for one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Replaced, never mutated: publish iterates a snapshot without taking the lock.
        self._subscriptions: tuple[Subscription, ...] = ()
        # How many runs started or finished (output lines left out): a reader caching what
        # history says (the web UI's jobs page) knows it changed when this did. next() on a
        # count is atomic in CPython.
        self._counter = itertools.count(1)
        self.changes = 0

    def subscribe(self, jobs: Iterable[str] | None = None, maxsize: int = DEFAULT_BUFFER) -> Subscription:
        """A subscription to the events of `jobs` (every job when None)."""
        subscription = Subscription(self, frozenset(jobs) if jobs is not None else None, maxsize)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    def listen(
        self,
        callback: Callable[[RunEvent], None],
        name: str,
        jobs: Iterable[str] | None = None,
        maxsize: int = DEFAULT_BUFFER,
    ) -> Listener:
        """Call `callback` with each event on a thread of its own (web live view, metrics…):
        however long it takes, publishing goes on; a callback that raises is logged."""
        subscription = self.subscribe(jobs, maxsize)

        def drain() -> None:
            while not subscription.closed:
                event = subscription.get()
                if event is None:
                    continue
                try:
                    callback(event)
                except Exception:
                    log.exception("event listener %s failed", name)

        thread = threading.Thread(target=drain, name=f"events-{name}", daemon=True)
        thread.start()
        return Listener(subscription, thread)

    def publish(self, event: RunEvent) -> None:
        """Offer `event` to every subscription that wants it. `changes` moves on first, so a
        subscriber that has a `started` or `finished` event sees the new count too."""
        if event.kind != "line":
            self.changes = next(self._counter)
        for subscription in self._subscriptions:
            if subscription.wants(event):
                subscription.offer(event)

    def close(self) -> None:
        """Close every subscription (the daemon is gone): their `get` returns None."""
        for subscription in self._subscriptions:
            subscription.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)


@dataclass
class ControlPlane:
    """The daemon's request queue and event bus, as one thing to hand to a front end."""

    queue: ControlQueue = field(default_factory=ControlQueue)
    bus: EventBus = field(default_factory=EventBus)

    def on_record(self, record: RunRecord) -> None:
        """A run listener (lib/execution.py's TellListeners): every recorded run, skips included,
        is published as `finished`."""
        self.bus.publish(RunEvent("finished", record.job, record.run_id, record=record))
