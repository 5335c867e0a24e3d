"""`scheduler.py bootstrap [--dry-run] [--only STEP[,STEP]] [--force]`.

Runs the steps in order — env-file, profiles, image, iam, log-group,
task-definition, cluster — each idempotent, each ending as a `StepResult`. A step
that fails does not stop the others; a step that needs a failed one is `skipped`
and says why (task-definition needs env-file, iam, log-group, and image unless
aws.image is set). `--only` runs just the named steps, without their dependencies.

Under --dry-run only read calls reach AWS (a botocore hook refuses anything but
Describe/Get/List/Head, so a bug cannot write), no engine runs and no file is
written; the output is the plan.

Output on `console` (every line passes through a masker holding the env file's
values, so a value cannot be printed even by mistake):

    progress lines while slow steps run (`image: docker build …`)
    a table titled `bootstrap` with columns step | status | detail
      (`bootstrap plan (dry run: nothing written)` with step | action | detail)
    `warning: <step>: …` for each warning
    `<step>: <reason>` for each failed step, e.g.
      `iam: AccessDenied: … [CreateRole] (bootstrap needs iam:CreateRole: see `--ops-policy bootstrap`)`
    a summary: `bootstrap: 2 created, 1 updated, 4 unchanged`
      (`plan: 3 to change, 4 unchanged (dry run: nothing was written)`)

Exit code: 0 all steps ok, 1 a step failed, 2 the configuration cannot drive
bootstrap (no `aws:` section, no aws.bucket, unknown --only step…; nothing ran).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.aws.arns import SECRETS_MANAGER
from lib.aws.clients import AwsClients
from lib.bootstrap.base import (
    BootstrapConfigError,
    EngineRunner,
    Say,
    StepContext,
    StepResult,
    StepStatus,
    run_step,
)
from lib.bootstrap.cluster import check_cluster
from lib.bootstrap.env_file import check_env_file, ensure_env_file
from lib.bootstrap.iam import ensure_iam
from lib.bootstrap.image import ensure_image
from lib.bootstrap.log_group import RETENTION_DAYS, ensure_log_group
from lib.bootstrap.policies import secret_arns
from lib.bootstrap.profiles import ensure_profiles
from lib.bootstrap.task_definition import ensure_task_definition
from lib.config import Config
from lib.errors import ConfigIssue
from lib.models import AwsSettings
from lib.secrets import SecretMasker


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[StepContext], StepResult]
    needs_bucket: bool = False


STEPS: tuple[Step, ...] = (
    Step("env-file", ensure_env_file, needs_bucket=True),
    Step("profiles", ensure_profiles),
    Step("image", ensure_image),
    Step("iam", ensure_iam, needs_bucket=True),
    Step("log-group", ensure_log_group),
    Step("task-definition", ensure_task_definition, needs_bucket=True),
    Step("cluster", check_cluster),
)
STEP_NAMES = tuple(step.name for step in STEPS)
# Services bootstrap talks to: the dry-run guard hooks each of them.
_SERVICES = ("s3", "iam", "ecr", "logs", "ecs", "sts", "secretsmanager")
_READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Head")


def dependencies(name: str, settings: AwsSettings) -> tuple[str, ...]:
    """Steps whose failure makes `name` pointless in the same run."""
    if name == "task-definition":
        needs = ("env-file", "iam", "log-group")
        return needs if settings.image else (*needs, "image")
    return ()


def select_steps(only: str | None) -> tuple[str, ...]:
    """The step names to run, in order; `only` is one name or a comma-separated list."""
    if not only:
        return STEP_NAMES
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    issues = []
    for word in wanted:
        if word not in STEP_NAMES:
            close = difflib.get_close_matches(word, STEP_NAMES, n=1)
            hint = f": did you mean '{close[0]}'?" if close else ""
            issues.append(
                ConfigIssue("--only", f"unknown step '{word}'{hint} (steps: {', '.join(STEP_NAMES)})")
            )
    if issues or not wanted:
        raise BootstrapConfigError(issues or [ConfigIssue("--only", f"name a step: {', '.join(STEP_NAMES)}")])
    return tuple(name for name in STEP_NAMES if name in wanted)


def preflight(
    settings: AwsSettings | None, selected: tuple[str, ...], source: str | None = None
) -> AwsSettings:
    """Checks the settings the selected steps need; raises BootstrapConfigError with every issue."""
    if settings is None:
        raise BootstrapConfigError(
            [
                ConfigIssue(
                    "aws",
                    "missing: bootstrap provisions what the `aws:` section describes "
                    "(region, bucket, env_file…)",
                    file=source,
                )
            ]
        )
    issues = []
    if not settings.bucket and any(s.needs_bucket for s in STEPS if s.name in selected):
        issues.append(
            ConfigIssue(
                "aws.bucket", "missing: the S3 bucket that holds the env file and run artifacts", file=source
            )
        )
    if "env-file" in selected and settings.env_file is None:
        issues.append(
            ConfigIssue("aws.env_file", "missing: the local .env that bootstrap uploads", file=source)
        )
    if not settings.env_file_key.endswith(".env") and {"env-file", "task-definition"} & set(selected):
        issues.append(
            ConfigIssue(
                "aws.env_file_key",
                f"{settings.env_file_key!r} must end in .env: ECS only reads env files with that extension",
                file=source,
            )
        )
    if "log-group" in selected and settings.log_retention_days not in (0, *RETENTION_DAYS):
        allowed = ", ".join(str(d) for d in RETENTION_DAYS)
        issues.append(
            ConfigIssue(
                "aws.log_retention_days",
                f"{settings.log_retention_days} is not a CloudWatch retention: "
                f"use 0 (never expire) or one of {allowed}",
                file=source,
            )
        )
    if issues:
        raise BootstrapConfigError(issues)
    return settings


@contextmanager
def read_only(clients: AwsClients, settings: AwsSettings | None = None) -> Iterator[None]:
    """While active, any AWS call other than Describe*/Get*/List*/Head* raises (also from
    the Secrets Manager clients of the other Regions `settings.secrets` name)."""

    def refuse(model: Any, **_: Any) -> None:
        if not model.name.startswith(_READ_ONLY_PREFIXES):
            raise PermissionError(f"dry run: refused to call {model.name} (it writes)")

    # The iam step looks secrets up in their own Region: those clients are guarded too.
    refs = secret_arns(settings) if settings is not None else []
    regions = sorted({ref.region for ref in refs if ref.service == SECRETS_MANAGER})
    hooked = [clients.client(service) for service in _SERVICES]
    hooked += [clients.client("secretsmanager", region) for region in regions]
    for client in hooked:
        client.meta.events.register("before-call", refuse, unique_id="bootstrap-dry-run")
    try:
        yield
    finally:
        for client in hooked:
            client.meta.events.unregister("before-call", unique_id="bootstrap-dry-run")


def run_steps(
    settings: AwsSettings | None,
    clients: AwsClients,
    *,
    dry_run: bool = False,
    only: str | None = None,
    force: bool = False,
    engine_runner: EngineRunner | None = None,
    repo_root: Path | None = None,
    say: Say | None = None,
) -> list[StepResult]:
    """Runs (or plans) the selected steps in order and returns one result per step.

    Raises BootstrapConfigError before anything runs when the settings cannot drive
    the selected steps.
    """
    selected = select_steps(only)
    settings = preflight(settings, selected)
    ctx = StepContext(settings, clients, dry_run=dry_run, force=force, engine_runner=engine_runner)
    if repo_root is not None:
        ctx.repo_root = repo_root
    if say is not None:
        ctx.say = say
    results: list[StepResult] = []
    failed: set[str] = set()
    with read_only(clients, settings) if dry_run else _nothing():
        for step in STEPS:
            if step.name not in selected:
                continue
            blocked = [d for d in dependencies(step.name, settings) if d in failed]
            if blocked:
                result = StepResult(step.name, StepStatus.SKIPPED, f"{', '.join(blocked)} failed")
            else:
                result = run_step(step.name, step.run, ctx)
            if result.failed:
                failed.add(step.name)
            results.append(result)
    return results


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def exit_code(results: list[StepResult]) -> int:
    """0 when every step is ok, 1 when one failed."""
    return 1 if any(r.failed for r in results) else 0


_STYLES = {
    StepStatus.CREATED: "green",
    StepStatus.UPDATED: "cyan",
    StepStatus.UNCHANGED: "dim",
    StepStatus.SKIPPED: "yellow",
    StepStatus.FAILED: "bold red",
    StepStatus.PLANNED: "cyan",
}


def render_results(
    results: list[StepResult], console: Any, *, dry_run: bool, mask: Callable[[str], str]
) -> None:
    """Prints the results table, warnings, one line per failure and a summary (see module doc)."""
    from rich.table import Table
    from rich.text import Text

    if dry_run:
        table = Table(title="bootstrap plan (dry run: nothing written)", title_justify="left")
        for column in ("step", "action", "detail"):
            table.add_column(column, overflow="fold")
        for r in results:
            action = r.action or {
                StepStatus.UNCHANGED: "nothing to do",
                StepStatus.SKIPPED: "skip",
                StepStatus.FAILED: "FAILED",
            }.get(r.status, r.status.value)
            style = _STYLES[r.status]
            table.add_row(Text(r.name), Text(mask(action), style=style), Text(mask(r.detail)))
    else:
        table = Table(title="bootstrap", title_justify="left")
        for column in ("step", "status", "detail"):
            table.add_column(column, overflow="fold")
        for r in results:
            table.add_row(Text(r.name), Text(r.status.value, style=_STYLES[r.status]), Text(mask(r.detail)))
    console.print(table)
    for r in results:
        for warning in r.warnings:
            console.print(Text(mask(f"warning: {r.name}: {warning}"), style="yellow"), soft_wrap=True)
    for r in results:
        if r.failed:
            # soft_wrap: one line per failure, whatever the width, so it can be grepped.
            console.print(Text(mask(f"{r.name}: {r.detail}"), style="red"), soft_wrap=True)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    if dry_run:
        changing = counts.pop("planned", 0)
        rest = ", ".join(f"{n} {status}" for status, n in counts.items())
        console.print(
            f"plan: {changing} to change{', ' + rest if rest else ''} (dry run: nothing was written)"
        )
    else:
        console.print("bootstrap: " + ", ".join(f"{n} {status}" for status, n in counts.items()))


def env_file_masker(settings: AwsSettings | None) -> SecretMasker:
    """Masks every value of aws.env_file (not just DBT_ENV_SECRET_*): none belongs in bootstrap output."""
    if settings is None or settings.env_file is None:
        return SecretMasker()
    return SecretMasker(check_env_file(settings.env_file).values)


def run_bootstrap(
    config: Config,
    clients: AwsClients,
    *,
    dry_run: bool,
    only: str | None,
    force: bool,
    console: Any,
    engine_runner: EngineRunner | None = None,
    repo_root: Path | None = None,
) -> int:
    """The `bootstrap` subcommand: runs the steps, prints the table, returns the exit code.

    0 every step ok (created/updated/unchanged/skipped/planned), 1 a step failed,
    2 a configuration error (printed as `jobs.yaml aws.bucket: missing: …`; nothing ran).
    """
    from rich.text import Text

    masker = env_file_masker(config.aws)

    def say(text: str) -> None:
        console.print(Text(masker(text), style="dim"))

    source = str(config.path) if config.path else None
    try:
        if config.aws is None:
            preflight(None, STEP_NAMES, source)
        results = run_steps(
            config.aws,
            clients,
            dry_run=dry_run,
            only=only,
            force=force,
            engine_runner=engine_runner,
            repo_root=repo_root,
            say=say,
        )
    except BootstrapConfigError as exc:
        for issue in exc.issues:
            if issue.file is None and source is not None and issue.path.startswith("aws"):
                issue = ConfigIssue(issue.path, issue.message, issue.line, source)
            console.print(Text(masker(str(issue)), style="red"), soft_wrap=True)
        return 2
    render_results(results, console, dry_run=dry_run, mask=masker)
    return exit_code(results)
