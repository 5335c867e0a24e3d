"""`commands: [{run: …, allow_failure: true}, …]` end to end: jobs.yaml → run-now → real dbt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dbt_helpers import EXAMPLE_DIR, copy_example
from tests.test_e2e_dbt import cli

pytestmark = pytest.mark.timeout(300)

FAILING = "dbt run-operation no_such_macro"  # dbt exits non-zero: the macro does not exist


def write_config(tmp_path: Path, allow_failure: bool) -> Path:
    project = copy_example(tmp_path / "shop", EXAMPLE_DIR)
    config = tmp_path / "jobs.yaml"
    first = f"{{run: '{FAILING}', allow_failure: true}}" if allow_failure else f"'{FAILING}'"
    config.write_text(
        "state_dir: state\n"
        "jobs:\n"
        "  shop:\n"
        "    schedule: '0 6 * * *'\n"
        f"    project_dir: {project}\n"
        f"    commands: [{first}, 'dbt seed']\n"
    )
    return config


@pytest.mark.parametrize("allowed", [True, False])
def test_an_allowed_failure_lets_the_next_command_run(tmp_path: Path, allowed: bool) -> None:
    config = write_config(tmp_path, allowed)
    for _ in range(2):
        done = cli(config, "run-now", "shop")
        run = sorted((tmp_path / "state" / "runs" / "shop").iterdir())[-1]
        log = (run / "run.log").read_text()
        report = json.loads((run / "report.json").read_text())
        if allowed:
            assert done.returncode == 0, done.stdout + done.stderr
            assert "STEP command 1/2: WARNING failed (exit" in log and "but allowed to fail" in log
            assert "STEP command 2/2: dbt seed" in log
            assert report["outcome"] == "succeeded"
            assert "seed.shop.raw_orders" in {n["unique_id"] for n in report["nodes"]}
        else:
            assert done.returncode == 1, done.stdout + done.stderr
            assert "STEP command 2/2" not in log
            assert report["outcome"] == "failed"
