"""The ECS runner: one ECS task per run, followed with DescribeTasks until it stops.

A run is: RunTask (the task definition's latest ACTIVE revision, with the run's
variables as container overrides) → DescribeTasks every `poll_interval` seconds →
classify the STOPPED task from its *container's* exit code and reason → its whole
CloudWatch stream, read page by page, becomes run.log (up to `max_log_bytes`, then
the stream's last lines) → run_results.json, manifest.json and git_sha are fetched
from the run's S3 artifacts folder, where the container put them.

The commit SHA comes from the `git_sha` artifact, else from the `GIT_SHA` marker
in the log: neither depends on how long the log is.

A task that never got to run its container (RunTask `failures`, an image that
cannot be pulled, an env file that could not be downloaded) is retried up to
`aws.start_retries` times; a dbt failure never is. A daemon restarted while a task
runs follows it with `reattach` instead of running the job again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from lib.aws.clients import AwsClients
from lib.aws.logs import console_link, stream_lines, stream_name, task_id
from lib.dbt_results import load_node_results, strip_ansi, summarize
from lib.durations import format_duration
from lib.errors import RunDetached
from lib.markers import parse_marker
from lib.models import AwsSettings, NodeResult, RunOutcome, RunStatus
from lib.run_env import container_variables
from lib.runners.base import LOG_TAIL_LINES, RunContext, classify_exit

log = logging.getLogger(__name__)

# run.log keeps the stream up to this size, then only its last LOG_TAIL_LINES lines
# with a note: a runaway log (dbt --debug on a big project) must not fill the disk.
# The whole stream is still read, for the markers and the last lines.
MAX_LOG_BYTES = 64 * 1024 * 1024
# After StopTask, ECS sends SIGTERM, waits the container's stopTimeout (30 s by
# default, 120 s at most) and then SIGKILLs; give it that and a little more.
STOP_WAIT = 150.0
# Consecutive DescribeTasks errors (throttling, a network blip) tolerated while a task
# runs. The waits between them double from poll_interval up to ERROR_BACKOFF_CAP, so
# the default rides out about six minutes of trouble at a 10 s poll interval.
DESCRIBE_RETRIES = 8
ERROR_BACKOFF_CAP = 60.0
STARTED_BY_PREFIX = "dbt-scheduler/"
STARTED_BY_MAX = 36  # the scheduler's own limit; the API allows 128
STOP_REASON_MAX = 255  # StopTask's limit for `reason`
ARTIFACT_FILES = ("run_results.json", "manifest.json", "git_sha")
# What run_commands.sh writes to git_sha: `git rev-parse HEAD` (SHA-1, or SHA-256 repos).
_GIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# RunTask errors that no retry will fix: the caller's credentials or the cluster itself.
PERMANENT_START_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "ClusterNotFoundException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "UnsupportedFeatureException",
    }
)
# The `reason` of a RunTask failure (AWS "API failure reasons"), in words.
_PLACEMENT_FAILURES = {
    "RESOURCE:CPU": "no container instance in the cluster has enough free CPU",
    "RESOURCE:MEMORY": "no container instance in the cluster has enough free memory",
    "RESOURCE:PORTS": "the ports the task needs are taken on every container instance",
    "RESOURCE:ENI": "no free network interface (ENI) for an awsvpc task",
    "RESOURCE:GPU": "no container instance in the cluster has a free GPU",
    "AGENT": "the ECS agent on the container instance is disconnected",
    "ATTRIBUTE": "no container instance has the attributes the task needs",
    "LOCATION": "no container instance in the requested location",
    "MISSING": "the container instance could not be found",
}
# Stop codes meaning a person or a service stopped the task on purpose: a task they
# stopped before its container ran is not ours to start again.
_DELIBERATE_STOPS = frozenset({"UserInitiated", "ServiceSchedulerInitiated"})
# Stop codes meaning the capacity under the task went away.
_CAPACITY_STOPS = frozenset({"SpotInterruption", "TerminationNotice", "InfrastructureHealth"})
_STARTED_BY_UNSAFE = re.compile(r"[^A-Za-z0-9_/-]")


def started_by(job_name: str) -> str:
    """RunTask's `startedBy` for a job: `dbt-scheduler/<job>`, at most 36 characters.

    Characters the API rejects (anything but letters, digits, `-`, `_`, `/`) become
    `-`; a name too long keeps its start plus 6 hex digits of its hash, so two long
    names that share a start still differ."""
    room = STARTED_BY_MAX - len(STARTED_BY_PREFIX)
    name = _STARTED_BY_UNSAFE.sub("-", job_name)
    if len(name) > room:
        digest = hashlib.sha1(job_name.encode("utf-8")).hexdigest()[:6]
        name = f"{name[: room - 7]}-{digest}"
    return STARTED_BY_PREFIX + name


def artifacts_uri(settings: AwsSettings, job_name: str, run_id: str) -> str | None:
    """`s3://<bucket>/<artifacts_prefix>/<job>/<run_id>/`, where the container uploads
    run_results.json and manifest.json; None when no bucket is configured."""
    if not settings.bucket:
        return None
    prefix = settings.artifacts_prefix.strip("/")
    folder = f"{prefix}/{job_name}/{run_id}" if prefix else f"{job_name}/{run_id}"
    return f"s3://{settings.bucket}/{folder}/"


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _aws_error(exc: Exception) -> tuple[str, str]:
    """(code, one-line message) of a botocore error."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return str(error.get("Code", "Unknown")), _one_line(error.get("Message", "") or str(exc))
    return type(exc).__name__, _one_line(str(exc))


def _container(task: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    containers = task.get("containers") or []
    named = next((c for c in containers if c.get("name") == name), None)
    return named or (containers[0] if containers else {})


def ran_image(task: Mapping[str, Any], container_name: str) -> str | None:
    """The image the task's container ran, as `name@sha256:…` when ECS says its digest.

    The task definition names the image by digest (bootstrap), but one registered by
    hand may name a tag: ECS reports the digest it actually pulled (`imageDigest`), so
    the report says what ran either way.
    """
    container = _container(task, container_name)
    image, digest = container.get("image"), container.get("imageDigest")
    if not image:
        return None
    if digest and "@" not in image:
        repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        return f"{repository}@{digest}"
    return str(image)


def container_never_ran(task: Mapping[str, Any], container_name: str) -> bool:
    """True for a STOPPED task whose container has no exit code: it never ran (image
    pull failed, env files not downloaded, TaskFailedToStart…) — unless someone
    stopped the task on purpose before it got that far."""
    container = _container(task, container_name)
    return container.get("exitCode") is None and task.get("stopCode") not in _DELIBERATE_STOPS


def classify_task(
    task: Mapping[str, Any],
    container_name: str,
    *,
    nodes: tuple[NodeResult, ...] | None,
    log_tail: list[str],
    job_name: str,
    error_marker: str | None = None,
    artifacts: str | None = None,
) -> tuple[RunStatus, str, int | None]:
    """Status, one-line reason and exit code of a STOPPED task (timeouts and cancels
    are decided by the caller).

    Decided by the container, not the task: the task's `stoppedReason` is usually
    just "Essential container in task exited", which hides the cause; the container's
    own `reason` and `exitCode` say it (AWS "Stopped tasks errors").

    - no exit code: the container never ran → failed_to_start with the container's
      reason (CannotPullContainerError…, ResourceInitializationError…), unless the
      task was stopped on purpose (StopTask, a service) → failed;
    - exit 137 or an OutOfMemoryError reason → failed, "killed: out of memory (exit
      137)", or "killed by StopTask" when someone stopped it (stopCode UserInitiated);
    - any other exit: as for a local run (`classify_exit`), the dbt summary from the
      node results when there are some, with the container's reason added.
    """
    container = _container(task, container_name)
    exit_code = container.get("exitCode")
    reason = _one_line(container.get("reason") or "")
    stop_code = str(task.get("stopCode") or "")
    stopped_reason = _one_line(task.get("stoppedReason") or "")
    if exit_code is None:
        if stop_code in _DELIBERATE_STOPS:
            why = stopped_reason or reason or "no reason given"
            return RunStatus.FAILED, f"stopped ({stop_code}) before the container ran: {why}", None
        cause = reason or stopped_reason or (f"stopCode {stop_code}" if stop_code else "no reason given")
        return RunStatus.FAILED_TO_START, f"the ECS task stopped before dbt ran: {cause}", None
    exit_code = int(exit_code)
    out_of_memory = "OutOfMemoryError" in reason
    if exit_code != 0 and not out_of_memory:
        if stop_code == "UserInitiated":
            why = stopped_reason or "no reason given"
            return RunStatus.FAILED, f"killed by StopTask (exit {exit_code}): {why}", exit_code
        if stop_code in _CAPACITY_STOPS:
            why = stopped_reason or reason or "no reason given"
            return (
                RunStatus.FAILED,
                f"killed: ECS stopped the task ({stop_code}, exit {exit_code}): {why}",
                exit_code,
            )
    if exit_code == 137 or out_of_memory:
        detail = f": {reason}" if reason else ""
        why = f"killed: out of memory (exit {exit_code}){detail}; give the task more memory (aws.memory)"
        return RunStatus.FAILED, why, exit_code
    if exit_code == 0 and nodes is None:
        # Without a bucket the container had nowhere to put run_results.json.
        what = f"dbt succeeded but no run_results.json reached {artifacts}" if artifacts else ""
        return RunStatus.SUCCEEDED, what, 0
    status, why = classify_exit(
        exit_code, nodes=nodes, error_marker=error_marker, log_tail=log_tail, job_name=job_name
    )
    if status is not RunStatus.SUCCEEDED and reason and reason not in why:
        why = f"{why} (container: {reason})"
    return status, why, exit_code


@dataclass(frozen=True)
class _Started:
    task_arn: str | None
    error: str = ""  # why RunTask gave no task
    retryable: bool = True


@dataclass(frozen=True)
class _Followed:
    """How following a task ended."""

    task_arn: str
    task: Mapping[str, Any] | None  # the last description seen
    stopped_for: str | None = None  # "timeout" | "cancel": we called StopTask
    lost: str | None = None  # why we stopped following before it was STOPPED


class _NotFound(Exception):
    """DescribeTasks does not know the task."""


class EcsRunner:
    """Runs each job as one ECS task and reports how it ended (see the module docstring).

    Waits go through `ctx.clock.wait`, woken by the run's cancel token: never
    time.sleep. A cancel or the job's timeout stops the task with StopTask and waits
    (at most `stop_wait` seconds) for ECS to report it STOPPED.
    """

    def __init__(
        self,
        settings: AwsSettings,
        clients: AwsClients,
        *,
        max_log_bytes: int = MAX_LOG_BYTES,
        stop_wait: float = STOP_WAIT,
        describe_retries: int = DESCRIBE_RETRIES,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.max_log_bytes = max_log_bytes
        self.stop_wait = stop_wait
        self.describe_retries = describe_retries

    # --- public -----------------------------------------------------------------

    def log_url(self, task_arn: str) -> str:
        """The CloudWatch console link of the task's awslogs stream."""
        s = self.settings
        return console_link(
            s.region, s.log_group, stream_name(s.log_stream_prefix, s.container_name, task_arn)
        )

    def run(self, ctx: RunContext) -> RunOutcome:
        """Start the job's task, follow it to its end, and say how it went.

        `ctx.on_external_id(task_arn, log_url)` is called as soon as each task exists.
        A start failure is retried `start_retries` times after `start_retry_backoff`
        seconds, doubling; the job's timeout counts from the first attempt and a retry
        that would not fit in it is not made.
        """
        job = ctx.request.job
        log_path = self._new_log(ctx)
        wake = threading.Event()
        ctx.cancel.on_cancel(wake.set)
        started = ctx.clock.monotonic()
        overrides = self._overrides(ctx)
        attempts = 1 + max(0, self.settings.start_retries)
        backoff = self.settings.start_retry_backoff
        outcome = RunOutcome(RunStatus.FAILED_TO_START, log_path=log_path)
        for attempt in range(1, attempts + 1):
            if ctx.cancel.cancelled:
                return _cancelled(
                    outcome, "cancelled: the scheduler was stopping before the ECS task started"
                )
            start = self._run_task(ctx, overrides, attempt)
            of = f" (attempt {attempt} of {attempts})" if attempt > 1 else ""
            if start.task_arn is None:
                self._log(ctx, [f"[dbt-scheduler] {start.error}{of}"])
                outcome = RunOutcome(RunStatus.FAILED_TO_START, ctx.masker(start.error), log_path=log_path)
                retryable = start.retryable
            else:
                self._log(ctx, [f"[dbt-scheduler] started ECS task {start.task_arn}{of}"])
                self._tell_external_id(ctx, start.task_arn)
                followed = self._follow(ctx, start.task_arn, wake, started, seen=False)
                outcome = self._outcome(ctx, followed)
                retryable = (
                    followed.stopped_for is None
                    and followed.lost is None
                    and followed.task is not None
                    and container_never_ran(followed.task, self.settings.container_name)
                )
                if not retryable:
                    return outcome
                self._log(ctx, [f"[dbt-scheduler] {outcome.reason}"])
            if not retryable or attempt == attempts:
                break
            if job.timeout is not None and ctx.clock.monotonic() - started + backoff >= job.timeout:
                return _with_reason(
                    outcome,
                    f"{outcome.reason} (no retry: it would not finish within the job's timeout of "
                    f"{format_duration(job.timeout)})",
                )
            self._log(ctx, [f"[dbt-scheduler] retrying in {format_duration(backoff)}"])
            if ctx.clock.wait(backoff, wake):
                return _cancelled(
                    outcome, "cancelled: the scheduler was stopping while waiting to retry the ECS task"
                )
            backoff *= 2
        if attempts > 1 and attempt > 1:
            return _with_reason(outcome, f"{outcome.reason} (after {attempt} attempts)")
        return outcome

    def reattach(self, ctx: RunContext, task_arn: str) -> RunOutcome:
        """Follow a task a previous daemon started for this run, to its end, and say
        how it went — without starting anything.

        The job's timeout counts from the task's `createdAt` when ECS gives it. A task
        that failed to start is reported as failed_to_start, not retried. A task ECS no
        longer knows (stopped tasks are describable for only about an hour) is reported
        as `failed`, saying its outcome is lost: we cannot tell whether dbt succeeded,
        and a failure notification is the honest way to make someone look. What the
        container left in S3 is still read, and its summary added to the reason.
        """
        self._new_log(ctx)
        self._log(ctx, [f"[dbt-scheduler] following ECS task {task_arn}, started by a previous scheduler"])
        wake = threading.Event()
        ctx.cancel.on_cancel(wake.set)
        started = ctx.clock.monotonic()
        try:
            task = self._describe(task_arn)
        except _NotFound:
            return self._outcome(ctx, _Followed(task_arn, None, lost=self._gone(task_arn)))
        except (ClientError, BotoCoreError):
            task = None  # _follow retries
        created = task.get("createdAt") if task else None
        if isinstance(created, datetime):
            # Wall time here: the previous daemon's monotonic clock is gone.
            elapsed = (ctx.clock.now() - created).total_seconds()
            started -= max(0.0, elapsed)
        return self._outcome(ctx, self._follow(ctx, task_arn, wake, started, seen=True))

    # --- starting ----------------------------------------------------------------

    def _overrides(self, ctx: RunContext) -> dict[str, Any]:
        job, request = ctx.request.job, ctx.request
        env = container_variables(job, request, artifacts_uri(self.settings, job.name, request.run_id))
        return {
            "containerOverrides": [
                {
                    "name": self.settings.container_name,
                    "environment": [{"name": name, "value": value} for name, value in env.items()],
                }
            ]
        }

    def _run_task(self, ctx: RunContext, overrides: dict[str, Any], attempt: int) -> _Started:
        s = self.settings
        kwargs: dict[str, Any] = {
            "cluster": s.cluster,
            "taskDefinition": s.task_family,  # a bare family: its latest ACTIVE revision
            "count": 1,
            "startedBy": started_by(ctx.request.job.name),
            "overrides": overrides,
            # Idempotency: a RunTask that botocore retries after a lost response returns
            # the task the first request started instead of starting a second one.
            "clientToken": f"{ctx.request.run_id}-{attempt}"[-64:],
            "launchType": s.launch_type,
        }
        if s.launch_type == "FARGATE":
            kwargs["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": list(s.subnets),
                    "securityGroups": list(s.security_groups),
                    "assignPublicIp": "ENABLED" if s.assign_public_ip else "DISABLED",
                }
            }
        try:
            answer = self.clients.ecs().run_task(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            code, message = _aws_error(exc)
            hint = ""
            if code == "ClusterNotFoundException":
                hint = f" (cluster {s.cluster!r}: run `scheduler.py bootstrap`, or fix aws.cluster)"
            elif "TaskDefinition not found" in message or "Unable to describe task definition" in message:
                hint = f" (task definition family {s.task_family!r}: run `scheduler.py bootstrap`)"
            return _Started(
                None, f"RunTask failed: {code}: {message}{hint}", code not in PERMANENT_START_ERRORS
            )
        tasks = answer.get("tasks") or []
        if tasks:
            return _Started(str(tasks[0]["taskArn"]))
        failures = answer.get("failures") or []
        if failures:
            words = []
            for failure in failures:
                code = str(failure.get("reason") or "unknown")
                meaning = _PLACEMENT_FAILURES.get(code)
                detail = failure.get("detail")
                words.append(
                    code + (f" ({meaning})" if meaning else "") + (f": {_one_line(detail)}" if detail else "")
                )
            return _Started(None, f"ECS could not place the task: {'; '.join(words)}")
        # moto answers a placement it cannot make this way; AWS would list failures.
        return _Started(
            None, "ECS started no task and gave no reason (no container instance with enough CPU/memory?)"
        )

    def _tell_external_id(self, ctx: RunContext, task_arn: str) -> None:
        # The task runs whatever happens to our bookkeeping: a failure to record its ARN
        # (history on a full disk) must not make us abandon it untracked.
        try:
            ctx.on_external_id(task_arn, self.log_url(task_arn))
        except Exception as exc:
            log.warning("%s: could not record ECS task %s: %s", ctx.request.job.name, task_arn, exc)

    # --- following ---------------------------------------------------------------

    def _describe(self, task_arn: str) -> Mapping[str, Any]:
        """The task's description; _NotFound when ECS does not know it (failures
        `MISSING` on AWS, an empty answer on moto)."""
        answer = self.clients.ecs().describe_tasks(cluster=self.settings.cluster, tasks=[task_arn])
        tasks = answer.get("tasks") or []
        for task in tasks:
            if task.get("taskArn") == task_arn:
                return task
        if tasks:
            return tasks[0]
        raise _NotFound(task_arn)

    def _gone(self, task_arn: str) -> str:
        return (
            f"task {task_id(task_arn)} is no longer known to ECS (stopped more than an hour ago?): "
            "its outcome is lost"
        )

    def _follow(
        self, ctx: RunContext, task_arn: str, wake: threading.Event, started: float, *, seen: bool
    ) -> _Followed:
        """Describe the task every poll_interval until it is STOPPED; stop it on cancel
        or timeout. `seen`: whether ECS has known the task before — right after
        RunTask, DescribeTasks may not know it yet (ECS is eventually consistent: AWS
        "Eventual consistency with the Amazon ECS API"), so that is retried."""
        job = ctx.request.job
        after_stop = threading.Event()  # never set: waits after StopTask are not cut short
        task: Mapping[str, Any] | None = None
        stopped_for: str | None = None
        stop_requested_at = 0.0
        errors = 0
        last_error = ""
        while True:
            try:
                task = self._describe(task_arn)
            except _NotFound:
                if seen:
                    return _Followed(task_arn, task, stopped_for, lost=self._gone(task_arn))
                errors += 1
                last_error = "DescribeTasks does not know the task yet"
            except (ClientError, BotoCoreError) as exc:
                errors += 1
                code, message = _aws_error(exc)
                last_error = f"{code}: {message}"
            else:
                seen = True
                errors = 0
                if task.get("lastStatus") == "STOPPED":
                    return _Followed(task_arn, task, stopped_for)
            if errors > self.describe_retries:
                return _Followed(
                    task_arn,
                    task,
                    stopped_for,
                    lost=f"DescribeTasks failed {errors} times in a row (last: {last_error}); "
                    "the task may still be running",
                )
            now = ctx.clock.monotonic()
            if stopped_for is None:
                if ctx.cancel.detached:
                    # The daemon is stopping: the task goes on and the next daemon
                    # re-attaches to it, rather than a restart killing an hour of dbt.
                    raise RunDetached(task_arn)
                if ctx.cancel.cancelled:
                    stopped_for = "cancel"
                elif job.timeout is not None and now - started >= job.timeout:
                    stopped_for = "timeout"
                if stopped_for is not None:
                    self._stop_task(ctx, task_arn, stopped_for)
                    stop_requested_at = now
                    continue  # ECS often reports STOPPED at once
            elif now - stop_requested_at >= self.stop_wait:
                status = (task or {}).get("lastStatus", "unknown")
                return _Followed(
                    task_arn,
                    task,
                    stopped_for,
                    lost=f"it was still {status} {format_duration(self.stop_wait)} after StopTask",
                )
            delay = self.settings.poll_interval
            if errors:
                delay = min(delay * 2 ** (errors - 1), max(delay, ERROR_BACKOFF_CAP))
            if stopped_for is None and job.timeout is not None:
                delay = min(delay, max(0.0, job.timeout - (now - started)))
            ctx.clock.wait(delay, after_stop if stopped_for else wake)

    def _stop_task(self, ctx: RunContext, task_arn: str, why: str) -> None:
        job = ctx.request.job
        if why == "timeout":
            reason = f"dbt-scheduler: {job.name} exceeded its timeout of {format_duration(job.timeout)}"
        else:
            reason = f"dbt-scheduler: run {ctx.request.run_id} of {job.name} cancelled (scheduler stopping)"
        # A failed StopTask (already stopping, a blip) is not fatal: we keep describing,
        # and give up after stop_wait.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.clients.ecs().stop_task(
                cluster=self.settings.cluster, task=task_arn, reason=reason[:STOP_REASON_MAX]
            )

    # --- the outcome -------------------------------------------------------------

    def _outcome(self, ctx: RunContext, followed: _Followed) -> RunOutcome:
        job = ctx.request.job
        arn = followed.task_arn
        copied = self._copy_log(ctx, arn)
        task = followed.task
        ran = task is None or not container_never_ran(task, self.settings.container_name)
        nodes = self._download_artifacts(ctx) if ran else None
        # The artifact first: it does not depend on reading the log.
        git_sha = (_read_git_sha(ctx.run_dir / "git_sha") if ran else None) or copied.git_sha
        exit_code: int | None = None
        if task is not None:
            raw = _container(task, self.settings.container_name).get("exitCode")
            exit_code = int(raw) if raw is not None else None
        if followed.stopped_for == "timeout":
            status = RunStatus.TIMED_OUT
            reason = f"exceeded its timeout of {format_duration(job.timeout)}: the ECS task was stopped"
        elif followed.stopped_for == "cancel":
            status = RunStatus.CANCELLED
            reason = "cancelled: the scheduler was stopping; the ECS task was stopped"
        elif followed.lost is not None or task is None:
            status = RunStatus.FAILED
            reason = followed.lost or self._gone(arn)
            if nodes:
                reason += f"; its run_results.json in S3 has {len(nodes)} results"
                summary = summarize(nodes)
                reason += f" ({summary})" if summary else " (none failed)"
        else:
            status, reason, exit_code = classify_task(
                task,
                self.settings.container_name,
                nodes=nodes,
                log_tail=copied.tail,
                job_name=job.name,
                error_marker=copied.error_marker,
                artifacts=artifacts_uri(self.settings, job.name, ctx.request.run_id),
            )
        if followed.stopped_for is not None and followed.lost is not None:
            reason = f"{reason}, but {followed.lost}"
        return RunOutcome(
            status=status,
            reason=ctx.masker(reason),
            exit_code=exit_code,
            log_path=ctx.run_dir / "run.log",
            nodes=nodes or (),
            git_sha=git_sha,
            external_id=arn,
            log_url=self.log_url(arn),
            image=ran_image(task, self.settings.container_name) if task is not None else None,
        )

    def _new_log(self, ctx: RunContext) -> Path:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = ctx.run_dir / "run.log"
        log_path.write_text("", encoding="utf-8")
        return log_path

    def _log(self, ctx: RunContext, lines: list[str]) -> list[str]:
        """Mask `lines`, add them to run.log and pass them to ctx.on_line."""
        lines = [ctx.masker(line) for line in lines]
        with open(ctx.run_dir / "run.log", "a", encoding="utf-8") as log:
            for line in lines:
                self._emit(ctx, log, line)
        return lines

    def _copy_log(self, ctx: RunContext, task_arn: str) -> _CopiedLog:
        """The task's whole CloudWatch stream, masked, into run.log and to ctx.on_line,
        line by line as the pages come (never the whole log in memory).

        Past `max_log_bytes` lines are no longer kept; a note says how many were left
        out, and the stream's last lines follow it. Every line is still scanned for
        run_commands.sh's markers. Read once, after the task stopped: CloudWatch may
        show the very last events a few seconds late, and the console link (log_url)
        stays the full record."""
        s = self.settings
        stream = stream_name(s.log_stream_prefix, s.container_name, task_arn)
        where = f"CloudWatch log {s.log_group} {stream}"
        copied = _CopiedLog()
        last: deque[tuple[str, bool]] = deque(maxlen=LOG_TAIL_LINES)  # (line, written to run.log)
        kept_bytes = dropped_bytes = dropped = seen = 0
        failure = ""
        with open(ctx.run_dir / "run.log", "a", encoding="utf-8") as log:
            try:
                for raw in stream_lines(self.clients.logs(), s.log_group, stream):
                    # Colour codes out first (a job may force --use-colors), as the local
                    # runner's OutputWatcher does, then the masker.
                    line = ctx.masker(strip_ansi(raw))
                    seen += 1
                    copied.see(line)
                    size = len(line.encode("utf-8")) + 1
                    written = not dropped and kept_bytes + size <= self.max_log_bytes
                    if written:
                        kept_bytes += size
                        self._emit(ctx, log, line)
                    else:
                        dropped += 1
                        dropped_bytes += size
                    last.append((line, written))
            except (ClientError, BotoCoreError) as exc:
                code, message = _aws_error(exc)
                failure = f"could not read {'the rest of ' if seen else ''}{where}: {code}: {message}"
            if dropped:
                shown = [line for line, written in last if not written]
                omitted = dropped - len(shown)
                omitted_bytes = dropped_bytes - sum(len(line.encode("utf-8")) + 1 for line in shown)
                self._emit(
                    ctx,
                    log,
                    f"[dbt-scheduler] run.log truncated: the log is larger than {_size(self.max_log_bytes)}; "
                    f"{omitted} lines ({_size(omitted_bytes)}) are left out here, the last {len(shown)} "
                    f"lines follow. The whole log: {self.log_url(task_arn)}",
                )
                for line in shown:
                    self._emit(ctx, log, line)
            if failure:
                self._emit(ctx, log, ctx.masker(f"[dbt-scheduler] {failure}"))
            elif not seen:
                self._emit(ctx, log, f"[dbt-scheduler] no log events in {where}")
        copied.tail = [line for line, _ in last]
        return copied

    def _emit(self, ctx: RunContext, log: IO[str], line: str) -> None:
        """One masked line into run.log and to ctx.on_line."""
        log.write(line + "\n")
        with contextlib.suppress(Exception):  # a broken console must not break the run
            ctx.on_line(line)

    def _download_artifacts(self, ctx: RunContext) -> tuple[NodeResult, ...] | None:
        """run_results.json, manifest.json and git_sha from the run's S3 folder into
        run_dir, then their node results; None when there is no run_results.json."""
        job = ctx.request.job
        uri = artifacts_uri(self.settings, job.name, ctx.request.run_id)
        if uri is None:
            return None
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        # Each command's own results by name (the job says how many there are): no
        # s3:ListBucket needed, and a file of a command that never ran is simply absent.
        per_command = [
            f"{kind}.{i}.json" for i in range(1, len(job.commands) + 1) for kind in ("run_results", "sources")
        ]
        for name in (*ARTIFACT_FILES, "sources.json", *per_command):
            target = ctx.run_dir / name
            try:
                body = self.clients.s3().get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
            except (ClientError, BotoCoreError):
                # Missing (dbt died before writing it, dbt-core #5625) or unreadable:
                # the run is judged without it. A stale copy must not stand in for it.
                target.unlink(missing_ok=True)
                continue
            target.write_bytes(body)
        return load_node_results(ctx.run_dir)


@dataclass
class _CopiedLog:
    """What copying the task's log found: its last lines and run_commands.sh's markers."""

    tail: list[str] = field(default_factory=list)
    git_sha: str | None = None
    error_marker: str | None = None  # the last ERROR line

    def see(self, line: str) -> None:
        marker = parse_marker(line)
        if marker is None:
            return
        kind, rest = marker
        if kind == "GIT_SHA":
            self.git_sha = rest
        elif kind == "ERROR":
            self.error_marker = rest


def _read_git_sha(path: Path) -> str | None:
    """The commit SHA run_commands.sh wrote to the `git_sha` artifact; None when the
    file is missing or holds anything but one SHA."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().lower()
    except OSError:
        return None
    return text if _GIT_SHA.fullmatch(text) else None


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB".replace(".0 MiB", " MiB")


def _cancelled(last: RunOutcome, reason: str) -> RunOutcome:
    """A cancel between attempts: what the last attempt left (its task, its log) is kept."""
    return RunOutcome(
        RunStatus.CANCELLED,
        reason=reason,
        external_id=last.external_id,
        log_url=last.log_url,
        log_path=last.log_path,
    )


def _with_reason(outcome: RunOutcome, reason: str) -> RunOutcome:
    return replace(outcome, reason=reason)
