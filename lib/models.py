"""The plain values a run flows through: Job → RunRequest → RunOutcome → RunRecord.

All frozen dataclasses, so a job definition or a finished run can be shared
between threads and compared in tests without surprises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

# A generic test's unique_id ends in a 10-hex-digit hash that no one wants to read.
_GENERIC_TEST_HASH = re.compile(r"^[0-9a-f]{10}$")


def display_name(unique_id: str) -> str:
    """A node's short name as dbt prints it.

    `model.shop.orders` → `orders`; a generic test's id ends in a hash
    (`test.shop.not_null_orders_id.81cfe2fe64` → `not_null_orders_id`); a unit test
    is shown as dbt prints it (`unit_test.shop.vip.test_vip` → `vip::test_vip`); a
    versioned model keeps its version (`model.shop.dim.v2` → `dim.v2`); a source keeps
    its source name (`source.shop.raw.orders` → `raw.orders`)."""
    parts = unique_id.split(".")
    if len(parts) < 3:
        return unique_id
    kind, rest = parts[0], parts[2:]
    if kind == "test" and len(rest) > 1 and _GENERIC_TEST_HASH.match(rest[-1]):
        rest = rest[:-1]
    elif kind == "unit_test" and len(rest) > 1:
        return f"{'.'.join(rest[:-1])}::{rest[-1]}"
    return ".".join(rest)


class RunStatus(StrEnum):
    """How a run ended. A failed dbt run is a value, never an exception."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # dbt (or a command) exited non-zero
    FAILED_TO_START = "failed_to_start"  # the run never got to dbt: bad env, no bash, clone failed…
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"  # the daemon was stopped while the run was going
    SKIPPED = "skipped"  # not run at all: overlap, missed fire time
    ERROR = "error"  # the scheduler itself crashed during the run (a bug: please report)

    @property
    def ok(self) -> bool:
        return self is RunStatus.SUCCEEDED


# Outcomes that count as a failure for alerts: in a row they make a streak, and the
# first run after them that succeeds is `recovered`.
FAILURE_OUTCOMES = frozenset({"failed", "failed_to_start", "timed_out", "error"})


class TriggerKind(StrEnum):
    """What started a run; stored in history so a reader knows why it happened."""

    SCHEDULE = "schedule"
    CATCHUP = "catch-up"
    MANUAL = "manual"


class Trigger(Protocol):
    """A job's cadence: the one seam between schedules and the daemon."""

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (tz-aware in, UTC out)."""
        ...

    def describe(self) -> str:
        """The schedule as the user wrote it, for status tables."""
        ...


@dataclass(frozen=True)
class GitSource:
    url: str
    ref: str | None = None  # branch, tag or commit SHA; None = the remote's default branch
    subdir: str | None = None  # the dbt project's folder inside the repository


@dataclass(frozen=True)
class AwsSettings:
    """The `aws:` section of jobs.yaml: where ECS jobs run and what bootstrap provisions."""

    region: str
    endpoint_url: str | None = None  # a moto/LocalStack endpoint; None = real AWS
    cluster: str = "dbt"
    launch_type: str = "EC2"  # "EC2" | "FARGATE"
    subnets: tuple[str, ...] = ()  # FARGATE (awsvpc) only
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = False
    bucket: str | None = None  # holds the env file and the run artifacts
    env_file: Path | None = None  # the local .env that bootstrap uploads
    env_file_key: str = "dbt-scheduler/dbt.env"
    # (variable name, SSM parameter or Secrets Manager ARN), sorted by name: the container's
    # `secrets`, which the ECS agent reads with the execution role before the task starts.
    secrets: tuple[tuple[str, str], ...] = ()
    kms_key: str | None = None  # the customer managed KMS key those secrets are encrypted with
    artifacts_prefix: str = "dbt-scheduler/artifacts"
    execution_role: str = "dbt-scheduler-execution"
    task_role: str = "dbt-scheduler-task"
    ecr_repository: str = "dbt-scheduler"
    image: str | None = None  # default: the ECR repository's :latest
    log_group: str = "/ecs/dbt-scheduler"
    log_retention_days: int = 30
    log_stream_prefix: str = "dbt"
    task_family: str = "dbt-scheduler"
    container_name: str = "dbt"
    cpu: int = 1024
    memory: int = 2048
    engine: str = "docker"  # what bootstrap builds and pushes the image with: docker | podman
    project_dir: Path | None = None  # the dbt project bootstrap writes a profiles.yml into
    poll_interval: float = 10.0  # seconds between describe_tasks calls
    start_retries: int = 2  # automatic retries of a task that failed to start
    start_retry_backoff: float = 30.0  # seconds before the first retry; doubles each time


@dataclass(frozen=True)
class DockerSettings:
    """The `docker:` section: how the docker runner starts the job image locally."""

    engine: str = "docker"  # docker | podman
    image: str = "dbt-scheduler:latest"
    extra_args: tuple[str, ...] = ()  # e.g. ("--network", "host") or podman's --runtime runc


DEFAULT_KEEP_DAYS = 90
DEFAULT_KEEP_FAILED_WORK = 5


@dataclass(frozen=True)
class Retention:
    """How long a job's runs are kept (`retention:` in jobs.yaml; see lib/retention.py).

    `keep_days`: run folders and history rows older than this many days are deleted;
    None keeps them forever. `keep_failed_work`: how many of the newest failed runs
    keep their `work/` folder (clone, target/, compiled SQL); None keeps every one
    (until keep_days). The newest history row of a job is always kept.
    """

    keep_days: int | None = DEFAULT_KEEP_DAYS
    keep_failed_work: int | None = DEFAULT_KEEP_FAILED_WORK


@dataclass(frozen=True)
class Job:
    """One entry of jobs.yaml after defaults are merged and every value is checked."""

    name: str
    trigger: Trigger
    timezone: ZoneInfo
    runner: str = "local"
    project_dir: Path | None = None
    git: GitSource | None = None
    profiles_dir: Path | None = None
    target: str | None = None
    commands: tuple[str, ...] = ("dbt build",)  # each as run_commands.sh runs it (trimmed)
    # 0-based indices into `commands` of those marked `allow_failure: true`: when one
    # fails, the next command still runs.
    allow_failure: frozenset[int] = frozenset()
    env_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds
    overlap: str = "skip"  # "skip" | "allow"
    catchup: str = "none"  # "none" | "latest"
    catchup_grace: float = 3600.0  # seconds: how late a missed fire time may still be run
    enabled: bool = True
    description: str | None = None
    image: str | None = None  # docker runner: overrides docker.image
    # The top-level `retention:`, overridden key by key by the job's own.
    retention: Retention = field(default_factory=Retention)
    notify: tuple[str, ...] = ()  # channel names: a rule for this job with the default events
    deadline: time | None = None  # local wall time in `timezone` by which a run must have succeeded
    heartbeat: str | None = None  # healthchecks.io-style ping URL: /start, success, /fail


@dataclass(frozen=True)
class Freshness:
    """What `dbt source freshness` measured for one source (sources.json), as dbt wrote it."""

    max_loaded_at: str | None = None  # ISO 8601, the newest loaded_at_field value
    age_s: float | None = None  # seconds between max_loaded_at and the check
    warn_after: str | None = None  # "1 day", "12 hours"; None when not configured
    error_after: str | None = None


@dataclass(frozen=True)
class NodeResult:
    """One dbt node's result, as read from run_results.json (or sources.json)."""

    unique_id: str
    status: str  # success, pass, fail, error, warn, skipped (dbt's own words)
    message: str | None = None
    failures: int | None = None
    execution_time: float = 0.0
    resource_type: str = ""  # model, test, seed, snapshot…
    # For a skipped node: the failed/errored nodes upstream that caused the skip.
    skipped_because: tuple[str, ...] = ()
    # Which of the job's commands ran it (1-based, as run_commands.sh numbers them);
    # None when the artifacts do not say (a lone run_results.json).
    command: int | None = None
    # A source checked by `dbt source freshness`: its measurement and thresholds.
    freshness: Freshness | None = None
    # Where the run keeps this node's compiled SQL (warned/failed nodes), if it does.
    compiled_path: str | None = None

    @property
    def name(self) -> str:
        return display_name(self.unique_id)


@dataclass(frozen=True)
class RunRequest:
    """A decision to run a job once, with who or what asked for it."""

    job: Job
    run_id: str
    trigger: TriggerKind
    scheduled_for: datetime | None = None  # None for manual runs
    triggered_by: str | None = None  # the user name for manual runs
    target: str | None = None  # overrides job.target (run-now --target)
    select: str | None = None  # replaces each dbt command's selection (run-now --select)


@dataclass(frozen=True)
class RunOutcome:
    """What a runner reports back. Every field but status may be unknown."""

    status: RunStatus
    reason: str = ""
    exit_code: int | None = None
    log_path: Path | None = None
    nodes: tuple[NodeResult, ...] = ()
    git_sha: str | None = None
    external_id: str | None = None  # e.g. the ECS task ARN
    log_url: str | None = None  # e.g. the CloudWatch console link
    image: str | None = None  # the image the run ran, by digest where known (ECS)


@dataclass(frozen=True)
class RunRecord:
    """A finished (or skipped) run: what history stores and reports render."""

    job: str
    run_id: str
    trigger: TriggerKind
    outcome: RunOutcome
    started_at: datetime
    finished_at: datetime
    scheduled_for: datetime | None = None
    triggered_by: str | None = None
    run_dir: Path | None = None
    # run-now --target / --select, when given (None: the job's own).
    target_override: str | None = None
    select_override: str | None = None
    # The dbt commands the run was given, overrides applied; node.command indexes them.
    commands: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return round((self.finished_at - self.started_at).total_seconds(), 3)


def count_statuses(nodes: tuple[NodeResult, ...] | list[NodeResult]) -> dict[str, int]:
    """Counts per dbt status plus `total`, with every status key present."""
    counts = {s: 0 for s in ("success", "pass", "fail", "error", "warn", "skipped")}
    for node in nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
    counts["total"] = len(nodes)
    return counts


# Alerts (issue 9): what `notifications:` in jobs.yaml says, checked.

# Events a `notify:` shortcut and a rule without `on:` send.
DEFAULT_ALERT_EVENTS = ("failed", "timed_out", "failed_to_start", "recovered", "late")


@dataclass(frozen=True)
class Channel:
    """One entry of `notifications.channels`: a name, a type and that type's settings
    (checked; `${ENV}` references already replaced by their values)."""

    name: str
    type: str  # slack | teams | pagerduty | email | sns | webhook
    settings: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class QuietHoursSetting:
    start: time
    end: time
    timezone: ZoneInfo


@dataclass(frozen=True)
class AlertRule:
    """Send `on` events of jobs matching `jobs` (name globs) to the channels `to`."""

    to: tuple[str, ...]
    jobs: tuple[str, ...] = ("*",)
    on: tuple[str, ...] = DEFAULT_ALERT_EVENTS
    after: int = 1  # alert failures only from the Nth in a row
    repeat_every: float = 86400.0  # seconds before an identical failure is sent again
    quiet_hours: QuietHoursSetting | None = None


@dataclass(frozen=True)
class Heartbeat:
    """The daemon's own "I am alive" ping (top-level `heartbeat:`)."""

    url: str
    every: float = 300.0  # seconds


@dataclass(frozen=True)
class Notifications:
    channels: Mapping[str, Channel] = field(default_factory=dict)
    rules: tuple[AlertRule, ...] = ()
    # Values that came from `${ENV}` references: masked in everything we print or store.
    secret_values: tuple[str, ...] = ()


# Team access (issue 11): the `web:` section.


@dataclass(frozen=True)
class ProxyHeaders:
    """The request headers an SSO proxy (oauth2-proxy and the like) names the user in;
    read only from a peer in `web.trusted_proxies`."""

    user: str = "X-Forwarded-User"
    email: str = "X-Forwarded-Email"
    groups: str = "X-Forwarded-Groups"  # comma-separated, as oauth2-proxy sends them


@dataclass(frozen=True)
class WebSettings:
    """The `web:` section: the web UI and API, who may use them, and metrics.

    `listen` None: no web server (the default). `trusted_proxies` are the networks whose
    proxy headers are believed; `group_roles` maps a proxy group to a role name (viewer,
    operator, admin; lib/web/roles.py)."""

    listen: str | None = None  # "host:port", e.g. "127.0.0.1:8080" or "[::1]:8080"
    base_url: str | None = None  # how people reach it; alerts link to <base_url>/runs/<run id>
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    proxy_headers: ProxyHeaders = field(default_factory=ProxyHeaders)
    group_roles: Mapping[str, str] = field(default_factory=dict)
    read_only: bool = False  # refuse every mutation (run now, cancel, pause, tokens)
    session_hours: int = 12  # lifetime of a browser session cookie
    audit_days: int = 365  # the audit log's entries older than this go with retention
    metrics_textfile: Path | None = None  # node_exporter textfile collector file (*.prom)

    @property
    def address(self) -> tuple[str, int] | None:
        """`listen` as (host, port), the brackets of an IPv6 host removed."""
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)
