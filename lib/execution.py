"""One run of one job, from request to recorded outcome — shared by `run-now` and the daemon.

The steps wrap the runner like middlewares: take the job's lock (no overlap),
record the start, run safely (a crash becomes an `error` outcome, never an
exception that could kill the daemon), keep the compiled SQL of warned and failed
nodes in the run folder, write report.json/report.md, record the end, then tell
the listeners (console, later: notifiers). The run's `--target`/`--select`
overrides and the commands it was given are recorded with it.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from lib.clock import Clock
from lib.errors import RunDetached
from lib.history import History
from lib.locks import LockError, job_lock
from lib.models import Job, RunOutcome, RunRecord, RunRequest, RunStatus, TriggerKind
from lib.outbox import WRITE_ERRORS, Outbox
from lib.report.compiled import keep_compiled_sql
from lib.report.files import write_reports
from lib.run_env import EnvFileError, effective_commands, read_dotenv, read_env_file
from lib.runners.base import CancelToken, RunContext, Runner
from lib.secrets import SecretMasker, mask_artifacts
from lib.statedir import write_problem

log = logging.getLogger("dbt_scheduler")

Listener = Callable[[RunRecord], None]


# The suffix counts up from a random start: a random suffix alone collided (1,440 rows
# written in one second, as when a resumed host records a day of missed fire times, share
# a 24-bit suffix by chance ~6% of the time, and history's upsert then merges two runs).
# Counting makes ids of one process distinct; the random start keeps two processes (the
# daemon and a run-now) apart. os.urandom, not the secrets module: that one loads
# OpenSSL's libcrypto, +3.6 MB of RSS for an idle daemon (bench/idle.py).
_RUN_SUFFIX = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_run_id(now: datetime) -> str:
    """Sortable and unique: UTC time plus a short suffix, e.g. 20261127T060000Z-3f9a1c."""
    utc = now.astimezone(UTC)
    return f"{utc:%Y%m%dT%H%M%SZ}-{next(_RUN_SUFFIX) % 2**24:06x}"


@dataclass
class RunService:
    """Executes run requests against the configured runners and records everything."""

    state_dir: Path
    runners: Mapping[str, Runner]
    history: History
    clock: Clock
    listeners: list[Listener] = field(default_factory=list)
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # aws.env_file: what ECS tasks get as their environment (bootstrap uploads it). Its
    # DBT_ENV_SECRET_* values are masked in ECS runs' CloudWatch copy and reports.
    aws_env_file: Path | None = None
    # History rows and reports state_dir could not take yet (full, read-only, locked).
    outbox: Outbox = field(default_factory=Outbox)

    def new_request(
        self,
        job: Job,
        trigger: TriggerKind,
        scheduled_for: datetime | None = None,
        triggered_by: str | None = None,
        target: str | None = None,
        select: str | None = None,
    ) -> RunRequest:
        return RunRequest(
            job=job,
            run_id=new_run_id(self.clock.now()),
            trigger=trigger,
            scheduled_for=scheduled_for,
            triggered_by=triggered_by,
            target=target,
            select=select,
        )

    def run_dir(self, request: RunRequest) -> Path:
        return self.state_dir / "runs" / request.job.name / request.run_id

    def masker_for(self, job: Job) -> SecretMasker:
        """Masks DBT_ENV_SECRET_* values from every source the run's environment is built from:
        the scheduler's environment, the job's env_file and env, and for ECS jobs aws.env_file."""
        try:
            from_file = read_env_file(job)
        except EnvFileError:
            from_file = {}
        from_aws: Mapping[str, str] = {}
        if job.runner == "ecs" and self.aws_env_file is not None:
            from_aws = read_dotenv(self.aws_env_file)
        return SecretMasker.from_env(self.base_env, from_file, job.env, from_aws)

    def skip(self, request: RunRequest, reason: str) -> RunRecord:
        """Record a run that was decided against (overlap, missed fire time)."""
        now = self.clock.now()
        record = RunRecord(
            job=request.job.name,
            run_id=request.run_id,
            trigger=request.trigger,
            outcome=RunOutcome(RunStatus.SKIPPED, reason=reason),
            started_at=now,
            finished_at=now,
            scheduled_for=request.scheduled_for,
            triggered_by=request.triggered_by,
            target_override=request.target,
            select_override=request.select,
        )
        self._record_end(record)
        return record

    def execute(
        self,
        request: RunRequest,
        on_line: Callable[[str], None] = lambda line: None,
        cancel: CancelToken | None = None,
    ) -> RunRecord:
        """Run once under the job's lock; a run already in progress means this one is skipped."""
        holder = f"pid={os.getpid()} run_id={request.run_id} since={self.clock.now().isoformat()}"
        try:
            with self._job_lock(request, holder) as (busy, lock_fds):
                if busy is not None:
                    return self.skip(request, f"previous run still running ({busy}); overlap: skip")
                cancel = cancel or CancelToken()
                if cancel.cancelled:
                    return self.skip(request, "the scheduler was stopping before the run started")
                return self._execute_locked(request, on_line, cancel, inherit_fds=lock_fds)
        except LockError as exc:  # raised only while taking the lock: nothing ran
            log.error("%s: %s: the run did not start", request.job.name, exc)
            return self.skip(request, f"{exc}: the run did not start")

    @contextmanager
    def _job_lock(self, request: RunRequest, holder: str) -> Iterator[tuple[str | None, tuple[int, ...]]]:
        """Hold the job's run lock (with `overlap: skip`) for the block.

        Yields (None, the lock's descriptor) when the run may go, or (who holds the
        lock, ()) when another run does. A local run's process inherits the
        descriptor, so the lock stays held while it lives even if we are killed.
        """
        job = request.job
        lock = job_lock(self.state_dir, job.name) if job.overlap == "skip" else None
        if lock is not None and not lock.try_acquire(holder):
            yield lock.holder() or "another process", ()
            return
        fd = lock.fileno() if lock is not None else None
        try:
            yield None, (fd,) if fd is not None else ()
        finally:
            if lock is not None:
                lock.release()

    def reattach(
        self,
        request: RunRequest,
        external_id: str,
        started_at: datetime,
        on_line: Callable[[str], None] = lambda line: None,
        cancel: CancelToken | None = None,
    ) -> RunRecord:
        """Follow a run a previous daemon started (e.g. an ECS task) to its end and record it.

        Used at start-up for history rows still `running` with an external id, so a
        restarted daemon records the outcome instead of running the job again.
        """
        with self._job_lock(request, f"pid={os.getpid()} run_id={request.run_id} reattached") as (busy, _):
            if busy is not None:
                # Someone else (another daemon?) already follows it: leave the row to them.
                log.warning("%s: run %s is followed by %s", request.job.name, request.run_id, busy)
                return self._record_for(request, started_at, RunOutcome(RunStatus.SKIPPED), None)
            return self._execute_locked(
                request, on_line, cancel or CancelToken(), reattach_to=(external_id, started_at)
            )

    def _execute_locked(
        self,
        request: RunRequest,
        on_line: Callable[[str], None],
        cancel: CancelToken,
        reattach_to: tuple[str, datetime] | None = None,
        inherit_fds: tuple[int, ...] = (),
    ) -> RunRecord:
        job = request.job
        run_dir = self.run_dir(request)
        masker = self.masker_for(job)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a full or read-only state_dir: nothing can run without its folder
            problem = write_problem(self.state_dir, exc)
            log.error("%s: run %s did not start: %s", job.name, request.run_id, problem)
            record = self._record_for(
                request,
                self.clock.now(),
                RunOutcome(RunStatus.FAILED_TO_START, reason=f"could not create the run folder: {problem}"),
                None,
            )
            self._record_end(record)
            return record
        if reattach_to is None:
            started_at = self.clock.now()
            try:
                self.history.start(request, started_at, run_dir, effective_commands(job, request.select))
            except (OSError, sqlite3.Error) as exc:
                # The run still goes: `finish` inserts the row when `start` could not.
                log.error(
                    "%s: could not record the start of run %s: %s",
                    job.name,
                    request.run_id,
                    write_problem(self.state_dir, exc),
                )
        else:
            started_at = reattach_to[1]
        ctx = RunContext(
            request=request,
            run_dir=run_dir,
            clock=self.clock,
            masker=masker,
            on_line=on_line,
            cancel=cancel,
            cache_dir=self.state_dir / "cache" / job.name,
            on_external_id=lambda ext, url: self.history.set_external_id(request.run_id, ext, url),
            on_process=lambda pid: self._record_process(request, pid),
            inherit_fds=inherit_fds,
        )
        try:
            outcome = self._safe_run(job, ctx, reattach_to[0] if reattach_to else None)
        except RunDetached as detached:
            # Left running on purpose: history keeps the row `running` with its external
            # id, and the next daemon follows it to its end.
            log.info(
                "%s: run %s left running (%s); a restarted daemon re-attaches",
                job.name,
                request.run_id,
                detached,
            )
            return self._record_for(
                request, started_at, RunOutcome(RunStatus.CANCELLED, reason="detached"), run_dir
            )
        try:
            # dbt masks DBT_ENV_SECRET_* in what it prints, not in what a node's message
            # quotes (a database error echoing a value) nor in the artifacts it writes:
            # mask the copies kept with the run before anything reads them again.
            mask_artifacts(run_dir, masker)
        except OSError as exc:
            log.error("%s: could not mask the dbt artifacts in %s: %s", job.name, run_dir, exc)
        outcome = _masked(outcome, masker)
        try:
            # Before the report, which links the kept files; from the artifacts in the
            # run folder, so it works for every runner, after work/ is gone.
            outcome = replace(outcome, nodes=keep_compiled_sql(run_dir, outcome.nodes))
        except OSError as exc:
            log.error("%s: could not keep the compiled SQL in %s: %s", job.name, run_dir, exc)
        record = self._record_for(request, started_at, outcome, run_dir)
        try:
            write_reports(record, run_dir, masker)
        except OSError as exc:  # a full disk must not lose the report: written once it can be
            log.error(
                "%s: could not write the report of run %s: %s (kept, written when it can be)",
                job.name,
                request.run_id,
                write_problem(self.state_dir, exc),
            )
            self.outbox.add(record, "report", lambda: write_reports(record, run_dir, masker))
        self._record_end(record)
        return record

    def retry_pending(self) -> int:
        """Write the history rows and reports that could not be written before (lib/outbox.py)."""
        return self.outbox.retry() if len(self.outbox) else 0

    def _record_process(self, request: RunRequest, pid: int) -> None:
        try:
            self.history.set_process(request.run_id, pid=pid)
        except Exception as exc:  # the run goes on; only a restart's orphan search loses it
            log.error(
                "%s: could not record run %s's pid in history: %s", request.job.name, request.run_id, exc
            )

    def _record_for(
        self, request: RunRequest, started_at: datetime, outcome: RunOutcome, run_dir: Path | None
    ) -> RunRecord:
        return RunRecord(
            job=request.job.name,
            run_id=request.run_id,
            trigger=request.trigger,
            outcome=outcome,
            started_at=started_at,
            finished_at=self.clock.now(),
            scheduled_for=request.scheduled_for,
            triggered_by=request.triggered_by,
            run_dir=run_dir,
            target_override=request.target,
            select_override=request.select,
            commands=effective_commands(request.job, request.select),
        )

    def can_reattach(self, job: Job) -> bool:
        """True when the job's runs go on without the scheduler (ECS tasks): stopping the
        daemon detaches from them instead of stopping them, and a restart re-attaches."""
        return hasattr(self.runners.get(job.runner), "reattach")

    def _safe_run(self, job: Job, ctx: RunContext, reattach_to: str | None = None) -> RunOutcome:
        runner = self.runners.get(job.runner)
        if runner is None:
            return RunOutcome(RunStatus.FAILED_TO_START, reason=f"no runner {job.runner!r} is configured")
        try:
            if reattach_to is not None:
                return runner.reattach(ctx, reattach_to)  # type: ignore[attr-defined]
            return runner.run(ctx)
        except RunDetached:
            raise
        except Exception as exc:  # dbt-core's safe_run: a crash is a result, not the end of the daemon
            detail = ctx.masker("".join(traceback.format_exception(exc)))
            log.error("%s: the %s runner crashed:\n%s", job.name, job.runner, detail)
            reason = ctx.masker(f"internal error in the {job.runner} runner: {type(exc).__name__}: {exc}")
            return RunOutcome(RunStatus.ERROR, reason=reason)

    def _record_end(self, record: RunRecord) -> None:
        try:
            self.history.finish(record)
        except WRITE_ERRORS as exc:  # the row waits in the outbox until state_dir takes it
            log.error(
                "%s: could not record run %s (%s) in history: %s (kept, recorded when it can be)",
                record.job,
                record.run_id,
                record.outcome.status.value,
                write_problem(self.state_dir, exc),
            )
            self.outbox.add(record, "history row", lambda: self.history.finish(record))
        except Exception as exc:  # history is important, but the daemon must go on
            log.error("%s: could not record run %s in history: %s", record.job, record.run_id, exc)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception as exc:
                log.error("%s: a run listener failed: %s", record.job, exc)


def _masked(outcome: RunOutcome, masker: SecretMasker) -> RunOutcome:
    """The outcome with its reason and every node message masked, before it reaches the
    reports, history, the console or any listener (runners read node messages from the
    artifacts as dbt wrote them)."""
    nodes = tuple(
        replace(node, message=masker(node.message)) if node.message else node for node in outcome.nodes
    )
    return replace(outcome, reason=masker(outcome.reason), nodes=nodes)


def with_listener(service: RunService, listener: Listener) -> RunService:
    """A copy of the service that also tells `listener` about every finished run."""
    return replace(service, listeners=[*service.listeners, listener])
