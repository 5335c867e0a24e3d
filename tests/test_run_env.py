"""lib/run_env.py: what a run is told — run-now --select, and colours off for every runner."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lib.command_grammar import split_words
from lib.models import Job, RunRequest, TriggerKind
from lib.run_env import container_variables, effective_commands, scheduler_variables
from lib.triggers import parse_every


def job(*commands: str, **kw: object) -> Job:
    return Job(
        name="j",
        trigger=parse_every("1 hour", ZoneInfo("UTC")),
        timezone=ZoneInfo("UTC"),
        commands=commands,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("dbt build", "dbt build --select tag:x"),
        ("dbt build --select a b --exclude c", "dbt build --exclude c --select tag:x"),
        ("dbt build -s a --full-refresh", "dbt build --full-refresh --select tag:x"),
        ("dbt run --models a+ -t prod", "dbt run -t prod --select tag:x"),
        ("dbt test -m a", "dbt test --select tag:x"),
        ("dbt build --select=a --exclude=b", "dbt build --exclude=b --select tag:x"),
        ("dbt build --selector nightly", "dbt build --select tag:x"),
        ("dbt source freshness --select source:raw", "dbt source freshness --select tag:x"),
        ("dbt build --vars '{a: 1}' -s a", "dbt build --vars '{a: 1}' --select tag:x"),
        ("dbt deps", "dbt deps"),
        ("dbt run-operation grant --args '{a: 1}'", "dbt run-operation grant --args '{a: 1}'"),
    ],
)
def test_select_replaces_the_selection_of_every_command_that_takes_one(command: str, expected: str) -> None:
    assert effective_commands(job(command), "tag:x") == (expected,)


@pytest.mark.parametrize(
    "command",
    ["dbt build # the nightly build", "dbt build -s a  # only a", 'dbt build --vars "{a: 1}"  #x'],
)
def test_select_is_not_swallowed_by_a_trailing_comment(command: str) -> None:
    """The script ends a line at a word starting with `#`: `--select` must come before it."""
    (rewritten,) = effective_commands(job(command), "tag:x")
    words = split_words(rewritten)
    assert words[-2:] == ["--select", "tag:x"]
    assert "-s" not in words and not any(word.startswith("#") for word in words)


def test_select_with_spaces_is_one_quoted_value_and_empty_changes_nothing() -> None:
    assert effective_commands(job("dbt build -s a"), "a b") == ("dbt build --select 'a b'",)
    assert effective_commands(job("dbt build -s a"), None) == ("dbt build -s a",)
    assert effective_commands(job("dbt build -s a"), "") == ("dbt build -s a",)


def test_colours_are_off_for_local_and_container_runs(tmp_path: Path) -> None:
    """dbt colours its output into a pipe; every runner tells it not to, over the job's env."""
    j = job("dbt build", env={"DBT_USE_COLORS": "true"})
    request = RunRequest(j, "r1", TriggerKind.MANUAL)
    for env in (
        scheduler_variables(j, request, tmp_path, tmp_path / "work"),
        container_variables(j, request),
    ):
        assert env["DBT_USE_COLORS"] == "false"
        assert env["DBT_USE_COLORS_FILE"] == "false"


def test_scheduler_variables_names_every_variable_a_container_run_is_given() -> None:
    """aws.secrets refuses these names (ECS refuses a name that is both a secret and in the
    environment): the list must hold every name container_variables sets beside the job's env."""
    from lib.models import GitSource
    from lib.run_env import SCHEDULER_VARIABLES

    everything = job(
        "dbt build",
        "dbt test",
        git=GitSource("file:///srv/repo.git", ref="main", subdir="analytics"),
        target="prod",
        allow_failure=frozenset({0}),
        env={"MINE": "1"},
    )
    request = RunRequest(everything, "r1", TriggerKind.MANUAL)
    from_git = container_variables(everything, request, "s3://b/p/j/r1", artifacts_dir="/artifacts")
    local = job("dbt build", project_dir=Path("/srv/shop"))
    from_folder = container_variables(
        local, RunRequest(local, "r2", TriggerKind.MANUAL), project_dir="/project"
    )
    assert (set(from_git) - {"MINE"}) | set(from_folder) == SCHEDULER_VARIABLES
