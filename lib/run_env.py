"""What a run is told: the environment docker/run_commands.sh reads.

Every runner (local process, Docker, ECS) passes the same variables, so a job
behaves the same wherever it runs. Precedence, lowest first: the scheduler's own
environment (local runner only), the job's `env_file`, the job's `env`, then the
variables below that the scheduler owns.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from lib.command_grammar import split_words
from lib.models import Job, RunRequest

# dbt subcommands that take --select; `dbt deps`, `debug`, `clean` and friends do not.
SELECTABLE = {"build", "run", "test", "seed", "snapshot", "compile", "ls", "list", "show", "source", "docs"}


class EnvFileError(ValueError):
    """The job's env_file is missing or unreadable."""


# The options that say which nodes a command runs. `--select` and its aliases take
# one or more values (dbt reads words up to the next option); `--selector` names a
# YAML selector, which dbt prefers over --select, so it is replaced too.
_SELECTION_OPTIONS = frozenset({"--select", "-s", "--models", "-m", "--model", "--selector"})
# dbt colours its output even into a pipe: run.log, reports and the journal want none.
NO_COLOUR = {"DBT_USE_COLORS": "false", "DBT_USE_COLORS_FILE": "false"}
# Every name `container_variables` may set besides the job's own env (tests/test_run_env.py
# checks it): an ECS container secret (aws.secrets) may not take one, since ECS refuses a
# name that is both a secret and an environment variable of the container.
SCHEDULER_VARIABLES = frozenset(
    {
        "DBT_COMMANDS",
        "DBT_SCHEDULER_JOB",
        "DBT_SCHEDULER_RUN_ID",
        "DBT_SEND_ANONYMOUS_USAGE_STATS",
        *NO_COLOUR,
        "DBT_TARGET",
        "DBT_GIT_URL",
        "DBT_GIT_REF",
        "DBT_GIT_SUBDIR",
        "DBT_PROJECT_DIR",
        "DBT_ALLOW_FAILURE",
        "DBT_ARTIFACTS_S3_URI",
        "DBT_ARTIFACTS_DIR",
    }
)


def _without_selection(words: list[str]) -> list[str]:
    out: list[str] = []
    skipping = False
    for word in words:
        name = word.split("=", 1)[0]
        if name in _SELECTION_OPTIONS:
            skipping = "=" not in word  # `--select=x` carries its value
            continue
        if skipping and not word.startswith("-"):
            continue
        skipping = False
        out.append(word)
    return out


def effective_commands(job: Job, select: str | None) -> tuple[str, ...]:
    """The job's commands as a run with `run-now --select SELECT` runs them.

    `--select SELECT` REPLACES the selection of every command that takes one (build,
    run, test, seed, snapshot, compile, ls, show, source freshness, docs generate):
    the command's own `--select/-s/--models/-m` with their values (`--select=x` too)
    and `--selector` are removed, then `--select SELECT` is added. `--exclude` stays.
    Commands that select nothing (`dbt deps`, `dbt run-operation`) are left alone,
    as is every command when SELECT is empty.
    """
    if not select:
        return job.commands
    out = []
    for command in job.commands:
        # The words as run_commands.sh splits them (validate checked the line with the same
        # grammar), not shlex's: shlex keeps a trailing `# comment` as words, and the
        # `--select` appended after it would be commented out when the script runs it.
        words = split_words(command)
        if len(words) > 1 and words[1] in SELECTABLE:
            kept = _without_selection(words)
            # A line whose words all stay (and that has no comment to drop) is kept as
            # written; any other is rebuilt, shlex's quoting being one the grammar reads.
            untouched = kept == words and shlex.join(words) == command.strip()
            base = command.strip() if untouched else shlex.join(kept)
            command = f"{base} --select {shlex.quote(select)}"
        out.append(command)
    return tuple(out)


def _parse_dotenv(path: Path) -> dict[str, str]:
    """A .env file as a dict (python-dotenv rules); raises OSError or UnicodeDecodeError."""
    values = dotenv_values(path, encoding="utf-8")
    # A bare `NAME` line (no `=`) reads as None: treat it as empty, like a shell would.
    return {name: value or "" for name, value in values.items()}


def read_dotenv(path: Path) -> dict[str, str]:
    """A .env file as a dict; {} when it cannot be read (the masker's view: bootstrap and
    validate report an unreadable file)."""
    try:
        return _parse_dotenv(path)
    except (OSError, UnicodeDecodeError):
        return {}


def read_env_file(job: Job) -> dict[str, str]:
    """The job's env_file as a dict (python-dotenv rules); {} when the job has none."""
    if job.env_file is None:
        return {}
    if not job.env_file.is_file():
        raise EnvFileError(
            f"jobs.{job.name}.env_file: {job.env_file} does not exist: create it or remove env_file"
        )
    try:
        return _parse_dotenv(job.env_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvFileError(f"jobs.{job.name}.env_file: cannot read {job.env_file}: {exc}") from None


def job_cache_variables(job: Job, cache_dir: Path) -> dict[str, str]:
    """Where run_commands.sh keeps a job's state between runs, inside `cache_dir`.

    partial_parse/ holds dbt's partial_parse.msgpack; checkout/ (git jobs) is the job's
    persistent checkout, so the project root, which dbt's parse state records, stays
    the same from run to run.
    """
    env = {"DBT_PARTIAL_PARSE_CACHE": str(cache_dir / "partial_parse")}
    if job.git is not None:
        env["DBT_GIT_CHECKOUT_DIR"] = str(cache_dir / "checkout")
    return env


def scheduler_variables(
    job: Job,
    request: RunRequest,
    run_dir: Path,
    work_dir: Path,
    cache_dir: Path | None = None,
) -> dict[str, str]:
    """The variables run_commands.sh reads (see its header), for this job and run."""
    env = {
        "DBT_COMMANDS": "\n".join(effective_commands(job, request.select)),
        "DBT_RUN_DIR": str(work_dir),
        "DBT_ARTIFACTS_DIR": str(run_dir),
        "DBT_SCHEDULER_JOB": job.name,
        "DBT_SCHEDULER_RUN_ID": request.run_id,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **NO_COLOUR,
    }
    env.update(_code_and_target(job, request, str(job.project_dir) if job.project_dir else None))
    env.update(_allowed_failures(job))
    if job.profiles_dir is not None:
        env["DBT_PROFILES_DIR"] = str(job.profiles_dir)
    if cache_dir is not None:
        env.update(job_cache_variables(job, cache_dir))
    return env


def job_environment(job: Job, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """base env < env_file < job.env: what the job's own settings contribute."""
    env = dict(base or {})
    env.update(read_env_file(job))
    env.update(job.env)
    return env


def container_variables(
    job: Job,
    request: RunRequest,
    artifacts_s3_uri: str | None = None,
    project_dir: str | None = None,
    artifacts_dir: str | None = None,
) -> dict[str, str]:
    """The variables a containerised run (docker, ECS) gets besides its env file.

    The job's `env` comes first so the scheduler-owned names below always win. Paths
    are the container's own: `project_dir` where a local project is mounted,
    `artifacts_dir` where the host's run folder is mounted.
    """
    env = dict(job.env)
    env.update(
        {
            "DBT_COMMANDS": "\n".join(effective_commands(job, request.select)),
            "DBT_SCHEDULER_JOB": job.name,
            "DBT_SCHEDULER_RUN_ID": request.run_id,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": env.get("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"),
            **NO_COLOUR,
        }
    )
    env.update(_code_and_target(job, request, project_dir))
    env.update(_allowed_failures(job))
    if artifacts_s3_uri:
        env["DBT_ARTIFACTS_S3_URI"] = artifacts_s3_uri
    if artifacts_dir:
        env["DBT_ARTIFACTS_DIR"] = artifacts_dir
    return env


def _code_and_target(job: Job, request: RunRequest, project_dir: str | None) -> dict[str, str]:
    """Where the run gets its code (git, else a project folder) and which dbt target it uses."""
    env: dict[str, str] = {}
    target = request.target or job.target
    if target:
        env["DBT_TARGET"] = target
    if job.git is not None:
        env["DBT_GIT_URL"] = job.git.url
        if job.git.ref:
            env["DBT_GIT_REF"] = job.git.ref
        if job.git.subdir:
            env["DBT_GIT_SUBDIR"] = job.git.subdir
    elif project_dir is not None:
        env["DBT_PROJECT_DIR"] = project_dir
    return env


def _allowed_failures(job: Job) -> dict[str, str]:
    """DBT_ALLOW_FAILURE: run_commands.sh numbers commands from 1, jobs.yaml indices from 0."""
    if not job.allow_failure:
        return {}
    return {"DBT_ALLOW_FAILURE": " ".join(str(i + 1) for i in sorted(job.allow_failure))}
