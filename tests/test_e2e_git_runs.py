"""A git job run night after night: real git over file://, real dbt on DuckDB, the real CLI.

The first run of a job is not where its bugs show: dbt's partial-parse state, the
job's checkout and its caches are reused from the second run on. Every test here
runs the same job several times, with new commits pushed in between.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from tests.dbt_helpers import commit_all, git, make_git_remote
from tests.test_e2e_dbt import cli

pytestmark = pytest.mark.timeout(600)

# dbt says this when it finds partial_parse.msgpack but cannot use it.
NO_PARTIAL_PARSE = "Unable to do partial parsing"


def write_config(tmp_path: Path, url: str, overlap: str = "skip") -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        "state_dir: state\n"
        "jobs:\n"
        "  shop:\n"
        "    schedule: '0 6 * * *'\n"
        f"    git: {{url: '{url}', ref: main}}\n"
        f"    overlap: {overlap}\n"
    )
    return path


def runs(config: Path) -> list[Path]:
    """The job's run folders, oldest first (run ids sort by start time)."""
    return sorted((config.parent / "state" / "runs" / "shop").iterdir())


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_three_runs_in_a_row_follow_new_commits(tmp_path: Path) -> None:
    url, first_sha = make_git_remote(tmp_path)
    work = tmp_path / "remote-work"
    config = write_config(tmp_path, url)

    for n in (1, 2):
        done = cli(config, "run-now", "shop")
        assert done.returncode == 0, f"run {n}:\n{done.stdout}{done.stderr}"
        assert "PASS=24 WARN=1 ERROR=0 SKIP=0" in done.stdout
    first, second = runs(config)
    assert report(first)["git_sha"] == report(second)["git_sha"] == first_sha
    # The second run reused the first one's parse (the reason the cache exists).
    assert NO_PARTIAL_PARSE not in (second / "run.log").read_text()

    # A model changes and a new one appears upstream of nothing: pushed before run 3.
    totals = work / "models" / "marts" / "order_totals.sql"
    totals.write_text(totals.read_text().rstrip() + "\n-- counted again after the change\n")
    (work / "models" / "marts" / "orders_per_status.sql").write_text(
        "select status, count(*) as orders from {{ ref('stg_orders') }} group by status\n"
    )
    new_sha = commit_all(work, "orders per status")
    git("push", "-q", "origin", "main", cwd=work)

    done = cli(config, "run-now", "shop")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS=25 WARN=1 ERROR=0 SKIP=0" in done.stdout
    third = runs(config)[-1]
    third_report = report(third)
    assert third_report["git_sha"] == new_sha
    assert "model.shop.orders_per_status" in {n["unique_id"] for n in third_report["nodes"]}
    manifest = json.loads((third / "manifest.json").read_text())
    assert "counted again" in manifest["nodes"]["model.shop.order_totals"]["raw_code"]
    # Each run still has its own work area; the good ones were cleaned up.
    assert all(not (run / "work").exists() for run in (first, second, third))


def test_a_run_that_finds_the_checkout_in_use_clones_privately(tmp_path: Path) -> None:
    """overlap: allow — while one run holds the job's checkout, another clones into its own folder."""
    url, sha = make_git_remote(tmp_path)
    config = write_config(tmp_path, url, overlap="allow")
    assert cli(config, "run-now", "shop").returncode == 0  # creates the job's checkout and cache
    checkout = config.parent / "state" / "cache" / "shop" / "checkout"
    assert (checkout / "dbt_project.yml").is_file()

    # Hold the lock a running run holds (flock(2), as util-linux flock takes it).
    with open(f"{checkout}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = cli(config, "run-now", "shop")
    assert busy.returncode == 0, busy.stdout + busy.stderr
    log = (runs(config)[-1] / "run.log").read_text()
    assert "is in use by another run of this job: cloning into a private folder" in log
    assert f"/{runs(config)[-1].name}/work/project" in log  # the clone was the run's own
    assert report(runs(config)[-1])["git_sha"] == sha

    # Free again: the next run goes back to the checkout and reuses the parse.
    again = cli(config, "run-now", "shop")
    assert again.returncode == 0, again.stdout + again.stderr
    log = (runs(config)[-1] / "run.log").read_text()
    assert "private folder" not in log and NO_PARTIAL_PARSE not in log
    assert f"into {checkout}" in log
