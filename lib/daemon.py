"""The long-running scheduler: sleep until the earliest fire time, dispatch, repeat.

The daemon computes every job's next fire time and waits on an event until the
earliest one, but never longer than `MAX_SLEEP`: after each wait it reads the
clock again and dispatches whatever is due. A signal (SIGTERM, SIGHUP) sets the
event and wakes it at once.

- Fire times are UTC everywhere here (the `next_fire` map, the policies, history's
  scheduled_for): two datetimes in the same zone compare by wall time, ignoring
  `fold`, so on fall-back night `min()` over Berlin fire times would pick 02:00 CET
  over 02:30 CEST, which comes first. Triggers return UTC (lib/triggers.py).
- Due runs wait in the daemon's own queue (oldest first) for one of `max_parallel`
  slots; a run is handed to the thread pool only when a slot is free, so the pool never
  hides a queue. A queued run is not running: overlap is decided against runs that
  actually run. A job has at most one queued run: a later fire time due while one
  waits takes its place and the earlier one is recorded as skipped (coalesced). When a
  slot frees the loop is woken and starts the oldest queued run, unless its fire time
  has become older than the misfire limit meanwhile: then the job's catch-up policy
  decides (`decide_queued`). The queue is published to `<state_dir>/queue.json` for
  `status` (lib/queue_state.py) whenever it changes.
- Run requests from other threads (run-now and cancel over the control socket) come
  through `self.control` (lib/control.py): the loop answers them on its own thread, and
  an accepted run-now joins the same queue as a due fire time — the same overlap check
  and `max_parallel` slots, trigger `manual`. A queued run-now keeps its place: a fire
  time of the job due meanwhile is recorded skipped. Every run's start, output lines
  and recorded end are published on `self.control.bus`, which never waits for a reader.
- A run that fails or crashes is recorded and the loop goes on.
- SIGTERM: no new runs, and no queued run starts (each is recorded as skipped, once);
  running ones get `shutdown_grace` to finish, then are
  cancelled (their process groups stopped) and recorded as cancelled. A second
  SIGTERM cuts the grace short and cancels them at once.
- `request_stop` and `request_reload` are what signal handlers call: they only set
  flags and wake the loop. The work they ask for (reloading, cancelling runs, which
  stops process groups and waits for them) is done by the loop's own thread, never
  inside a handler, where it could wait on a lock the interrupted code holds.
- SIGHUP: jobs.yaml is read again; if it is invalid the errors are logged and the
  daemon keeps its last good config.
- One daemon per state_dir: a second one exits with an error naming the first.
- Under systemd (lib/sdnotify.py): READY=1 once start-up is done, WATCHDOG=1 from the
  loop itself (a loop that hangs stops feeding it), RELOADING=1 … READY=1 around a
  SIGHUP reload, good or refused, and STOPPING=1 when shutdown begins.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from lib.clock import Clock
from lib.config import Config
from lib.control import (
    Accepted,
    Cancel,
    ControlPlane,
    Pause,
    Refused,
    Reply,
    Request,
    RunEvent,
    RunNow,
    admit_run_now,
    cancel_targets,
)
from lib.errors import ConfigError, LockedError
from lib.execution import RunService
from lib.history import History
from lib.locks import daemon_lock, job_lock
from lib.models import Job, RunRecord, RunRequest, TriggerKind
from lib.orphans import ORPHAN_CONTAINER, ORPHAN_GONE, Fate, Liveness, fate, stop_orphan
from lib.policies import Decision, decide_due, decide_queued, initial_next_fire, overlap_blocks
from lib.queue_state import QueuedEntry, publish
from lib.retention import prune_and_log
from lib.runners.base import CancelToken, Runner
from lib.runners.local import STOP_SEQUENCE
from lib.sdnotify import SystemdNotifier
from lib.secrets import SecretMasker

log = logging.getLogger("dbt_scheduler")

ExecutorFactory = Callable[[int], Executor]


class Companion(Protocol):
    """A thread that lives as long as the daemon's loop: lib/notify/heartbeat.py's
    HeartbeatPinger, lib/web/metrics.py's TextfileWriter, lib/web/server.py's WebServer."""

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...


class Joinable(Protocol):
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...


# Starts background work (the daily prune) off the loop's thread and off the run slots.
Spawn = Callable[[str, Callable[[], object]], Joinable]


def _thread(name: str, work: Callable[[], object]) -> Joinable:
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


@dataclass
class _Queued:
    """A due run waiting for a slot."""

    decision: Decision
    request: RunRequest
    queued_at: datetime  # when the job's first still-waiting fire time was queued


# The longest the loop waits before reading the clock again, in seconds. Waits run on the
# monotonic clock, which does not move while a VM or laptop is suspended and does not
# follow a wall-clock step (NTP, a restored snapshot): a wait computed from wall time for
# the next fire hours away would wake hours late. Capped, a step or a resume is noticed
# within a minute (the policies then run the fire time or record it missed), at the cost
# of one cheap tick a minute when idle.
MAX_SLEEP = 60.0
# How often writes state_dir refused (lib/outbox.py) are retried while some are pending.
PENDING_RETRY = 5.0
# At shutdown, how long queued alerts get to go out (systemd's stop timeout is shared
# with the runs' shutdown_grace).
NOTIFY_DRAIN_S = 10.0


def _thread_pool(workers: int) -> Executor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="run")


class Daemon:
    def __init__(
        self,
        config: Config,
        service: RunService,
        clock: Clock,
        reload_config: Callable[[], Config] | None = None,
        executor_factory: ExecutorFactory = _thread_pool,
        on_line: Callable[[RunRequest, str], None] | None = None,
        runner_factory: Callable[[Config], Mapping[str, Runner]] | None = None,
        spawn: Spawn = _thread,
        companions: Sequence[Companion] = (),
        systemd: SystemdNotifier | None = None,
        control: ControlPlane | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.clock = clock
        self.reload_config = reload_config
        # Builds the runners a config needs (lib/app.py's `default_runners`); reload calls
        # it when the runner settings change. None: the runners stay as built at start.
        self.runner_factory = runner_factory
        self.executor_factory = executor_factory
        self.on_line = on_line
        self.next_fire: dict[str, datetime] = {}
        self.paused: set[str] = set()  # jobs whose schedule is paused (history.db's paused_jobs)
        self._wake = threading.Event()
        self._stop_requested = False
        self._force_stop = False
        self._reload_requested = False
        self._lock = threading.RLock()  # re-entrant: dispatch holds it while _track takes it
        self._active: dict[str, dict[str, CancelToken]] = {}  # job → run_id → token
        self._idle = threading.Event()
        self._idle.set()
        self._remote: set[str] = set()  # run ids of runs that survive the daemon (ECS tasks)
        self._lockfile = daemon_lock(config.state_dir)
        self._executor: Executor | None = None
        self._queue: list[_Queued] = []  # oldest first; at most one per job
        self._orphan_stops: list[Joinable] = []  # threads stopping runs a killed daemon left
        self._published: tuple[str, ...] | None = None  # run ids of the queue as last written
        # The pool's size: a reload's new max_parallel takes effect only after a restart.
        self._slots = config.max_parallel
        self.spawn = spawn
        self._housekeeper: Joinable | None = None
        # Threads that live as long as the loop (the `heartbeat:` pinger, the metrics
        # textfile writer, the web server): started after start-up, stopped after the runs.
        self.companions = tuple(companions)
        # systemd's Type=notify and watchdog (lib/sdnotify.py); a no-op outside systemd.
        self.systemd = systemd or SystemdNotifier(None)
        self._fed_at: float | None = None  # when the loop last fed the watchdog (clock.monotonic)
        # Run requests from other threads (run-now over the socket…) and the run events
        # (lib/control.py): a request wakes the loop like a signal does; every recorded
        # run is published as `finished`.
        self.control = control or ControlPlane()
        self.control.queue.bind(self._wake.set)
        service.listeners.append(self.control.on_record)

    @property
    def history(self) -> History:
        return self.service.history

    # ------------------------------------------------------------------ control (signal-safe)

    def request_stop(self) -> None:
        """Stop gracefully; a second request cuts the shutdown grace short and cancels runs.

        Safe in a signal handler: it sets flags and wakes the loop, nothing else. The loop's
        thread does the cancelling (`shutdown`).
        """
        if self._stop_requested:
            self._force_stop = True
        self._stop_requested = True
        self._wake.set()

    def request_reload(self) -> None:
        """Re-read jobs.yaml on the loop's thread. Safe in a signal handler, like `request_stop`."""
        self._reload_requested = True
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Take the state_dir lock, tidy history, and compute every job's first fire time."""
        holder = f"pid={os.getpid()} started={self.clock.now().isoformat()}"
        if not self._lockfile.try_acquire(holder):
            raise LockedError(
                f"another dbt-scheduler daemon already runs on state_dir {self.config.state_dir} "
                f"({self._lockfile.holder() or 'unknown pid'}): stop it first, or give this one "
                "another state_dir"
            )
        now = self.clock.now()
        self.paused = set(self.history.paused())  # jobs paused from the web UI stay paused
        containers: list[tuple[dict[str, Any], str]] = []
        to_follow = self._runs_to_reattach(now, containers)
        fates = self._local_fates()
        abandoned = self.history.close_abandoned(
            now,
            "the scheduler stopped before this run finished",
            keep=lambda row: fates.get(row["run_id"], Fate.ABANDONED) is not Fate.ABANDONED,
        )
        if abandoned:
            log.warning("marked %d run(s) left running by a previous daemon as cancelled", abandoned)
        self._executor = self.executor_factory(self._slots)
        self._publish_queue()  # replaces a queue.json a killed daemon left: `status` believes it now
        # Orphans are stopped on threads of their own, not on the pool: the SIGINT path gives
        # dbt its grace, which start() must not wait out, and a pool worker busy stopping one
        # would be a run slot the queue does not know is taken.
        for row in self.history.running():
            if fates.get(row["run_id"]) is Fate.ORPHAN:
                log.warning(
                    "%s: run %s outlived a killed scheduler (pgid %s): stopping it",
                    row["job"],
                    row["run_id"],
                    row["process_pid"],
                )
                self._orphan_stops.append(
                    self.spawn(f"orphan-{row['run_id']}", lambda row=row: self._stop_orphan(row))
                )
        for row, name in containers:
            log.warning(
                "%s: run %s outlived a killed scheduler in container %s: stopping it",
                row["job"],
                row["run_id"],
                name,
            )
            self._orphan_stops.append(
                self.spawn(
                    f"orphan-{row['run_id']}",
                    lambda row=row, name=name: self._stop_orphan_container(row, name),
                )
            )
        for request, external_id, started_at in to_follow:
            log.info("%s: re-attaching to run %s (%s)", request.job.name, request.run_id, external_id)
            token = self._track(request)
            self._executor.submit(self._run, request, token, (external_id, started_at))
        self._plan(self.config.jobs.values(), now)
        self._housekeeping(now)
        for companion in self.companions:
            companion.start()
        log.info(
            "dbt-scheduler started: %d job(s), state_dir %s, max_parallel %d",
            len(self.config.jobs),
            self.config.state_dir,
            self.config.max_parallel,
        )

    def _local_fates(self) -> dict[str, Fate]:
        """For each `running` row without an external id: followed, orphan or abandoned."""
        state_dir = self.config.state_dir

        def lock_held(job: str) -> bool:
            lock = job_lock(state_dir, job)
            if not lock.try_acquire(""):
                return True
            lock.release()
            return False

        live = Liveness(lock_held=lock_held)
        return {row["run_id"]: fate(row, live) for row in self.history.running() if not row["external_id"]}

    def _stop_orphan(self, row: dict[str, object]) -> None:
        """Stop an orphaned run's process group, then close its row `cancelled` (once)."""
        local = self.service.runners.get("local")
        sequence = getattr(local, "stop_sequence", STOP_SEQUENCE)
        try:
            reason = stop_orphan(row, sequence)
        except Exception as exc:  # a worker's error would vanish in its future: log it
            log.error("%s: stopping orphaned run %s failed: %s", row["job"], row["run_id"], exc)
            reason = f"cancelled: the scheduler was killed while this run went on; stopping it failed: {exc}"
        self.history.close_run(str(row["run_id"]), self.clock.now(), "cancelled", reason)
        log.warning("%s: run %s: %s", row["job"], row["run_id"], reason)

    def _stop_orphan_container(self, row: dict[str, Any], name: str) -> None:
        """`<engine> stop` + `rm` a container a killed scheduler left, then close its row once."""
        runner = self.service.runners.get(self.config.jobs[row["job"]].runner)
        try:
            stopped = runner.stop_container(name)  # type: ignore[union-attr]
        except Exception as exc:
            log.error("%s: stopping container %s failed: %s", row["job"], name, exc)
            stopped = False
        reason = (ORPHAN_CONTAINER if stopped else ORPHAN_GONE).format(name=name)
        self.history.close_run(str(row["run_id"]), self.clock.now(), "cancelled", reason)
        log.warning("%s: run %s: %s", row["job"], row["run_id"], reason)

    def _runs_to_reattach(
        self, now: datetime, containers: list[tuple[dict[str, Any], str]] | None = None
    ) -> list[tuple[RunRequest, str, datetime]]:
        """Runs a previous daemon left going remotely (an ECS task) that this one can follow.

        A container run (the docker runner: its external id is the container's name)
        cannot be followed: unless its supervising scheduler (a `run-now`) still lives,
        it goes into `containers`, to be stopped and closed `cancelled`.
        """
        follow = []
        live = Liveness(lock_held=lambda job: False)
        for row in self.history.running():
            if not row["external_id"]:
                continue
            job = self.config.jobs.get(row["job"])
            runner = self.service.runners.get(job.runner) if job is not None else None
            if job is not None and not self.service.can_reattach(job) and hasattr(runner, "stop_container"):
                if fate(row | {"process_pid": None}, live) is Fate.FOLLOWED:
                    continue  # a run-now in another shell follows it to its end
                if containers is not None:
                    containers.append((row, row["external_id"]))
                    continue
            if job is None or not self.service.can_reattach(job):
                why = (
                    "no longer in jobs.yaml" if job is None else f"its runner {job.runner!r} cannot re-attach"
                )
                self.history.close_run(
                    row["run_id"], now, "cancelled", f"not followed after a restart: {why}"
                )
                continue
            request = RunRequest(
                job=job,
                run_id=row["run_id"],
                trigger=TriggerKind(row["trigger"]),
                scheduled_for=datetime.fromisoformat(row["scheduled_for"]) if row["scheduled_for"] else None,
                triggered_by=row["triggered_by"],
            )
            follow.append((request, row["external_id"], datetime.fromisoformat(row["started_at"])))
        return follow

    def _track(self, request: RunRequest) -> CancelToken:
        token = CancelToken()
        if self.service.can_reattach(request.job):
            self._remote.add(request.run_id)
        with self._lock:
            self._active.setdefault(request.job.name, {})[request.run_id] = token
            self._idle.clear()
        return token

    def _plan(self, jobs: Iterable[Job], now: datetime, keep: dict[str, datetime] | None = None) -> None:
        for job in jobs:
            if not job.enabled or job.name in self.paused:
                self.next_fire.pop(job.name, None)
                continue
            if keep and job.name in keep:
                self.next_fire[job.name] = keep[job.name]
                continue
            last = None
            if job.catchup == "latest":
                # A fire time passed while the job was paused was decided against on purpose:
                # catch-up starts no earlier than the resume (lib/history.py migration 8).
                known = [self.history.last_scheduled_for(job.name), self.history.last_resumed(job.name)]
                last = max((moment for moment in known if moment is not None), default=None)
            self.next_fire[job.name] = initial_next_fire(job, now, last)

    def run_forever(self, until: datetime | None = None) -> int:
        """Loop until stopped (or until `until`, for simulations); returns an exit code.

        Under systemd (`Type=notify`) READY=1 goes out once start-up is done and the loop
        is about to run; with `WatchdogSec=` the loop itself feeds the watchdog each time
        it comes round, and never waits longer than the ping interval, so a loop stuck
        anywhere stops the pings and systemd restarts the daemon.
        """
        if self._executor is None:
            self.start()
        self.systemd.ready(self._status())
        try:
            while not self._stop_requested:
                self._feed_watchdog()
                if self._reload_requested:
                    self._reload_requested = False
                    self._reload_and_tell()
                self.control.queue.drain(self.answer)  # run-now, cancel: before the schedule's runs
                now = self.clock.now()
                self.service.retry_pending()  # rows and reports a full disk refused (lib/outbox.py)
                self.dispatch(self.tick(now))
                self._check_deadlines(now)
                self._housekeeping(now)
                if until is not None and now >= until:
                    break
                wake_at = min(self.next_fire.values(), default=None)
                if until is not None and (wake_at is None or wake_at > until):
                    wake_at = until
                self._wake.clear()
                # Checked after clear(): a slot that freed in between set the event before it.
                if (
                    self._stop_requested
                    or self._reload_requested
                    or self._startable()
                    or self.control.queue.pending()
                ):
                    continue
                seconds = (wake_at - self.clock.now()).total_seconds() if wake_at else MAX_SLEEP
                if seconds > 0:
                    # With writes pending, look again soon: space may come back at any time.
                    cap = PENDING_RETRY if len(self.service.outbox) else MAX_SLEEP
                    if self.systemd.watchdog_interval is not None:
                        cap = min(cap, self.systemd.watchdog_interval)
                    self.clock.wait(min(seconds, cap), self._wake)
        finally:
            self.shutdown()
        return 0

    def _status(self) -> str:
        """The line `systemctl status` shows while the daemon runs."""
        return f"scheduling {len(self.config.jobs)} job(s), state_dir {self.config.state_dir}"

    def _feed_watchdog(self) -> None:
        """WATCHDOG=1, from the loop's own thread, at most once per half ping interval.

        The loop comes round at least once per ping interval (its wait is capped at it),
        so the gap between two pings stays under 3/4 of WatchdogSec; comes round more
        often (runs ending under load) and the pings are thinned, not one per wake-up.
        """
        interval = self.systemd.watchdog_interval
        if interval is None:
            return
        now = self.clock.monotonic()
        if self._fed_at is not None and now - self._fed_at < interval / 2:
            return
        self._fed_at = now
        self.systemd.watchdog()

    def _reload_and_tell(self) -> None:
        """`reload`, bracketed for systemd: RELOADING=1, then READY=1 whether or not it took."""
        self.systemd.reloading(f"reloading {self.config.path or 'jobs.yaml'}")
        if self.reload():
            self.systemd.ready(self._status())
        else:
            self.systemd.ready(
                f"reload failed, the last good config kept (see the journal): {self._status()}"
            )

    def tick(self, now: datetime) -> list[Decision]:
        """Decide about every job whose fire time has come; advance their schedules. Pure but for state.

        `now` and every fire time are UTC, so `fire > now` compares instants.
        """
        decisions = []
        for name, fire in list(self.next_fire.items()):
            if fire > now:
                continue
            job = self.config.jobs[name]
            decision, self.next_fire[name] = decide_due(job, fire, now)
            decisions.append(decision)
        return decisions

    def dispatch(self, decisions: list[Decision]) -> None:
        """Record missed fire times, queue due runs, and start queued runs while slots are free.

        With `overlap: skip` a run due while the job's previous run actually runs is
        skipped at once; one due while the job already has a run queued replaces it,
        and the replaced fire time is recorded as skipped (coalesced).
        """
        for decision in decisions:
            job = decision.job
            self._record_folded(decision)
            if decision.trigger is None:
                request = self.service.new_request(job, TriggerKind.SCHEDULE, decision.scheduled_for)
                log.warning("%s: %s", job.name, decision.reason)
                self.service.skip(request, decision.reason)
                continue
            request = self.service.new_request(job, decision.trigger, decision.scheduled_for)
            if decision.coalesced:
                log.info("%s: %d earlier fire time(s) coalesced into this run", job.name, decision.coalesced)
            with self._lock:
                blocked = overlap_blocks(job, len(self._active.get(job.name, {})))
                manual = None if blocked else self._queued_manual(job.name)
                replaced = None if blocked or manual else self._enqueue(decision, request)
            if blocked:
                reason = "previous run still running; overlap: skip"
                log.warning("%s: skipped the run due %s: %s", job.name, decision.scheduled_for, reason)
                self.service.skip(request, reason)
            elif manual is not None:
                # A person asked for this job's run and follows it: it keeps its place.
                reason = f"a run-now of this job (run {manual.request.run_id}) is waiting for a free slot"
                log.warning("%s: skipped the run due %s: %s", job.name, decision.scheduled_for, reason)
                self.service.skip(request, reason)
            elif replaced is not None:
                reason = (
                    f"coalesced into the run due {decision.scheduled_for.isoformat()}: "
                    f"still waiting for a free slot (max_parallel {self._slots})"
                )
                log.warning("%s: the run due %s %s", job.name, replaced.decision.scheduled_for, reason)
                self.service.skip(replaced.request, reason)
        self._start_queued()

    def _record_folded(self, decision: Decision) -> None:
        """One skipped row for each earlier fire time a decision stands for (the host slept,
        the loop stalled): every fire time the daemon passed ends as exactly one row."""
        if not decision.folded:
            return
        into = decision.scheduled_for.isoformat()
        what = "the run due" if decision.trigger is not None else "the fire time due"
        for i, moment in enumerate(decision.folded):
            reason = f"coalesced into {what} {into}: several fire times were due at once"
            if decision.folded_more and i == len(decision.folded) - 1:
                reason += f" (and {decision.folded_more} later ones up to {into}, not recorded one by one)"
            request = self.service.new_request(decision.job, TriggerKind.SCHEDULE, moment)
            self.service.skip(request, reason)
        log.warning(
            "%s: %d fire time(s) before %s were due at once: recorded as skipped (coalesced)",
            decision.job.name,
            len(decision.folded) + decision.folded_more,
            into,
        )

    def _enqueue(self, decision: Decision, request: RunRequest) -> _Queued | None:
        """Queue a due run (the caller holds the lock); return the queued run it replaced, if any."""
        now = self.clock.now()
        for i, queued in enumerate(self._queue):
            if queued.request.job.name == decision.job.name:
                # The later fire time takes the earlier one's place in line: the job has waited
                # since then, and running the latest is what coalescing means (decide_due).
                self._queue[i] = _Queued(decision, request, queued.queued_at)
                return queued
        self._queue.append(_Queued(decision, request, now))
        return None

    def _queued_manual(self, job: str) -> _Queued | None:
        """The job's queued run-now, if one waits (the caller holds the lock)."""
        for queued in self._queue:
            if queued.request.job.name == job and queued.request.trigger is TriggerKind.MANUAL:
                return queued
        return None

    # ------------------------------------------------------------------ control requests

    def answer(self, request: Request) -> Reply:
        """Answer one control request (lib/control.py) on the loop's thread."""
        if isinstance(request, RunNow):
            return self._run_now(request)
        if isinstance(request, Pause):
            return self._pause(request)
        return self._cancel(request)

    def _pause(self, request: Pause) -> Reply:
        """Pause or resume a job's schedule, in history (it outlives a restart) and in the plan.
        A resumed job's next fire time is the first one from now: what passed is not caught up."""
        job = self.config.jobs.get(request.job)
        if job is None:
            return Refused("unknown-job", f"the daemon has no job {request.job!r}")
        now = self.clock.now()
        self.history.set_paused(job.name, request.paused, by=request.by, at=now)
        if request.paused:
            self.paused.add(job.name)
            self.next_fire.pop(job.name, None)
        else:
            self.paused.discard(job.name)
            if job.enabled:
                self.next_fire[job.name] = initial_next_fire(job, now, None)
        log.warning("%s: schedule %s by %s", job.name, "paused" if request.paused else "resumed", request.by)
        return Accepted(())

    def _run_now(self, request: RunNow) -> Reply:
        """Queue a run-now like a due fire time: the same overlap check, queue and slots."""
        with self._lock:
            refused = admit_run_now(
                request,
                self.config.jobs,
                running=list(self._active.get(request.job, {})),
                queued=[q.request.run_id for q in self._queue if q.request.job.name == request.job],
                stopping=self._stop_requested,
                max_parallel=self._slots,
            )
            if refused is not None:
                log.info("%s: run-now by %s refused: %s", request.job, request.triggered_by, refused.reason)
                return refused
            job = self.config.jobs[request.job]
            run = self.service.new_request(
                job,
                TriggerKind.MANUAL,
                triggered_by=request.triggered_by,
                target=request.target,
                select=request.select,
            )
            # Its place in line is the moment it was asked for (decide_queued leaves a manual
            # run waiting however long it takes: a person asked for it).
            self._enqueue(Decision(job, self.clock.now(), TriggerKind.MANUAL), run)
        log.info("%s: run-now by %s queued as run %s", job.name, request.triggered_by, run.run_id)
        self._start_queued()
        with self._lock:
            waiting = next((i + 1 for i, q in enumerate(self._queue) if q.request is run), 0)
        return Accepted((run.run_id,), waiting=waiting)

    def _cancel(self, request: Cancel) -> Reply:
        """Stop running runs through their cancel token (SIGINT to dbt first, as a timeout);
        a queued one leaves the queue and is recorded skipped."""
        with self._lock:
            tokens = dict(self._active.get(request.job, {}))
            queued = {q.request.run_id: q for q in self._queue if q.request.job.name == request.job}
            targets = cancel_targets(request, self.config.jobs, tokens, queued)
            if isinstance(targets, Refused):
                return targets
            stop, drop = targets
            self._queue = [q for q in self._queue if q.request.run_id not in drop]
        why = f"cancelled by {request.by} ({request.via})"
        for run_id in stop:
            log.warning("%s: run %s %s", request.job, run_id, why)
            tokens[run_id].cancel(why)
        for run_id in drop:
            log.warning("%s: queued run %s %s before it started", request.job, run_id, why)
            self.service.skip(
                queued[run_id].request, f"{why} before it started (it was waiting for a free slot)"
            )
        if drop:
            self._publish_queue()
        return Accepted((*stop, *drop))

    def _free_slots(self) -> int:
        with self._lock:
            return self._slots - sum(len(runs) for runs in self._active.values())

    def _startable(self) -> bool:
        """A queued run could start now (the loop must not go to sleep)."""
        with self._lock:
            return bool(self._queue) and not self._stop_requested and self._free_slots() > 0

    def _start_queued(self) -> None:
        """Start the oldest queued runs while slots are free; never once a stop was requested.

        Every run that a free slot takes is decided (and counted as running) before any of
        them is handed to the pool, all at the same moment: whether one fire time is still
        on time never depends on how long the pool takes to accept the run before it.
        """
        while True:
            batch: list[tuple[RunRequest, Decision, float, CancelToken | None]] = []
            with self._lock:
                while not self._stop_requested and self._queue and self._free_slots() > 0:
                    queued = self._queue.pop(0)
                    now = self.clock.now()
                    waited = (now - queued.queued_at).total_seconds()
                    decision = decide_queued(queued.request.job, queued.decision, now, waited, self._slots)
                    request, token = queued.request, None
                    if decision.trigger is not None:
                        if decision.trigger != request.trigger:
                            request = replace(request, trigger=decision.trigger)
                        token = self._track(request)
                    batch.append((request, decision, waited, token))
            if not batch:
                break
            for request, decision, waited, token in batch:
                self._start_one(request, decision, waited, token)
        self._publish_queue()

    def _start_one(
        self, request: RunRequest, decision: Decision, waited: float, token: CancelToken | None
    ) -> None:
        """Hand one dequeued run to the pool (`token` set), or record it as skipped (None)."""
        job = request.job
        if token is None:
            log.warning("%s: %s", job.name, decision.reason)
            self.service.skip(request, decision.reason)
            return
        if waited >= 1:
            log.info(
                "%s: run %s waited %.0f s for a free slot (max_parallel %d)",
                job.name,
                request.run_id,
                waited,
                self._slots,
            )
        if decision.reason:
            log.info("%s: %s", job.name, decision.reason)
        log.info("%s: starting run %s (%s)", job.name, request.run_id, request.trigger.value)
        assert self._executor is not None
        self._executor.submit(self._run, request, token)

    def _drop_queue(self, reason: str) -> None:
        """Record every queued run as skipped (once each) and empty the queue."""
        with self._lock:
            dropped, self._queue = self._queue, []
        for queued in dropped:
            log.warning(
                "%s: the run due %s was not started: %s",
                queued.request.job.name,
                queued.decision.scheduled_for,
                reason,
            )
            self.service.skip(queued.request, reason)
        self._publish_queue()

    def queued_runs(self) -> list[QueuedEntry]:
        """The runs waiting for a slot, oldest first."""
        with self._lock:
            return [
                QueuedEntry(q.request.job.name, q.request.run_id, q.decision.scheduled_for, q.queued_at)
                for q in self._queue
            ]

    def _publish_queue(self) -> None:
        """Write queue.json when the queue differs from what was last written (not per tick)."""
        entries = self.queued_runs()
        ids = tuple(e.run_id for e in entries)
        if ids == self._published:
            return
        self._published = ids
        publish(self.config.state_dir, entries, self._slots, self.clock.now())

    def _run(
        self, request: RunRequest, token: CancelToken, reattach: tuple[str, datetime] | None = None
    ) -> RunRecord | None:
        try:
            bus, job, run_id = self.control.bus, request.job.name, request.run_id

            def on_line(line: str) -> None:
                if self.on_line is not None:
                    self.on_line(request, line)
                bus.publish(RunEvent("line", job, run_id, line=line))  # never waits for a subscriber

            bus.publish(RunEvent("started", job, run_id))
            if reattach is not None:
                record = self.service.reattach(request, *reattach, on_line=on_line, cancel=token)
            else:
                record = self.service.execute(request, on_line=on_line, cancel=token)
            log.info(
                "%s: run %s %s in %.1fs%s",
                request.job.name,
                request.run_id,
                record.outcome.status.value,
                record.duration_s,
                f": {record.outcome.reason}" if record.outcome.reason else "",
            )
            return record
        except Exception:  # execute() already turns runner crashes into outcomes; this is the last net
            log.exception("%s: run %s crashed the scheduler's run path", request.job.name, request.run_id)
            return None
        finally:
            with self._lock:
                runs = self._active.get(request.job.name, {})
                runs.pop(request.run_id, None)
                if not runs:
                    self._active.pop(request.job.name, None)
                if not self._active:
                    self._idle.set()
                if not self._active or self._queue:
                    # A shutdown waiting out the grace can stop waiting; a queued run can take the slot.
                    self._wake.set()

    # ------------------------------------------------------------------ housekeeping

    HOUSEKEEPING_EVERY = timedelta(days=1)
    _housekept_at: datetime | None = None  # when the last prune was started

    def _check_deadlines(self, now: datetime) -> None:
        """`late` for jobs past their `deadline:` (the loop looks at least once a minute)."""
        notifier = self.service.notifier
        if notifier is None or not notifier.routes:
            return
        try:
            notifier.check_deadlines(now)
        except Exception as exc:  # a history it cannot read now: it looks again next time
            log.error("deadlines: could not check: %s", exc)

    def _housekeeping(self, now: datetime) -> None:
        """Apply `retention:` (lib/retention.py) at start, then once a day.

        It runs on its own thread (`spawn`), so the loop does not wait for it (the first
        prune of a year of 5-minute runs took minutes here) and it takes none of the
        `max_parallel` run slots. It stops when the daemon does (the rest goes next
        time), a prune still going when the next is due delays that one, and it never raises.
        """
        if self._housekept_at is not None and now - self._housekept_at < self.HOUSEKEEPING_EVERY:
            return
        if self._housekeeper is not None and self._housekeeper.is_alive():
            return
        self._housekept_at = now
        config, history = self.config, self.history
        self._housekeeper = self.spawn(
            "housekeeping", lambda: prune_and_log(config, history, now, lambda: self._stop_requested)
        )

    def reload(self) -> bool:
        """Re-read jobs.yaml; on any error keep the last good config. True when the new one is in force.

        When the runner settings change (`aws:`, `docker:`, or the set of runners the jobs
        use), the runners are rebuilt through `runner_factory` before the new config takes
        effect, so a job added with a new runner runs without a restart; runs already
        going keep the runner they started with. A factory that fails keeps the last good
        config and runners, like an invalid file.
        """
        if self.reload_config is None:
            return False
        try:
            new = self.reload_config()
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("reload: %s", issue)
            log.error("reload failed: keeping the last good config (%d jobs)", len(self.config.jobs))
            return False
        except Exception as exc:
            log.error("reload failed (%s): keeping the last good config", exc)
            return False
        runners = None
        if self.runner_factory is not None and _runner_settings(new) != _runner_settings(self.config):
            try:
                runners = self.runner_factory(new)
            except Exception as exc:  # RunnerError, a missing engine, boto3 refusing settings
                log.error("reload failed: cannot build the runners (%s): keeping the last good config", exc)
                return False
        if new.state_dir != self.config.state_dir:
            log.warning("reload: state_dir changes take effect only after a restart")
            new = _with_state_dir(new, self.config.state_dir)
        if new.max_parallel != self.config.max_parallel:
            log.warning("reload: max_parallel changes take effect only after a restart")
        keep = {
            name: fire
            for name, fire in self.next_fire.items()
            if name in new.jobs and _same_schedule(self.config.jobs[name], new.jobs[name])
        }
        if runners is not None:
            self.service.runners = runners
            log.info("reload: runner settings changed, runners rebuilt (%s)", ", ".join(sorted(runners)))
        self.config = new
        if self.service.notifier is not None:
            self.service.extra_secrets = new.notifications.secret_values
            self.service.notifier.reconfigure(new, SecretMasker(new.notifications.secret_values))
        self.next_fire = {}
        self._plan(new.jobs.values(), self.clock.now(), keep)
        log.info("reloaded %s: %d job(s)", new.path, len(new.jobs))
        return True

    def shutdown(self) -> None:
        """Let running jobs finish for up to shutdown_grace, then cancel them; release the lock.

        A second stop request (`request_stop`) during the grace ends it at once.
        """
        if self._executor is None:
            return
        self.systemd.stopping("stopping")
        self.control.queue.close("the scheduler is stopping: no new run starts")
        self._drop_queue("the scheduler was stopping")
        with self._lock:
            running = sum(len(runs) for runs in self._active.values())
        if running:
            log.info(
                "stopping: waiting up to %.0fs for %d running job(s)", self.config.shutdown_grace, running
            )
            self.systemd.status(
                f"stopping: waiting up to {self.config.shutdown_grace:.0f}s for {running} running job(s)"
            )
            # Remote runs go on without us: detach now, a restart re-attaches to them.
            self._cancel_all(remote_only=True)
            self._wait_out_grace()
            if self._force_stop and not self._idle.is_set():
                log.info("stopping: second stop request, cancelling running jobs now")
            self._cancel_all()
        self._executor.shutdown(wait=True)
        self._executor = None
        if self._housekeeper is not None:
            self._housekeeper.join()  # a prune checks the stop flag between steps: this is short
        for stopping in self._orphan_stops:  # bounded by the stop sequence (SIGINT … SIGKILL)
            stopping.join()
        # Runs just cancelled may have joined the pending writes: one last try, then say
        # plainly what is lost (the outbox is memory; the disk refused it).
        self.service.retry_pending()
        self.service.outbox.give_up()
        for companion in self.companions:
            companion.stop()
        if self.service.notifier is not None:  # what the last runs said goes out, briefly
            self.service.notifier.close(NOTIFY_DRAIN_S)
        self._lockfile.release()
        log.info("dbt-scheduler stopped")

    def _wait_out_grace(self) -> None:
        """Wait until no run is left, a second stop request comes, or shutdown_grace is over."""
        deadline = self.clock.monotonic() + self.config.shutdown_grace
        while not self._force_stop and not self._idle.is_set():
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return
            self._wake.clear()
            # Checked again after clear(): a request or the last run ending in between set
            # the flag before waking us, so nothing is lost.
            if self._force_stop or self._idle.is_set():
                return
            self.clock.wait(min(left, MAX_SLEEP), self._wake)

    def _cancel_all(self, remote_only: bool = False) -> None:
        """Cancel local runs (their processes are stopped); detach from remote ones."""
        with self._lock:
            tokens = [(run_id, token) for runs in self._active.values() for run_id, token in runs.items()]
        for run_id, token in tokens:
            if run_id in self._remote:
                token.detach()
            elif not remote_only:
                token.cancel()

    def job_of(self, run_id: str) -> str | None:
        """The job of run `run_id` when this daemon holds it: waiting for a slot, or started
        (history may not have its row yet: the run's own thread writes it a moment later)."""
        with self._lock:
            for queued in self._queue:
                if queued.request.run_id == run_id:
                    return queued.request.job.name
            for job, runs in self._active.items():
                if run_id in runs:
                    return job
        return None

    def active_runs(self) -> dict[str, int]:
        with self._lock:
            return {job: len(runs) for job, runs in self._active.items()}


def _runner_settings(config: Config) -> tuple[Any, ...]:
    """What `default_runners` builds the runners from: when it changes, they are rebuilt."""
    return (frozenset(job.runner for job in config.jobs.values()), config.aws, config.docker)


def _same_schedule(old: Job, new: Job) -> bool:
    return (
        old.trigger.describe() == new.trigger.describe()
        and old.timezone == new.timezone
        and old.enabled == new.enabled
    )


def _with_state_dir(config: Config, state_dir: Path) -> Config:
    return replace(config, state_dir=state_dir)
