"""Step `profiles`: give the dbt project a profiles.yml that reads every credential
from the environment, so the same file works locally and in the ECS task.

docker/run_commands.sh points DBT_PROFILES_DIR at the project when it holds a
profiles.yml, and the task gets its variables from the env file: nothing secret is
ever written into the project.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from lib.bootstrap.base import Plan, StepContext, StepResult, StepStatus

NAME = "profiles"
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

_TEMPLATE = """\
# Written by `scheduler.py bootstrap`: every credential comes from the environment
# (the local .env, or the S3 env file an ECS task reads), never from this file.
# dbt masks DBT_ENV_SECRET_* values in its logs, and so does the scheduler.
__PROFILE__:
  target: dev
  outputs:
    dev:
      type: duckdb
      # Relative to the directory dbt runs in: each run gets its own work area.
      path: __DATABASE__.duckdb
      threads: 4
    prod:
      # dbt renders only the selected target: these variables are needed only
      # with --target prod (and the image needs dbt-snowflake).
      type: snowflake
      account: "{{ env_var('SNOWFLAKE_ACCOUNT') }}"
      user: "{{ env_var('SNOWFLAKE_USER') }}"
      password: "{{ env_var('DBT_ENV_SECRET_SNOWFLAKE_PASSWORD') }}"
      role: "{{ env_var('SNOWFLAKE_ROLE') }}"
      warehouse: "{{ env_var('SNOWFLAKE_WAREHOUSE') }}"
      database: "{{ env_var('SNOWFLAKE_DATABASE') }}"
      schema: "{{ env_var('SNOWFLAKE_SCHEMA') }}"
      threads: 4
"""


def render_profiles(profile: str) -> str:
    """The profiles.yml text for a project whose dbt_project.yml says `profile: <profile>`."""
    key = profile if _PLAIN_NAME.match(profile) else json.dumps(profile)
    database = re.sub(r"[^A-Za-z0-9_]+", "_", profile) or "dbt"
    return _TEMPLATE.replace("__PROFILE__", key).replace("__DATABASE__", database)


def read_profile_name(project_dir: Path) -> str:
    """The `profile:` of the project's dbt_project.yml; ValueError says what to fix."""
    project_file = project_dir / "dbt_project.yml"
    try:
        data = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{project_file} not found: point aws.project_dir at a dbt project") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{project_file}: cannot read it: {exc}") from None
    profile = data.get("profile") if isinstance(data, dict) else None
    if not isinstance(profile, str) or not profile:
        raise ValueError(f"{project_file} has no `profile:`: add e.g. `profile: {_guess(data)}`")
    return profile


def ensure_profiles(ctx: StepContext) -> StepResult:
    """Writes `<aws.project_dir>/profiles.yml` when the project has none.

    Skipped when aws.project_dir is unset. An existing profiles.yml is left alone
    (`unchanged`, the detail says to use --force); with --force it is rewritten when
    its text differs (`updated`), the old one kept as profiles.yml.bak.
    """
    project_dir = ctx.settings.project_dir
    plan = Plan(NAME, ctx.dry_run)
    if project_dir is None:
        return StepResult(NAME, StepStatus.SKIPPED, "aws.project_dir is not set")
    try:
        profile = read_profile_name(project_dir)
    except ValueError as exc:
        return plan.fail(str(exc))
    target = project_dir / "profiles.yml"
    text = render_profiles(profile)
    if target.exists():
        if not ctx.force:
            return plan.result(f"{target} exists: kept (use --force to overwrite it)")
        if target.read_text(encoding="utf-8", errors="replace") == text:
            return plan.result(f"{target}: profile {profile}")
        plan.change(f"overwrite profiles.yml (old one kept as {target.name}.bak)")
        if not ctx.dry_run:
            target.replace(target.with_name(target.name + ".bak"))
    else:
        plan.create("write profiles.yml")
    if not ctx.dry_run:
        target.write_text(text, encoding="utf-8")
    return plan.result(f"{target}: profile {profile}, targets dev (duckdb) and prod (snowflake)")


def _guess(data: object) -> str:
    name = data.get("name") if isinstance(data, dict) else None
    return str(name) if isinstance(name, str) and name else "my_project"
