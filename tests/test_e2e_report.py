"""What the report says, through `scheduler.py run-now` with real dbt on DuckDB.

The example project (a copy per test) runs as a local `project_dir` job: several
commands, source freshness, compiled SQL kept after work/ is removed, run-now
--select replacing a command's selection, and dbt failing before it runs a node.
Every scenario runs twice: a second run finds the first one's state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dbt_helpers import RUN_COMMANDS, copy_example

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)


def cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    full_env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "COLUMNS": "250", **(env or {})})
    return subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def write_config(tmp_path: Path, commands: list[str], project: Path | None = None, extra: str = "") -> Path:
    project = project or copy_example(tmp_path / "shop")
    path = tmp_path / "jobs.yaml"
    listed = "".join(f"      - {json.dumps(c)}\n" for c in commands)
    path.write_text(
        "state_dir: state\n"
        "jobs:\n"
        "  shop:\n"
        "    schedule: '0 6 * * *'\n"
        f"    project_dir: {project}\n"
        "    commands:\n" + listed + extra
    )
    return path


def runs(config: Path) -> list[Path]:
    return sorted((config.parent / "state" / "runs" / "shop").iterdir())


def test_several_commands_and_kept_sql_twice(tmp_path: Path) -> None:
    """seed, build of a selection, test: every command's nodes are in the report with
    the command that ran them; the warned test's compiled SQL outlives work/; colours
    asked for in the job's env or with --use-colors leave no colour code anywhere."""
    commands = [
        "dbt seed --use-colors",
        "dbt build --select stg_customers+ stg_orders+ stg_payments+",
        "dbt test",
    ]
    config = write_config(
        tmp_path,
        commands,
        # What a user might set to get colours: dbt must still print none.
        extra="    env: {DBT_USE_COLORS: 'true', FORCE_COLOR: '1', CLICOLOR_FORCE: '1'}\n",
    )
    for attempt in (1, 2):
        done = cli(config, "run-now", "shop")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "\x1b[" not in done.stdout
        run_dir = runs(config)[-1]
        assert len(runs(config)) == attempt
        assert not (run_dir / "work").exists()  # a good run's work area is removed…
        report = json.loads((run_dir / "report.json").read_text())
        assert report["commands"] == commands
        nodes = report["nodes"]
        by_command: dict[int, list[dict]] = {}
        for node in nodes:
            by_command.setdefault(node["command"], []).append(node)
        assert sorted(by_command) == [1, 2, 3]
        assert {n["resource_type"] for n in by_command[1]} == {"seed"}
        assert {n["resource_type"] for n in by_command[2]} == {"model", "test"}
        assert {n["resource_type"] for n in by_command[3]} == {"test"}
        assert report["counts"]["total"] == 3 + 22 + 17  # seeds; 5 models + 17 tests; 17 tests
        # the warn test ran in commands 2 and 3; both point at SQL kept in the run folder
        warned = [n for n in nodes if n["name"] == "not_null_stg_customers_email"]
        assert [n["command"] for n in warned] == [2, 3]
        for node in warned:
            kept = Path(node["compiled_path"])  # …but the SQL of what warned is kept
            assert kept.is_file() and kept.is_relative_to(run_dir / "compiled"), node
            assert "where email is null" in kept.read_text()
        md = (run_dir / "report.md").read_text()
        assert "| Node | Type | Command | Status | Failures | Message |" in md
        assert "| not_null_stg_customers_email | test | 2 | warn | 3 |" in md
        relative = Path(warned[0]["compiled_path"]).relative_to(run_dir).as_posix()
        assert f"]({relative})" in md
        assert "compiled SQL: " in done.stdout
        for name in ("run.log", "report.md", "report.json"):
            assert "\x1b[" not in (run_dir / name).read_text(), name
        history = json.loads(cli(config, "history", "--json").stdout)
        assert len(history) == attempt
        assert "\x1b[" not in json.dumps(history)
        assert history[0]["commands"] == commands


@pytest.mark.skipif(
    "sources.json" not in RUN_COMMANDS.read_text(),
    reason="docker/run_commands.sh does not copy sources.json into the run folder yet",
)
def test_source_freshness_results_are_nodes_twice(tmp_path: Path) -> None:
    """The example's raw.raw_orders source is always stale (sample data from 2025):
    `dbt source freshness` warns and exits 0; the report shows the source with its
    max_loaded_at and threshold, from the command that checked it."""
    config = write_config(tmp_path, ["dbt seed", "dbt source freshness", "dbt build"])
    for attempt in (1, 2):
        done = cli(config, "run-now", "shop")
        assert done.returncode == 0, done.stdout + done.stderr
        run_dir = runs(config)[-1]
        report = json.loads((run_dir / "report.json").read_text())
        [source] = [n for n in report["nodes"] if n["resource_type"] == "source"]
        assert (source["unique_id"], source["status"], source["command"]) == (
            "source.shop.raw.raw_orders",
            "warn",
            2,
        )
        assert source["freshness"]["max_loaded_at"] == "2025-11-27T00:00:00+00:00"
        assert source["freshness"]["warn_after"] == "1 day"
        assert "max_loaded_at 2025-11-27" in source["message"] and "warn after 1 day" in source["message"]
        md = (run_dir / "report.md").read_text()
        assert "| raw.raw_orders | source | 2 | warn |" in md
        assert report["counts"]["warn"] == 2  # the source and the not_null test
        assert len(runs(config)) == attempt


def test_run_now_select_replaces_the_jobs_selection_and_is_recorded_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["dbt seed --select raw_orders", "dbt build -s raw_payments"])
    for attempt in (1, 2):
        done = cli(config, "run-now", "shop", "--select", "raw_customers", "--target", "dev")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "--select raw_customers" in done.stdout and "--target dev" in done.stdout
        report = json.loads((runs(config)[-1] / "report.json").read_text())
        assert report["commands"] == ["dbt seed --select raw_customers", "dbt build --select raw_customers"]
        assert {(n["command"], n["unique_id"]) for n in report["nodes"]} == {
            (1, "seed.shop.raw_customers"),
            (2, "seed.shop.raw_customers"),
        }
        assert (report["target_override"], report["select_override"]) == ("dev", "raw_customers")
        history = json.loads(cli(config, "history", "--json").stdout)
        assert len(history) == attempt
        assert (history[0]["target_override"], history[0]["select_override"]) == ("dev", "raw_customers")
        assert history[0]["commands"] == report["commands"]
        assert set(history[0]) - {"deliveries"} == set(report) - {"nodes"}  # + the alerts sent
        table = cli(config, "history").stdout
        assert "--select raw_customers" in table and "--target dev" in table
    # A run without overrides runs the job as written and records none.
    done = cli(config, "run-now", "shop")
    assert done.returncode == 0, done.stdout + done.stderr
    newest = json.loads(cli(config, "history", "--json").stdout)[0]
    assert (newest["target_override"], newest["select_override"]) == (None, None)
    assert newest["commands"] == ["dbt seed --select raw_orders", "dbt build -s raw_payments"]


def broken_model(project: Path) -> None:
    (project / "models" / "marts" / "broken.sql").write_text("select * from {{ ref('no_such_model') }}\n")


def missing_database_dir(project: Path) -> None:
    profiles = project / "profiles.yml"
    profiles.write_text(
        profiles.read_text().replace("path: shop.duckdb", "path: /nonexistent/dir/shop.duckdb")
    )


@pytest.mark.parametrize(
    ("breakage", "args", "reason"),
    [
        (
            None,
            ("--target", "nowhere"),
            "Runtime Error: The profile 'shop' does not have a target named 'nowhere'.",
        ),
        (
            broken_model,
            (),
            "Compilation Error: Model 'model.shop.broken' (models/marts/broken.sql) depends on a node"
            " named 'no_such_model' which was not found",
        ),
        (
            missing_database_dir,
            (),
            'IO Error: Cannot open file "/nonexistent/dir/shop.duckdb": No such file or directory',
        ),
    ],
    ids=["bad-target", "compile-error", "no-database-dir"],
)
def test_dbt_failing_early_gives_dbt_error_as_the_reason_twice(
    tmp_path: Path, breakage: object, args: tuple[str, ...], reason: str
) -> None:
    project = copy_example(tmp_path / "shop")
    if callable(breakage):
        breakage(project)
    config = write_config(tmp_path, ["dbt build"], project)
    for _ in (1, 2):
        done = cli(config, "run-now", "shop", *args)
        assert done.returncode == 1, done.stdout + done.stderr
        report = json.loads((runs(config)[-1] / "report.json").read_text())
        assert report["outcome"] == "failed"
        assert report["reason"].startswith(reason), report["reason"]
        [row] = json.loads(cli(config, "history", "--json", "--limit", "1").stdout)
        assert row["reason"] == report["reason"]
