"""Nothing under state_dir is world-readable, and a world-writable state_dir is refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.daemon_helpers import REPO

RUN_SCRIPT = 'echo "a run"\necho "[run_commands] EXIT 0"\n'


def run_now(config: Path, script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), "run-now", "j"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DBT_SCHEDULER_RUN_COMMANDS": str(script)},
    )  # fmt: skip


def test_what_a_run_writes_is_owner_and_group_only_and_world_writable_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dbt_project.yml").write_text("name: p\n")
    script = tmp_path / "stand_in.sh"
    script.write_text(RUN_SCRIPT)
    config = tmp_path / "jobs.yaml"
    config.write_text(f"state_dir: state\njobs:\n  j:\n    every: 1 hour\n    project_dir: {tmp_path}\n")
    state = tmp_path / "state"
    for _ in range(2):
        done = run_now(config, script)
        assert done.returncode == 0, done.stdout + done.stderr
    paths = [state, *state.rglob("*")]
    assert any(p.name == "history.db" for p in paths) and any(p.name == "run.log" for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & 0o007, f"{path} is {mode:04o}"

    state.chmod(0o777)
    refused = run_now(config, script)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: state_dir {state} is writable by every user")
    )
    assert "chmod o-w" in refused.stderr and "Traceback" not in refused.stderr
