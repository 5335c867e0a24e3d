"""jobs.yaml → a validated `Config`.

`load_config(path)` reads the file; `parse_config(data, …)` is pure and collects
*every* problem with its location (`jobs.yaml:14 jobs.nightly.schedule: …`) before
raising one `ConfigError`, so a user fixes the whole file in one pass.

Which keys exist, their defaults and the check each value goes through come from the
key table (lib/config/keys.py); this module applies it section by section and adds the
rules that span keys: `schedule` *or* `every` read in `timezone`, `project_dir` *or*
`git`, files that must exist, what an ECS job needs from `aws:`.

Merging rule for `defaults:`: a key the job does not write is taken from
`defaults`; a key the job writes wins, even when it writes `false` or `0`; a job
writing `null` falls back to the built-in default. `env` maps are merged key by
key (the job's keys win) so shared variables live in one place. `retention` is not
a `defaults` key: the top-level `retention:` is every job's default, and a job's
own `retention:` overrides it key by key.

A bad value is reported once however many jobs inherit it; a wrong type is a
located error like any other, and one bad key never hides another (a job with a
bad zone still gets its cron expression checked). `commands:` lines are checked
with the grammar docker/run_commands.sh runs them with (lib/command_grammar.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lib.config import keys as table
from lib.config.checks import (
    JOB_NAME,
    Field,
    Issues,
    Memo,
    check_unknown,
    did_you_mean,
    read_section,
    resolve_path,
)
from lib.config.reader import read_yaml
from lib.errors import ConfigError, ConfigIssue
from lib.models import (
    AwsSettings,
    DockerSettings,
    Heartbeat,
    Job,
    Notifications,
    Retention,
    Trigger,
    WebSettings,
)
from lib.secrets import has_url_credential, is_secret_name
from lib.triggers import parse_cron, parse_every
from lib.yaml_limits import read_text

DEFAULT_MAX_PARALLEL = table.TOP_LEVEL["max_parallel"].default
DEFAULT_SHUTDOWN_GRACE = 30.0


@dataclass(frozen=True)
class Config:
    """The whole validated file."""

    path: Path | None
    state_dir: Path
    jobs: dict[str, Job]
    max_parallel: int = DEFAULT_MAX_PARALLEL
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE  # seconds a running job gets on SIGTERM
    # The top-level `retention:`: what prune applies to runs of jobs no longer in the
    # file; each Job carries its own effective policy in `Job.retention`.
    retention: Retention = field(default_factory=Retention)
    aws: AwsSettings | None = None
    docker: DockerSettings = field(default_factory=DockerSettings)
    notifications: Notifications = field(default_factory=Notifications)
    heartbeat: Heartbeat | None = None  # the daemon's own alive ping
    web: WebSettings = field(default_factory=WebSettings)  # team access; no `listen`: no web server
    raw_jobs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def job(self, name: str) -> Job:
        """The job called `name`; an unknown name raises with a did-you-mean."""
        from lib.errors import UnknownJobError

        if name in self.jobs:
            return self.jobs[name]
        hint = did_you_mean(name, self.jobs)
        known = ", ".join(sorted(self.jobs)) or "none"
        where = self.path.name if self.path else "jobs.yaml"
        raise UnknownJobError(f"{where}: no job named '{name}'{hint} (jobs defined: {known})")


def load_config(path: Path | str) -> Config:
    """Read and validate a jobs.yaml; raises ConfigError naming the file and line."""
    path = Path(path)
    try:
        text = read_text(path)  # refuses files past the size budget and bytes that are not UTF-8
    except FileNotFoundError:
        raise ConfigError(
            [ConfigIssue("", "file not found: pass --config PATH or create it (see README)", file=str(path))]
        ) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue("", f"cannot read file: {exc}", file=str(path))]) from None
    # No GC pause or second reader here (issue 8 §3): with the collector on, the 10,000-job
    # bench file loads in ~1.1 s on a quiet box (bench/scale.py; ~0.7 s paused), inside
    # the 1.5 s target, at a size no user has.
    data, lines = read_yaml(text, str(path))
    return parse_config(
        data, base_dir=path.resolve().parent, source=str(path), lines=lines, environ=os.environ
    )


def parse_config(
    data: Any,
    base_dir: Path,
    source: str | None = None,
    lines: Mapping[str, int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate plain data (as read from YAML) into a Config, or raise ConfigError with every issue.

    `environ` is where `${NAME}` in notification settings are looked up (load_config
    passes the process environment; None: no variable is set)."""
    issues = Issues(source, lines or {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        issues.add("", "the top level must be a mapping with a `jobs:` key")
        raise ConfigError(issues.items)
    check_unknown(data, table.TOP_LEVEL.names, "", issues)
    # As in a job, a key written as null takes its built-in default.
    data = {key: value for key, value in data.items() if value is not None}
    memo = Memo(base_dir, environ)
    top = read_section(table.TOP_LEVEL, data, lambda name: Field(name, issues, memo), memo)
    retention = top["retention"] if top["retention"] is not None else Retention()

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        issues.add("defaults", f"must be a mapping of job keys, got {defaults!r}")
        defaults = {}
    check_unknown(defaults, table.JOB.names, "defaults", issues)
    for key, hint in table.NOT_IN_DEFAULTS.items():
        if key in defaults:
            issues.add(f"defaults.{key}", hint)
    defaults = {key: value for key, value in defaults.items() if key not in table.NOT_IN_DEFAULTS}

    aws = _aws(data["aws"], memo, issues) if data.get("aws") is not None else None
    docker = _docker(data["docker"], memo, issues) if data.get("docker") is not None else DockerSettings()

    raw_jobs = data.get("jobs")
    jobs: dict[str, Job] = {}
    if raw_jobs is None:
        issues.add("jobs", "missing: add a `jobs:` mapping of job name → settings (see README)")
        raw_jobs = {}
    elif not isinstance(raw_jobs, dict):
        issues.add("jobs", f"must be a mapping of job name → settings, got {raw_jobs!r}")
        raw_jobs = {}
    names: set[str] = set()
    for name, raw in raw_jobs.items():
        if name is None or isinstance(name, bool):  # `~:` or `yes:` would become "None", "True"
            issues.add(f"jobs.{name}", f"{name!r} is not a job name: quote it, or use a name such as nightly")
            continue
        if str(name) in names:  # `1:` and `'1':` are two keys, but one job folder and one lock
            issues.add(f"jobs.{name}", "two jobs have this name (once as a number, once as text): rename one")
            continue
        names.add(str(name))
        job = _parse_job(str(name), raw, defaults, retention, memo, issues)
        if job is not None:
            _check_runner_needs(job, aws, issues, raw)
            jobs[job.name] = job

    notifications = top["notifications"] or Notifications()
    _check_channel_references(data, notifications, defaults, issues)
    if issues.items:
        raise ConfigError(issues.items)
    notifications = replace(notifications, secret_values=tuple(sorted(memo.secret_values)))
    return Config(
        path=Path(source) if source else None,
        state_dir=top["state_dir"] or resolve_path(table.DEFAULT_STATE_DIR, base_dir),
        jobs=jobs,
        max_parallel=top["max_parallel"],
        shutdown_grace=top["shutdown_grace"],
        retention=retention,
        aws=aws,
        docker=docker,
        notifications=notifications,
        heartbeat=top["heartbeat"],
        web=top["web"] or WebSettings(),
        raw_jobs=raw_jobs,
    )


def _parse_job(
    name: str, raw: Any, defaults: dict, retention: Retention, memo: Memo, issues: Issues
) -> Job | None:
    where = f"jobs.{name}"
    before = len(issues.items)
    if not JOB_NAME.fullmatch(name):
        issues.add(where, "job names use letters, digits, '_', '-' and '.', up to 64 characters")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        issues.add(where, "must be a mapping of settings (schedule, project_dir, commands…)")
        return None
    check_unknown(raw, table.JOB.names, where, issues)
    merged = _merge(defaults, raw)

    def key_path(key: str) -> str:
        # Point at the job's own line when it wrote the key, else at defaults. A job's
        # retention is never inherited from defaults (NOT_IN_DEFAULTS).
        return f"{where}.{key}" if key in raw or key not in defaults else f"defaults.{key}"

    values = read_section(
        table.JOB, merged, lambda key: Field(key_path(key), issues, memo, inherited=retention), memo
    )
    tz = values["timezone"]
    trigger = _trigger(merged, values, tz, where, key_path, issues, memo)

    project_dir, git = values["project_dir"], values["git"]
    if project_dir is None and git is None:
        # A bad value of either is reported at its key already; this is for neither written.
        if merged.get("project_dir") is None and merged.get("git") is None:
            issues.add(where, "set `project_dir` (a local dbt project) or `git: {url: …}` to say what to run")
    elif project_dir is not None and git is not None:
        issues.add(where, "set either `project_dir` or `git`, not both")
    elif project_dir is not None and not memo.is_file(project_dir, "dbt_project.yml"):
        issues.add(
            key_path("project_dir"), f"{project_dir} has no dbt_project.yml: point it at a dbt project"
        )
    profiles_dir = values["profiles_dir"]
    if profiles_dir is not None and git is None and not memo.is_file(profiles_dir, "profiles.yml"):
        issues.add(key_path("profiles_dir"), f"{profiles_dir} has no profiles.yml")
    env_file = values["env_file"]
    if env_file is not None and not memo.is_file(env_file):
        issues.add(key_path("env_file"), f"{env_file} does not exist: create it or remove `env_file`")

    if len(issues.items) > before or trigger is None or tz is None:
        return None
    commands, allow_failure = values["commands"]
    return Job(
        name=name,
        trigger=trigger,
        timezone=tz,
        runner=values["runner"],
        project_dir=project_dir,
        git=git,
        profiles_dir=profiles_dir,
        target=values["target"],
        commands=commands,
        allow_failure=allow_failure,
        env_file=env_file,
        env=values["env"],
        timeout=values["timeout"],
        overlap=values["overlap"],
        catchup=values["catchup"],
        catchup_grace=values["catchup_grace"],
        enabled=values["enabled"],
        description=values["description"],
        image=values["image"],
        retention=values["retention"] if values["retention"] is not None else retention,
        notify=values["notify"] or (),
        deadline=values["deadline"],
        heartbeat=values["heartbeat"],
    )


def _merge(defaults: dict, raw: dict) -> dict:
    merged = dict(defaults)
    for key, value in raw.items():
        if value is None:
            merged.pop(key, None)  # explicit null: back to the built-in default
        elif key == "env" and isinstance(value, dict) and isinstance(defaults.get("env"), dict):
            merged["env"] = {**defaults["env"], **value}
        else:
            merged[key] = value
    return merged


def _trigger(
    merged: dict,
    values: dict[str, Any],
    tz: ZoneInfo | None,
    where: str,
    key_path: Callable[[str], str],
    issues: Issues,
    memo: Memo,
) -> Trigger | None:
    """The job's trigger from `schedule` (cron) or `every`, read in its zone."""
    schedule, every = merged.get("schedule"), merged.get("every")
    if schedule is None and every is None:
        issues.add(where, "set `schedule` (cron, e.g. '0 6 * * *') or `every` (e.g. '15 minutes')")
        return None
    if schedule is not None and every is not None:
        issues.add(where, "set either `schedule` or `every`, not both")
        return None
    key = "schedule" if schedule is not None else "every"
    text = values[key]
    if text is None:  # a wrong type, reported by the table's check
        return None
    valid_zone = tz is not None
    if tz is None:
        # The zone is reported already; the expression is still checked (in UTC: its
        # validity does not depend on the zone), so one error does not hide another.
        tz = ZoneInfo("UTC")
    cache_key = (key, text, tz)
    trigger = memo.triggers.get(cache_key)
    if trigger is None:
        # Triggers are immutable, so jobs with the same schedule and zone share one.
        try:
            trigger = parse_cron(text, tz) if key == "schedule" else parse_every(text, tz)
        except ValueError as exc:
            trigger = str(exc)
        memo.triggers[cache_key] = trigger
    if isinstance(trigger, str):
        issues.add(key_path(key), trigger)
        return None
    return trigger if valid_zone else None


def _written_channels(data: Mapping[str, Any]) -> set[str]:
    """The channel names jobs.yaml defines, valid or not (a bad one is reported at its place)."""
    section = data.get("notifications")
    channels = section.get("channels") if isinstance(section, dict) else None
    return {str(name) for name in channels} if isinstance(channels, dict) else set()


def _check_channel_references(
    data: Mapping[str, Any], notifications: Notifications, defaults: dict, issues: Issues
) -> None:
    """Every channel a rule's `to` or a job's `notify` names is defined in
    notifications.channels. Read from the file as written, so a rule or job that is
    invalid for another reason still has its references checked, at their own index;
    a channel written but invalid is reported once, where it is written."""
    known = _written_channels(data) | set(notifications.channels)

    def check(path: str, names: Any) -> None:
        for i, name in enumerate(
            [names] if isinstance(names, str) else names if isinstance(names, list) else []
        ):
            if isinstance(name, str) and name not in known:
                hint = did_you_mean(name, known) or ""
                defined = ", ".join(sorted(known)) or "none: add them under notifications.channels"
                issues.add(f"{path}[{i}]", f"no channel named {name!r}{hint} (channels: {defined})")

    section = data.get("notifications")
    rules = section.get("rules") if isinstance(section, dict) else None
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if isinstance(rule, dict):
            check(f"notifications.rules[{i}].to", rule.get("to"))
    jobs = data.get("jobs")
    for name, raw in jobs.items() if isinstance(jobs, dict) else ():
        if isinstance(raw, dict):  # the job's own notify (null: none), else the defaults'
            where = f"jobs.{name}.notify" if "notify" in raw else "defaults.notify"
            check(where, raw["notify"] if "notify" in raw else defaults.get("notify"))


def _check_runner_needs(job: Job, aws: AwsSettings | None, issues: Issues, raw: Any = None) -> None:
    """What a job's runner needs from the rest of the file. `raw` is the job as written: an
    env variable it does not write itself is reported where it is, under `defaults.env`."""
    if job.runner != "ecs":
        return
    where = f"jobs.{job.name}"
    if aws is None:
        issues.add(f"{where}.runner", "runner 'ecs' needs an `aws:` section (region, cluster, bucket…)")
    if job.git is None:
        issues.add(
            where,
            "runner 'ecs' fetches the code in the task: set `git: {url: …}` instead of `project_dir`",
        )
    if job.env_file is not None:
        issues.add(
            f"{where}.env_file",
            "an ECS task reads its env file from S3: put these variables in `aws.env_file` "
            "(uploaded by `scheduler.py bootstrap`), and secrets in `aws.secrets`",
        )
    if job.profiles_dir is not None:
        issues.add(f"{where}.profiles_dir", "an ECS task uses the profiles.yml in the project: remove it")
    # A job's env travels in RunTask's containerOverrides, which anyone with ecs:DescribeTasks
    # reads, and which the console and CloudTrail show: no secret belongs there.
    secrets = {name for name, _ in aws.secrets} if aws is not None else set()
    own = raw.get("env") if isinstance(raw, dict) else None
    own = own if isinstance(own, dict) else {}
    for name, value in job.env.items():
        path = f"{where}.env.{name}" if name in own else f"defaults.env.{name}"
        if name in secrets:
            # RegisterTaskDefinition refuses a secret "shared with any new or existing
            # environment variables set on the container"; which value a task would see when
            # RunTask's overrides bring one anyway is not documented.
            issues.add(
                path,
                "is also in aws.secrets: a variable is either a secret of the task or in its "
                "environment, not both — remove one",
            )
        elif is_secret_name(name) or has_url_credential(value):
            issues.add(
                path,
                "an ECS job's env is visible in the task's overrides (DescribeTasks, the console, "
                "CloudTrail): put secrets in `aws.secrets` (or `aws.env_file`), not in `env`",
            )


def _aws(value: Any, memo: Memo, issues: Issues) -> AwsSettings | None:
    if not isinstance(value, dict):
        issues.add("aws", "must be a mapping (region, cluster, bucket…)")
        return None
    before = len(issues.items)
    check_unknown(value, table.AWS.names, "aws", issues)
    written = {k: v for k, v in value.items() if v is not None}
    if not isinstance(written.get("region"), str) or not written.get("region"):
        issues.add("aws.region", "missing: the AWS region, e.g. eu-west-1")
    settings = read_section(table.AWS, written, lambda key: Field(f"aws.{key}", issues, memo), memo)
    if settings["launch_type"] == "FARGATE" and not written.get("subnets"):
        issues.add("aws.subnets", "FARGATE tasks need at least one subnet (awsvpc networking)")
    if written.get("kms_key") is not None and not written.get("secrets"):
        issues.add(
            "aws.kms_key",
            "nothing is decrypted with it: it is the key aws.secrets are encrypted with — "
            "set aws.secrets, or remove aws.kms_key",
        )
    if len(issues.items) > before:
        return None
    return AwsSettings(**{key: value for key, value in settings.items() if value is not None})


def _docker(value: Any, memo: Memo, issues: Issues) -> DockerSettings:
    if not isinstance(value, dict):
        issues.add("docker", "must be a mapping (engine, image, extra_args)")
        return DockerSettings()
    check_unknown(value, table.DOCKER.names, "docker", issues)
    # docker: keys have never taken null for "the default": `engine: ~` is refused.
    settings = {key: value.get(key, _ABSENT) for key in table.DOCKER.names}
    written = {
        key: (item if item is not _ABSENT else table.DOCKER[key].default) for key, item in settings.items()
    }
    values: dict[str, Any] = {}
    for key in table.DOCKER.keys:
        assert key.check is not None
        values[key.name] = key.check(written[key.name], Field(f"docker.{key.name}", issues, memo))
    if any(item is None for item in values.values()):
        return DockerSettings()
    return DockerSettings(**values)


_ABSENT = object()
