"""Helpers for tests that run docker/run_commands.sh on the example project.

End-to-end tests use real bash, real git over file:// and real dbt (DuckDB);
`make_fake_dbt` gives a millisecond stand-in for tests about the script's own
mechanics (fetching, parsing DBT_COMMANDS, exit codes), so only a few tests pay
for a real `dbt build` (several seconds each on two cores).

The failing scenario: `break_upstream(project_dir)` appends an order whose id is
already taken to seeds/raw_orders.csv. `dbt build` then fails the error-severity
test `unique_stg_orders_order_id` on the staging model, skips both marts
(order_totals, customer_orders) and their tests, and exits 1
(PASS=16 WARN=1 ERROR=1 SKIP=7).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO_ROOT / "example"
RUN_COMMANDS = REPO_ROOT / "docker" / "run_commands.sh"
# The interpreter running the tests is the venv's, and dbt is installed beside it.
DBT_BIN_DIR = Path(sys.executable).parent

MARKER_PREFIX = "[run_commands] "
# What dbt writes into a project folder; never copied into a test's repository.
_EPHEMERAL = ("target", "logs", "dbt_packages", "package-lock.yml", "*.duckdb", "*.duckdb.wal")
# Variables the developer's shell may have set that would change what the script does.
_INHERITED_PREFIXES = ("DBT_", "GIT_")

# An order id that exists in seeds/raw_orders.csv (ids 1..250).
_DUPLICATE_ORDER = "250,12,2025-11-30,completed\n"

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    # Neither the machine's nor the user's git config may change a test.
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def copy_example(dest: Path, source_dir: Path = EXAMPLE_DIR) -> Path:
    """A copy of the example project at `dest`, without target/, logs/ or a DuckDB file."""
    shutil.copytree(source_dir, dest, ignore=shutil.ignore_patterns(*_EPHEMERAL))
    return dest


def git(*args: str, cwd: Path) -> str:
    """Runs git with a fixed identity and no global config; returns stdout, raises on failure."""
    env = {**_clean_environ(), **GIT_IDENTITY}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout.strip()


def commit_all(work_dir: Path, message: str) -> str:
    """Commits every change in `work_dir` and returns the new commit's SHA."""
    git("add", "-A", cwd=work_dir)
    git("commit", "-q", "-m", message, cwd=work_dir)
    return git("rev-parse", "HEAD", cwd=work_dir)


def make_git_remote(tmp_path: Path, source_dir: Path = EXAMPLE_DIR) -> tuple[str, str]:
    """A bare repository at tmp_path/remote.git whose `main` (its default branch)
    holds one commit of `source_dir`'s project at the repository root.

    Returns (file:// URL, commit SHA). A working clone stays at tmp_path/remote-work
    for tests that push more branches or tags (`commit_all`, then `git push`).
    """
    bare = tmp_path / "remote.git"
    work = tmp_path / "remote-work"
    # --initial-branch makes the bare HEAD point at main, so "default branch" resolves.
    git("init", "-q", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    copy_example(work, source_dir)
    git("init", "-q", "--initial-branch=main", cwd=work)
    sha = commit_all(work, "shop project")
    git("remote", "add", "origin", bare.as_uri(), cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return bare.as_uri(), sha


def break_upstream(project_dir: Path) -> None:
    """Makes `dbt build` fail upstream: a duplicate order id in seeds/raw_orders.csv.

    The error-severity test unique_stg_orders_order_id fails on the staging model,
    so the marts downstream of it (order_totals, customer_orders) are SKIPPED and
    dbt exits 1.
    """
    seed = project_dir / "seeds" / "raw_orders.csv"
    text = seed.read_text()
    if not text.endswith("\n"):
        text += "\n"
    seed.write_text(text + _DUPLICATE_ORDER)


def make_fake_dbt(bin_dir: Path) -> Path:
    """A `dbt` stand-in in `bin_dir` (returned, to put first on PATH).

    It prints `FAKE_DBT ARGV <w1> <w2> …` (each word in angle brackets), its working
    directory and the dbt-related environment, then exits 0 — except
    `dbt fail N`, which exits N, `dbt sleep N`, which becomes `sleep N`, and
    `dbt deps`, which exits $FAKE_DBT_DEPS_EXIT (default 0). When
    $DBT_TARGET_PATH/partial_parse.msgpack exists it prints its content, then
    writes `written by <argv>` there, as dbt would rewrite it.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "dbt"
    fake.write_text(
        """#!/usr/bin/env bash
printf 'FAKE_DBT ARGV'; printf ' <%s>' "$@"; printf '\\n'
echo "FAKE_DBT CWD $PWD"
for name in DBT_PROJECT_DIR DBT_PROFILES_DIR DBT_TARGET_PATH DBT_LOG_PATH DBT_RUN_DIR \\
            DBT_SEND_ANONYMOUS_USAGE_STATS; do
  echo "FAKE_DBT ENV $name=${!name-<unset>}"
done
pp=${DBT_TARGET_PATH:?}/partial_parse.msgpack
if [[ -f $pp ]]; then echo "FAKE_DBT PARTIAL_PARSE $(<"$pp")"; fi
mkdir -p "$DBT_TARGET_PATH" && echo "written by $*" >"$pp"
if [[ ${1:-} == deps ]]; then exit "${FAKE_DBT_DEPS_EXIT:-0}"; fi
if [[ ${1:-} == fail ]]; then exit "${2:-1}"; fi
if [[ ${1:-} == sleep ]]; then exec sleep "${2:-60}"; fi
exit 0
"""
    )
    fake.chmod(0o755)
    return bin_dir


def run_script(
    env: Mapping[str, str],
    cwd: Path,
    *,
    dbt_bin_dir: Path = DBT_BIN_DIR,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Runs docker/run_commands.sh with `env` on top of a clean environment.

    The developer's DBT_* and GIT_* variables are dropped; `dbt_bin_dir` goes first
    on PATH (the venv's real dbt by default, or `make_fake_dbt`'s). stderr is merged
    into stdout, as the runners read it.
    """
    base = _clean_environ()
    base["PATH"] = os.pathsep.join([str(dbt_bin_dir), base.get("PATH", os.defpath)])
    return subprocess.run(
        ["bash", str(RUN_COMMANDS)],
        cwd=cwd,
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def markers(output: str) -> list[str]:
    """The script's marker lines without the `[run_commands] ` prefix, in order."""
    return [line[len(MARKER_PREFIX) :] for line in output.splitlines() if line.startswith(MARKER_PREFIX)]


def git_sha_marker(output: str) -> str | None:
    """The SHA from the `GIT_SHA` marker, if printed."""
    shas = [m.split(" ", 1)[1] for m in markers(output) if m.startswith("GIT_SHA ")]
    return shas[-1] if shas else None


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
