"""The real daemon as a subprocess, and its history read straight from SQLite.

For end-to-end tests that signal the daemon: it runs in its own session, so a test
can signal its process group, and a daemon a failed test leaves behind is killed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; fail naming `what` after `timeout` seconds (a hang guard)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def history_rows(state_dir: Path) -> list[dict[str, Any]]:
    """Every row of the runs table, oldest first; [] before the daemon created the database."""
    db = state_dir / "history.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM runs ORDER BY rowid")]
    except sqlite3.OperationalError:  # the daemon is still creating the schema
        return []
    finally:
        conn.close()


@contextmanager
def running_daemon(
    config: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    python: str = sys.executable,
) -> Iterator[subprocess.Popen]:
    """`scheduler.py --config CONFIG run` in its own session; killed with its group on the way out.
    With `user` (root only) it runs as that user and its group alone, the way systemd runs it
    (set in the child itself: no `runuser` in between to catch the signals)."""
    as_user: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [python, "scheduler.py", "--config", str(config), "run"],
            **as_user,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **(env or {})},
            start_new_session=True,
        )
    try:
        yield daemon
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def stand_in_project(tmp_path: Path, run_script: str) -> tuple[Path, Path]:
    """(a dbt project folder, a stand-in for docker/run_commands.sh holding `run_script`):
    for daemon tests about scheduling, where dbt's seconds would only slow them down. Point
    the daemon at the script with DBT_SCHEDULER_RUN_COMMANDS."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    script = tmp_path / "stand_in.sh"
    script.write_text(run_script)
    return project, script
