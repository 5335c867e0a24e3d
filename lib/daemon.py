"""The long-running scheduler: sleep until the earliest fire time, dispatch, repeat.

The daemon computes every job's next fire time and waits on an event until the
earliest one, but never longer than `MAX_SLEEP`: after each wait it reads the
clock again and dispatches whatever is due. A signal (SIGTERM, SIGHUP) sets the
event and wakes it at once.

- Fire times are UTC everywhere here (the `next_fire` map, the policies, history's
  scheduled_for): two datetimes in the same zone compare by wall time, ignoring
  `fold`, so on fall-back night `min()` over Berlin fire times would pick 02:00 CET
  over 02:30 CEST, which comes first. Triggers return UTC (lib/triggers.py).
- Due runs go to a thread pool of `max_parallel` workers; more due at once wait.
- A run that fails or crashes is recorded and the loop goes on.
- SIGTERM: no new runs; running ones get `shutdown_grace` to finish, then are
  cancelled (their process groups stopped) and recorded as cancelled. A second
  SIGTERM cuts the grace short and cancels them at once.
- `request_stop` and `request_reload` are what signal handlers call: they only set
  flags and wake the loop. The work they ask for (reloading, cancelling runs, which
  stops process groups and waits for them) is done by the loop's own thread, never
  inside a handler, where it could wait on a lock the interrupted code holds.
- SIGHUP: jobs.yaml is read again; if it is invalid the errors are logged and the
  daemon keeps its last good config.
- One daemon per state_dir: a second one exits with an error naming the first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lib.clock import Clock
from lib.config import Config
from lib.errors import ConfigError, LockedError
from lib.execution import RunService
from lib.history import History
from lib.locks import daemon_lock, job_lock
from lib.models import Job, RunRecord, RunRequest, TriggerKind
from lib.orphans import ORPHAN_CONTAINER, ORPHAN_GONE, Fate, Liveness, fate, stop_orphan
from lib.policies import Decision, decide_due, initial_next_fire, overlap_blocks
from lib.retention import prune_and_log
from lib.runners.base import CancelToken
from lib.runners.local import STOP_SEQUENCE

log = logging.getLogger("dbt_scheduler")

ExecutorFactory = Callable[[int], Executor]

# The longest the loop waits before reading the clock again, in seconds. Waits run on the
# monotonic clock, which does not move while a VM or laptop is suspended and does not
# follow a wall-clock step (NTP, a restored snapshot): a wait computed from wall time for
# the next fire hours away would wake hours late. Capped, a step or a resume is noticed
# within a minute (the policies then run the fire time or record it missed), at the cost
# of one cheap tick a minute when idle.
MAX_SLEEP = 60.0


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
    ) -> None:
        self.config = config
        self.service = service
        self.clock = clock
        self.reload_config = reload_config
        self.executor_factory = executor_factory
        self.on_line = on_line
        self.next_fire: dict[str, datetime] = {}
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
        self._executor = self.executor_factory(self.config.max_parallel)
        for row in self.history.running():
            if fates.get(row["run_id"]) is Fate.ORPHAN:
                # On a worker: the SIGINT path gives dbt its grace, which start() must not wait out.
                log.warning(
                    "%s: run %s outlived a killed scheduler (pgid %s): stopping it",
                    row["job"],
                    row["run_id"],
                    row["process_pid"],
                )
                self._executor.submit(self._stop_orphan, row)
        for row, name in containers:
            log.warning(
                "%s: run %s outlived a killed scheduler in container %s: stopping it",
                row["job"],
                row["run_id"],
                name,
            )
            self._executor.submit(self._stop_orphan_container, row, name)
        for request, external_id, started_at in to_follow:
            log.info("%s: re-attaching to run %s (%s)", request.job.name, request.run_id, external_id)
            token = self._track(request)
            self._executor.submit(self._run, request, token, (external_id, started_at))
        self._plan(self.config.jobs.values(), now)
        self._housekeeping(now)
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
            if not job.enabled:
                self.next_fire.pop(job.name, None)
                continue
            if keep and job.name in keep:
                self.next_fire[job.name] = keep[job.name]
                continue
            last = self.history.last_scheduled_for(job.name) if job.catchup == "latest" else None
            self.next_fire[job.name] = initial_next_fire(job, now, last)

    def run_forever(self, until: datetime | None = None) -> int:
        """Loop until stopped (or until `until`, for simulations); returns an exit code."""
        if self._executor is None:
            self.start()
        try:
            while not self._stop_requested:
                if self._reload_requested:
                    self._reload_requested = False
                    self.reload()
                now = self.clock.now()
                self.dispatch(self.tick(now))
                self._housekeeping(now)
                if until is not None and now >= until:
                    break
                wake_at = min(self.next_fire.values(), default=None)
                if until is not None and (wake_at is None or wake_at > until):
                    wake_at = until
                self._wake.clear()
                if self._stop_requested or self._reload_requested:
                    continue
                seconds = (wake_at - self.clock.now()).total_seconds() if wake_at else MAX_SLEEP
                if seconds > 0:
                    self.clock.wait(min(seconds, MAX_SLEEP), self._wake)
        finally:
            self.shutdown()
        return 0

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
        for decision in decisions:
            job = decision.job
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
                if not blocked:
                    token = self._track(request)
            if blocked:
                reason = "previous run still running; overlap: skip"
                log.warning("%s: skipped the run due %s: %s", job.name, decision.scheduled_for, reason)
                self.service.skip(request, reason)
                continue
            log.info("%s: starting run %s (%s)", job.name, request.run_id, decision.trigger.value)
            assert self._executor is not None
            self._executor.submit(self._run, request, token)

    def _run(
        self, request: RunRequest, token: CancelToken, reattach: tuple[str, datetime] | None = None
    ) -> RunRecord | None:
        try:
            on_line = (lambda line: self.on_line(request, line)) if self.on_line else (lambda line: None)
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
                    self._wake.set()  # a shutdown waiting out the grace can stop waiting

    # ------------------------------------------------------------------ housekeeping

    HOUSEKEEPING_EVERY = timedelta(days=1)
    _housekept_at: datetime | None = None  # when the last prune was started

    def _housekeeping(self, now: datetime) -> None:
        """Apply `retention:` (lib/retention.py) at start, then once a day.

        It runs on one of the pool's workers, like a run, so the loop does not wait
        for it (the first prune of a year of 5-minute runs took minutes here), and it
        stops when the daemon does (the rest goes next time). It never raises.
        """
        if self._housekept_at is not None and now - self._housekept_at < self.HOUSEKEEPING_EVERY:
            return
        self._housekept_at = now
        assert self._executor is not None
        self._executor.submit(prune_and_log, self.config, self.history, now, lambda: self._stop_requested)

    def reload(self) -> bool:
        """Re-read jobs.yaml; on any error keep the last good config. True when the new one is in force."""
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
        self.config = new
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
        with self._lock:
            running = sum(len(runs) for runs in self._active.values())
        if running:
            log.info(
                "stopping: waiting up to %.0fs for %d running job(s)", self.config.shutdown_grace, running
            )
            # Remote runs go on without us: detach now, a restart re-attaches to them.
            self._cancel_all(remote_only=True)
            self._wait_out_grace()
            if self._force_stop and not self._idle.is_set():
                log.info("stopping: second stop request, cancelling running jobs now")
            self._cancel_all()
        self._executor.shutdown(wait=True)
        self._executor = None
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

    def active_runs(self) -> dict[str, int]:
        with self._lock:
            return {job: len(runs) for job, runs in self._active.items()}


def _same_schedule(old: Job, new: Job) -> bool:
    return (
        old.trigger.describe() == new.trigger.describe()
        and old.timezone == new.timezone
        and old.enabled == new.enabled
    )


def _with_state_dir(config: Config, state_dir: Path) -> Config:
    return replace(config, state_dir=state_dir)
