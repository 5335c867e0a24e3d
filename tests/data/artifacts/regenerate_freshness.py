"""Rebuild the real `dbt source freshness` artifacts the freshness tests read.

    .venv/bin/python tests/data/artifacts/regenerate_freshness.py

Copies the example project (example/) to a temp dir with four sources over its
seeds, runs `dbt seed` then `dbt source freshness` (DuckDB) and stores, in
freshness/: sources.json untouched, the freshness command's console output as
run.log (between run_commands.sh-style markers, colours off), and manifest.json
trimmed to its sources. The four sources give dbt's four outcomes: pass (a
threshold of 100000 days), warn (1 day), error (stale beyond error_after: 2 days)
and a runtime error (a table that does not exist) — which dbt 1.11 leaves out of
sources.json and prints only.
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
EXAMPLE = HERE.parents[2] / "example"
OUT = HERE / "freshness"
SOURCES_YML = """version: 2
sources:
  - name: raw
    schema: "{{ target.schema }}_raw"
    config:
      loaded_at_field: "cast(ordered_at as timestamp)"
    tables:
      - name: raw_orders
        config:
          freshness: {warn_after: {count: 1, period: day}}
      - name: raw_customers
        config:
          loaded_at_field: "cast(signed_up_at as timestamp)"
          freshness: {warn_after: {count: 1, period: day}, error_after: {count: 2, period: day}}
      - name: orders_fresh
        identifier: raw_orders
        config:
          freshness: {warn_after: {count: 100000, period: day}}
      - name: missing
        config:
          freshness: {warn_after: {count: 1, period: day}}
"""


def main() -> int:
    dbt = Path(sys.executable).with_name("dbt")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
        (project / "models" / "staging" / "_sources.yml").write_text(SOURCES_YML)
        target = Path(tmp) / "target"
        env = {
            **os.environ,
            "DBT_PROFILES_DIR": str(project),
            "DBT_PROJECT_DIR": str(project),
            "DBT_TARGET_PATH": str(target),
            "DBT_LOG_PATH": str(Path(tmp) / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_USE_COLORS": "false",
        }
        subprocess.run([str(dbt), "seed"], env=env, cwd=tmp, check=True, capture_output=True)
        done = subprocess.run(
            [str(dbt), "source", "freshness"], env=env, cwd=tmp, capture_output=True, text=True, check=False
        )
        print(f"dbt source freshness exited {done.returncode}")
        OUT.mkdir(exist_ok=True)
        shutil.copy(target / "sources.json", OUT / "sources.json")
        log = "[run_commands] STEP command 1/1: dbt source freshness\n" + done.stdout + done.stderr
        (OUT / "run.log").write_text(log + f"[run_commands] EXIT {done.returncode}\n")
        manifest = json.loads((target / "manifest.json").read_text())
        keys = ("unique_id", "resource_type", "source_name", "name", "package_name")
        trimmed = {
            "metadata": manifest["metadata"],
            "sources": {uid: {k: s[k] for k in keys} for uid, s in manifest["sources"].items()},
        }
        (OUT / "manifest.json").write_text(json.dumps(trimmed, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
