"""Rebuild the real dbt artifacts the result-parsing tests read.

    .venv/bin/python tests/data/artifacts/regenerate.py

Runs `dbt build` twice on the tiny project in `project/` (DuckDB, in a temp dir):
once as is (passes with one warn-severity test warning) and once with
`--vars '{broken: true}'`, which makes an error-severity test on stg_orders fail,
a model hit a SQL error and a unit test fail, so their descendants are skipped.
Each run's run_results.json is stored untouched; manifest.json (≈600 KB) is trimmed
to what lib/dbt_results.py reads: metadata, parent_map, child_map, and for each
node/unit test only unique_id, resource_type, name and depends_on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
NODE_KEYS = ("unique_id", "resource_type", "name", "depends_on")
SCENARIOS = {"passing": [], "failing": ["--vars", "{broken: true}"]}


def trim_manifest(manifest: dict) -> dict:
    """Only the parts of a manifest that result parsing uses."""

    def trim(section: dict) -> dict:
        return {uid: {k: node[k] for k in NODE_KEYS if k in node} for uid, node in section.items()}

    return {
        "metadata": manifest["metadata"],
        "nodes": trim(manifest.get("nodes", {})),
        "unit_tests": trim(manifest.get("unit_tests", {})),
        "parent_map": manifest["parent_map"],
        "child_map": manifest["child_map"],
    }


def main() -> int:
    dbt = Path(sys.executable).with_name("dbt")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for scenario, extra in SCENARIOS.items():
            target = work / scenario
            env = {
                **os.environ,
                "DBT_PROFILES_DIR": str(PROJECT),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                "FIXTURE_DUCKDB_PATH": str(work / f"{scenario}.duckdb"),
            }
            cmd = [str(dbt), "build", "--project-dir", str(PROJECT), "--target-path", str(target)]
            cmd += ["--log-path", str(work / "logs"), *extra]
            proc = subprocess.run(cmd, env=env, cwd=work, check=False)
            print(f"{scenario}: dbt build exited {proc.returncode}")
            out = HERE / scenario
            out.mkdir(exist_ok=True)
            shutil.copyfile(target / "run_results.json", out / "run_results.json")
            manifest = json.loads((target / "manifest.json").read_text())
            (out / "manifest.json").write_text(json.dumps(trim_manifest(manifest), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
