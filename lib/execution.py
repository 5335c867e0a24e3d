"""One run of one job, from request to recorded outcome — shared by `run-now` and the daemon.

A run goes down a chain of steps that wrap the runner like middlewares (Ofelia's):
each step is called with the `Execution` and the rest of the chain, may act before
and after the rest, and may answer on its own without calling it (a held lock: the
run is skipped). `RunService.steps` assembles the chain, outermost first; a step
whose setting is absent is left out:

    TellListeners          the listeners (the console) hear of every recorded run
    RecordEnd              the run's final history row, whatever the steps inside return
    JobLock                `overlap: skip`: a run already going means this one is skipped
    start_unless_cancelled the scheduler was stopping before the run started: skipped
    RunFolder              <state_dir>/runs/<job>/<run_id>/, or the run fails to start
    RecordStart            history's `running` row (and the start time)
    WriteReports           report.json / report.md
    keep_compiled_sql_of_nodes   the compiled SQL of warned and failed nodes, kept
    mask_secrets           node messages, the reason and dbt's artifacts, masked
    RunJob                 the end of the chain: the runner, run safely (a crash
                           becomes an `error` outcome, never an exception that could
                           kill the daemon)

A run decided against (overlap, a missed fire time) goes through the first two only.
The run's `--target`/`--select` overrides and the commands it was given are recorded
with it.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lib.clock import Clock
from lib.errors import RunDetached
from lib.history import History
from lib.locks import LockError, job_lock
from lib.models import Job, RunOutcome, RunRecord, RunRequest, RunStatus, TriggerKind
from lib.outbox import WRITE_ERRORS, Outbox
from lib.report.compiled import keep_compiled_sql
from lib.report.files import mask_data, record_to_dict, write_reports
from lib.run_env import EnvFileError, effective_commands, read_dotenv, read_env_file
from lib.runners.base import CancelToken, RunContext, Runner
from lib.secrets import WORK_PATTERNS, SecretMasker, mask_artifacts
from lib.statedir import write_problem

if TYPE_CHECKING:
    from lib.notify.dispatcher import Notifier

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


def run_folder(state_dir: Path, request: RunRequest) -> Path:
    """Where a run keeps its log, artifacts and reports: <state_dir>/runs/<job>/<run_id>/."""
    return state_dir / "runs" / request.job.name / request.run_id


@dataclass
class Execution:
    """One run request on its way down the chain of steps and back: what the steps share.

    Steps fill it in as the run gets that far (the lock's descriptor, the run folder,
    the start time), so a record made part way says how far the run got: a run skipped
    at the lock has no folder, one that failed to start has no start of its own.
    """

    request: RunRequest
    clock: Clock
    masker: SecretMasker = field(default_factory=SecretMasker)
    on_line: Callable[[str], None] = lambda line: None
    cancel: CancelToken = field(default_factory=CancelToken)
    # (external id, start time) of a run a previous daemon started and this one follows.
    reattach_to: tuple[str, datetime] | None = None
    # Descriptors the run's process inherits (JobLock's: the lock outlives a killed daemon).
    inherit_fds: tuple[int, ...] = ()
    run_dir: Path | None = None  # set by RunFolder
    started_at: datetime | None = None  # set by RecordStart
    # Set when the run's history row must stay `running`: someone else (the next daemon,
    # another one following it) records its end. RecordEnd and the listeners leave it.
    keep_running: bool = False

    @property
    def job(self) -> Job:
        return self.request.job

    @property
    def folder(self) -> Path:
        """The run folder, for the steps inside RunFolder; asking before it is a wiring bug."""
        if self.run_dir is None:
            raise RuntimeError(f"{self.job.name}: a step needs the run folder, but RunFolder has not run")
        return self.run_dir

    def record(self, outcome: RunOutcome, started_at: datetime | None = None) -> RunRecord:
        """The run's record as far as it got, finished now (started now when it never started)."""
        now = self.clock.now()
        request = self.request
        return RunRecord(
            job=request.job.name,
            run_id=request.run_id,
            trigger=request.trigger,
            outcome=outcome,
            started_at=started_at or self.started_at or now,
            finished_at=now,
            scheduled_for=request.scheduled_for,
            triggered_by=request.triggered_by,
            run_dir=self.run_dir,
            target_override=request.target,
            select_override=request.select,
            commands=effective_commands(request.job, request.select),
        )

    def skipped(self, reason: str) -> RunRecord:
        """The record of a run decided against before it started: no folder, no commands."""
        now = self.clock.now()
        request = self.request
        return RunRecord(
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


# The rest of the chain, as a step sees it, and a step: call `next_` to go on, or
# return a record of your own to stop the run there.
Next = Callable[[Execution], RunRecord]
Step = Callable[[Execution, Next], RunRecord]


def build_chain(steps: Sequence[Step], last: Next) -> Next:
    """`steps` wrapped around `last`, steps[0] outermost: calling the result calls
    steps[0], whose `next_` is steps[1], …, whose `next_` is `last`."""
    chain = last
    for step in reversed(steps):
        chain = _link(step, chain)
    return chain


def _link(step: Step, next_: Next) -> Next:
    return lambda execution: step(execution, next_)


@dataclass(frozen=True)
class TellListeners:
    """Step: every listener hears of the recorded run once its end is recorded; a failing
    listener is logged and the others still hear. A run whose row stays `running` is not
    told (it has not ended here)."""

    listeners: tuple[Listener, ...]

    def __call__(self, execution: Execution, next_: Next) -> RunRecord:
        record = next_(execution)
        if execution.keep_running:
            return record
        for listener in self.listeners:
            try:
                listener(record)
            except Exception as exc:
                log.error("%s: a run listener failed: %s", record.job, exc)
        return record


@dataclass(frozen=True)
class RecordEnd:
    """Step: history gets the run's final row, whatever the steps inside return — a skip,
    a failure to start, an outcome. A row state_dir refuses (full, read-only, locked)
    waits in the outbox until it takes it; any other history error is logged, and the
    daemon goes on.

    A run left going on purpose (the runner raised RunDetached: a stopping daemon leaves
    its ECS task running) is not recorded: its row stays `running` with its external id,
    and the next daemon follows it to its end.
    """

    history: History
    outbox: Outbox
    state_dir: Path

    def __call__(self, execution: Execution, next_: Next) -> RunRecord:
        try:
            record = next_(execution)
        except RunDetached as detached:
            log.info(
                "%s: run %s left running (%s); a restarted daemon re-attaches",
                execution.job.name,
                execution.request.run_id,
                detached,
            )
            execution.keep_running = True
            return execution.record(RunOutcome(RunStatus.CANCELLED, reason="detached"))
        if execution.keep_running:
            return record
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
        return record


@dataclass(frozen=True)
class JobLock:
    """Step (`overlap: skip`): the rest of the chain runs holding the job's run lock.

    A run finding the lock held is skipped, `previous run still running (<holder>);
    overlap: skip`, and goes no further; one whose lock cannot be taken (a full disk)
    is skipped saying so. A re-attached run finding the lock held is followed by
    someone else (another daemon?): skipped and its row left to them. A local run's
    process inherits the lock's descriptor, so the lock stays held while it lives,
    even if we are killed.
    """

    state_dir: Path

    def __call__(self, execution: Execution, next_: Next) -> RunRecord:
        request = execution.request
        reattach = execution.reattach_to
        since = "reattached" if reattach is not None else f"since={execution.clock.now().isoformat()}"
        lock = job_lock(self.state_dir, request.job.name)
        try:
            acquired = lock.try_acquire(f"pid={os.getpid()} run_id={request.run_id} {since}")
        except LockError as exc:  # nothing ran
            log.error("%s: %s: the run did not start", request.job.name, exc)
            if reattach is not None:  # the row stays `running`: the next daemon tries again
                execution.keep_running = True
                return execution.record(RunOutcome(RunStatus.SKIPPED), started_at=reattach[1])
            return execution.skipped(f"{exc}: the run did not start")
        if not acquired:
            busy = lock.holder() or "another process"
            if reattach is not None:
                log.warning("%s: run %s is followed by %s", request.job.name, request.run_id, busy)
                execution.keep_running = True
                return execution.record(RunOutcome(RunStatus.SKIPPED), started_at=reattach[1])
            return execution.skipped(f"previous run still running ({busy}); overlap: skip")
        try:
            fd = lock.fileno()
            if reattach is None and fd is not None:
                execution.inherit_fds = (fd,)
            return next_(execution)
        finally:
            lock.release()


def start_unless_cancelled(execution: Execution, next_: Next) -> RunRecord:
    """Step (new runs): a run whose cancel token is already set — the scheduler was
    stopping while it waited — is skipped instead of started."""
    if execution.cancel.cancelled:
        return execution.skipped("the scheduler was stopping before the run started")
    return next_(execution)


@dataclass(frozen=True)
class RunFolder:
    """Step: the run gets its folder; when state_dir cannot make it (full, read-only),
    nothing can run: the run fails to start, saying why (also in state_dir's problem file)."""

    state_dir: Path

    def __call__(self, execution: Execution, next_: Next) -> RunRecord:
        run_dir = run_folder(self.state_dir, execution.request)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = write_problem(self.state_dir, exc)
            log.error("%s: run %s did not start: %s", execution.job.name, execution.request.run_id, problem)
            reason = f"could not create the run folder: {problem}"
            return execution.record(RunOutcome(RunStatus.FAILED_TO_START, reason=reason))
        execution.run_dir = run_dir
        return next_(execution)


@dataclass(frozen=True)
class RecordStart:
    """Step: history gets the run's `running` row, with the commands it was given. When the
    row cannot be written the run still goes (RecordEnd's `finish` inserts it). A
    re-attached run keeps the row and the start time a previous daemon recorded."""

    history: History
    state_dir: Path

    def __call__(self, execution: Execution, next_: Next) -> RunRecord:
        if execution.reattach_to is not None:
            execution.started_at = execution.reattach_to[1]
            return next_(execution)
        request, job = execution.request, execution.job
        execution.started_at = execution.clock.now()
        try:
            self.history.start(
                request, execution.started_at, execution.folder, effective_commands(job, request.select)
            )
        except (OSError, sqlite3.Error) as exc:
            log.error(
                "%s: could not record the start of run %s: %s",
                job.name,
                request.run_id,
                write_problem(self.state_dir, exc),
            )
        return next_(execution)


@dataclass(frozen=True)
class Notify:
    """Step (alerts configured): once the run's end is recorded, its event goes to the
    notifier (lib/notify/dispatcher.py), which routes and delivers it on its own thread:
    handing it over costs the run nothing, and no alert can fail or slow it. The run's
    manifest (for the owners of failed nodes) is read there too, not here."""

    notifier: Notifier

    def __call__(self, execution: Execution, next_: Next) -> RunRecord:
        record = next_(execution)
        if execution.keep_running:
            return record
        try:
            manifest = record.run_dir / "manifest.json" if record.run_dir is not None else None
            # Masked with the run's own masker (its DBT_ENV_SECRET_* values), as the reports are.
            report = mask_data(record_to_dict(record), execution.masker)
            self.notifier.submit_finished(execution.job, report, manifest)
        except Exception as exc:  # an alert must never change what happened to the run
            log.error("%s: could not hand run %s to the notifier: %s", record.job, record.run_id, exc)
        return record


@dataclass(frozen=True)
class AnnounceStart:
    """Step (alerts configured): `started` (and a job heartbeat's /start ping) once the
    run's start is recorded."""

    notifier: Notifier

    def __call__(self, execution: Execution, next_: Next) -> RunRecord:
        request = execution.request
        started = execution.started_at or execution.clock.now()
        try:
            self.notifier.submit_started(
                execution.job,
                {
                    "job": request.job.name,
                    "run_id": request.run_id,
                    "trigger": request.trigger.value,
                    "triggered_by": request.triggered_by,
                    "started_at": started.isoformat(),
                    "target_override": request.target,
                },
            )
        except Exception as exc:
            log.error(
                "%s: could not hand the start of run %s to the notifier: %s",
                request.job.name,
                request.run_id,
                exc,
            )
        return next_(execution)


@dataclass(frozen=True)
class WriteReports:
    """Step: report.json and report.md in the run folder, from the record the steps inside
    return; a report the disk refuses waits in the outbox and is written once it can be."""

    outbox: Outbox
    state_dir: Path

    def __call__(self, execution: Execution, next_: Next) -> RunRecord:
        record = next_(execution)
        run_dir, masker = execution.folder, execution.masker
        try:
            write_reports(record, run_dir, masker)
        except OSError as exc:  # a full disk must not lose the report: written once it can be
            log.error(
                "%s: could not write the report of run %s: %s (kept, written when it can be)",
                record.job,
                record.run_id,
                write_problem(self.state_dir, exc),
            )
            self.outbox.add(record, "report", lambda: write_reports(record, run_dir, masker))
        return record


def keep_compiled_sql_of_nodes(execution: Execution, next_: Next) -> RunRecord:
    """Step: the compiled SQL of warned and failed nodes is kept in the run folder and
    linked from their results — from the artifacts there, so it works for every runner,
    after work/ is gone. Inside WriteReports, whose report links the kept files."""
    record = next_(execution)
    try:
        nodes = keep_compiled_sql(execution.folder, record.outcome.nodes)
    except OSError as exc:
        log.error("%s: could not keep the compiled SQL in %s: %s", record.job, execution.folder, exc)
        return record
    return replace(record, outcome=replace(record.outcome, nodes=nodes))


def mask_secrets(execution: Execution, next_: Next) -> RunRecord:
    """Step: what the run brought back is masked before any other step reads it: the dbt
    artifacts kept in the run folder, dbt's log and target/ in a kept `work/`, the reason
    and every node message."""
    record = next_(execution)
    masker = execution.masker
    try:
        # dbt masks DBT_ENV_SECRET_* in what it prints, not in what a node's message
        # quotes (a database error echoing a value) nor in the artifacts it writes:
        # mask the copies kept with the run before anything reads them again.
        mask_artifacts(execution.folder, masker)
        work = execution.folder / "work"  # kept when the run failed
        if work.is_dir():
            mask_artifacts(work, masker, WORK_PATTERNS)
    except OSError as exc:
        log.error("%s: could not mask the dbt artifacts in %s: %s", record.job, execution.folder, exc)
    outcome = _masked(record.outcome, masker)
    return replace(record, outcome=outcome)


@dataclass(frozen=True)
class RunJob:
    """The end of the chain: the job's runner runs it, or follows a re-attached run to its end.

    dbt-core's safe_run: a runner that raises becomes an `error` outcome (its traceback
    masked, in the log), never an exception that could stop the daemon; a job whose
    runner is not configured fails to start. Only RunDetached goes through (RecordEnd).
    """

    runners: Mapping[str, Runner]
    history: History
    state_dir: Path

    def __call__(self, execution: Execution) -> RunRecord:
        request, job = execution.request, execution.job
        ctx = RunContext(
            request=request,
            run_dir=execution.folder,
            clock=execution.clock,
            masker=execution.masker,
            on_line=execution.on_line,
            cancel=execution.cancel,
            cache_dir=self.state_dir / "cache" / job.name,
            on_external_id=lambda ext, url: self.history.set_external_id(request.run_id, ext, url),
            on_process=lambda pid: self._record_process(request, pid),
            inherit_fds=execution.inherit_fds,
        )
        reattach = execution.reattach_to
        return execution.record(self._safe_run(job, ctx, reattach[0] if reattach else None))

    def _record_process(self, request: RunRequest, pid: int) -> None:
        try:
            self.history.set_process(request.run_id, pid=pid)
        except Exception as exc:  # the run goes on; only a restart's orphan search loses it
            log.error(
                "%s: could not record run %s's pid in history: %s", request.job.name, request.run_id, exc
            )

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
    # Alerts (jobs.yaml `notifications:`, a job's notify/heartbeat); None: none configured.
    notifier: Notifier | None = None
    # Values that must be masked besides DBT_ENV_SECRET_*: what `${NAME}` brought into
    # the notification settings (a webhook URL's token, a routing key).
    extra_secrets: tuple[str, ...] = ()

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
        return run_folder(self.state_dir, request)

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
        return SecretMasker.from_env(self.base_env, from_file, job.env, from_aws, also=self.extra_secrets)

    def steps(self, execution: Execution, *, runs: bool = True) -> list[Step]:
        """The one place the chain is assembled: the steps `execution` goes through,
        outermost first. Every run is recorded and told, one decided against (`runs=False`)
        too; a run that goes on takes the lock, gets its folder and start row, and is
        reported and masked on the way back. A step whose setting is absent is left out."""
        steps: list[Step] = []
        if self.listeners:
            steps.append(TellListeners(tuple(self.listeners)))
        alerts = self.notifier is not None and self.notifier.configured
        if alerts:  # outside RecordEnd: it acts once the end is recorded
            steps.append(Notify(self.notifier))
        steps.append(RecordEnd(self.history, self.outbox, self.state_dir))
        if not runs:
            return steps
        if execution.job.overlap == "skip":
            steps.append(JobLock(self.state_dir))
        if execution.reattach_to is None:
            steps.append(start_unless_cancelled)
        # On the way back the innermost acts first: masked, then the SQL kept, then reported.
        steps += [
            RunFolder(self.state_dir),
            RecordStart(self.history, self.state_dir),
            *([AnnounceStart(self.notifier)] if alerts else []),
            WriteReports(self.outbox, self.state_dir),
            keep_compiled_sql_of_nodes,  # kept before the report, which links the files
            mask_secrets,  # innermost: nothing on the way back reads an unmasked outcome
        ]
        return steps

    def chain(self, execution: Execution) -> Next:
        """`steps(execution)` around the runner: call it with `execution` to run it."""
        return build_chain(self.steps(execution), RunJob(self.runners, self.history, self.state_dir))

    def skip(self, request: RunRequest, reason: str) -> RunRecord:
        """Record a run that was decided against (overlap, missed fire time)."""
        execution = Execution(request, self.clock)
        return build_chain(self.steps(execution, runs=False), lambda e: e.skipped(reason))(execution)

    def execute(
        self,
        request: RunRequest,
        on_line: Callable[[str], None] = lambda line: None,
        cancel: CancelToken | None = None,
    ) -> RunRecord:
        """Run once under the job's lock; a run already in progress means this one is skipped."""
        execution = Execution(
            request, self.clock, self.masker_for(request.job), on_line, cancel or CancelToken()
        )
        return self.chain(execution)(execution)

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
        execution = Execution(
            request,
            self.clock,
            self.masker_for(request.job),
            on_line,
            cancel or CancelToken(),
            reattach_to=(external_id, started_at),
        )
        return self.chain(execution)(execution)

    def retry_pending(self) -> int:
        """Write the history rows and reports that could not be written before (lib/outbox.py)."""
        return self.outbox.retry() if len(self.outbox) else 0

    def can_reattach(self, job: Job) -> bool:
        """True when the job's runs go on without the scheduler (ECS tasks): stopping the
        daemon detaches from them instead of stopping them, and a restart re-attaches."""
        return hasattr(self.runners.get(job.runner), "reattach")


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
