"""Real dbt on DuckDB through the scheduler's CLI: code fetched from a git remote over file://."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dbt_helpers import break_upstream, commit_all, git, make_git_remote

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def cli(config: Path, *args: str, secret: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "COLUMNS": "200"}
    if secret:
        env["DBT_ENV_SECRET_DEMO_TOKEN"] = secret
    return subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """(work clone, file:// url, sha of the passing commit)."""
    base = tmp_path_factory.mktemp("remote")
    url, sha = make_git_remote(base)
    return base / "remote-work", url, sha


@pytest.fixture
def config(tmp_path: Path, remote: tuple[Path, str, str]) -> Path:
    _, url, _ = remote
    path = tmp_path / "jobs.yaml"
    path.write_text(
        "state_dir: state\n"
        "jobs:\n"
        "  shop:\n"
        "    schedule: '0 6 * * *'\n"
        f"    git: {{url: '{url}', ref: main}}\n"
        "    target: dev\n"
        "    env: {SHOP_ECHO: 'token is ${DBT_ENV_SECRET_DEMO_TOKEN}'}\n"
    )
    return path


def only_run(config: Path) -> Path:
    [run_dir] = (config.parent / "state" / "runs" / "shop").iterdir()
    return run_dir


def test_passing_run_reports_and_records_everything(config: Path, remote: tuple[Path, str, str]) -> None:
    _, _, sha = remote
    done = cli(config, "run-now", "shop", secret="hunter2-secret")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shop succeeded" in done.stdout
    assert "PASS=24 WARN=1 ERROR=0 SKIP=0" in done.stdout
    assert "not_null_stg_customers_email" in done.stdout  # the one warning, shown with its message

    run_dir = only_run(config)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["outcome"] == "succeeded" and report["exit_code"] == 0
    assert report["trigger"] == "manual" and report["triggered_by"]
    assert report["git_sha"] == sha
    assert report["scheduled_for"] is None
    assert report["counts"]["warn"] == 1 and report["counts"]["total"] == 25
    assert report["started_at"].endswith("+00:00")
    warned = [n for n in report["nodes"] if n["status"] == "warn"]
    assert [n["unique_id"].split(".")[2] for n in warned] == ["not_null_stg_customers_email"]
    for name in ("run.log", "report.md", "run_results.json", "manifest.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "work").exists()  # a good run's clone is cleaned up

    history = json.loads(cli(config, "history", "--json").stdout)
    [row] = history
    assert set(row) - {"deliveries"} == set(report) - {"nodes"}  # + the alerts sent
    assert {k: row[k] for k in ("run_id", "outcome", "git_sha", "counts")} == {
        k: report[k] for k in ("run_id", "outcome", "git_sha", "counts")
    }
    logs = cli(config, "logs", "shop")
    assert logs.returncode == 0 and "[run_commands] EXIT 0" in logs.stdout
    status = cli(config, "status")
    assert "shop" in status.stdout and "succeeded" in status.stdout


def test_failing_upstream_test_skips_downstream_and_says_so(
    config: Path, remote: tuple[Path, str, str]
) -> None:
    work, _, _ = remote
    break_upstream(work)
    bad_sha = commit_all(work, "a duplicate order arrives")
    git("push", "-q", "origin", "main", cwd=work)

    done = cli(config, "run-now", "shop")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "shop failed" in out
    assert "unique_stg_orders_order_id" in out
    assert "order_totals" in out and "customer_orders" in out  # the skipped marts are named

    run_dir = only_run(config)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["outcome"] == "failed" and report["exit_code"] == 1
    assert report["git_sha"] == bad_sha
    by_name = {n["unique_id"]: n for n in report["nodes"]}
    [failed] = [n for n in report["nodes"] if n["status"] == "fail"]
    assert failed["unique_id"].startswith("test.shop.unique_stg_orders_order_id")
    assert failed["failures"] == 1
    skipped = {uid for uid, n in by_name.items() if n["status"] == "skipped"}
    assert {"model.shop.order_totals", "model.shop.customer_orders"} <= skipped
    for uid in ("model.shop.order_totals", "model.shop.customer_orders"):
        assert by_name[uid]["skipped_because"] == [failed["unique_id"]]
    assert report["reason"].startswith("1 test failed (unique_stg_orders_order_id")
    assert (run_dir / "work").is_dir()  # kept for debugging a failed run
    md = (run_dir / "report.md").read_text()
    assert "unique_stg_orders_order_id" in md and "customer_orders" in md

    [row] = json.loads(cli(config, "history", "shop", "--json").stdout)
    assert row["outcome"] == "failed" and row["reason"] == report["reason"]
    assert row["counts"]["skipped"] == len(skipped)

    # Put the remote back for other tests of this module.
    git("revert", "--no-edit", "HEAD", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)


def test_select_and_target_overrides(config: Path) -> None:
    done = cli(config, "run-now", "shop", "--select", "raw_customers raw_orders", "--target", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((only_run(config) / "report.json").read_text())
    assert {n["unique_id"] for n in report["nodes"]} == {"seed.shop.raw_customers", "seed.shop.raw_orders"}


def test_unknown_job_and_bad_target_are_clear(config: Path) -> None:
    done = cli(config, "run-now", "shp")
    assert done.returncode == 2
    assert "no job named 'shp': did you mean 'shop'?" in done.stderr
    done = cli(config, "run-now", "shop", "--target", "nowhere")
    assert done.returncode == 1
    assert "nowhere" in done.stdout
