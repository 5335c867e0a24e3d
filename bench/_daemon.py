"""The real daemon (`scheduler.py --config JOBS run`) as a subprocess of a benchmark.

`RealDaemon` starts it in the workspace with its output in files, waits for log lines,
and stops it with SIGTERM (SIGKILL after a timeout, said on stderr); its exit code is
the benchmark's to judge (0 expected). `read_runs`/`wait_runs` read history.db
read-only while the daemon keeps writing it.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from _common import SCHEDULER

STARTED = "dbt-scheduler started"


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30, name: str = "") -> int:
    """Signals a process we started and reaps it; SIGKILL (said on stderr) after `timeout` s."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        print(
            f"{name or 'process'}: ignored signal {sig} for {timeout:.0f} s and was killed", file=sys.stderr
        )
        return process.wait()


class RealDaemon:
    """`scheduler.py --config CONFIG run` started in `folder`; stdout/stderr in daemon.out/.err there.

    Used as a context manager: leaving it stops the daemon (SIGTERM, `grace` s) and sets `rc`.
    """

    def __init__(
        self, python: str, config: Path, folder: Path, env: dict[str, str], grace: float = 30
    ) -> None:
        self.err_path = folder / "daemon.err"
        self.grace = grace
        self.rc: int | None = None
        self.launched = time.monotonic()
        with open(folder / "daemon.out", "wb") as out, open(self.err_path, "wb") as err:
            # The daemon keeps its own descriptors: ours close at once.
            self.process = subprocess.Popen(
                [python, str(SCHEDULER), "--config", str(config), "run"],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.pid = self.process.pid

    def __enter__(self) -> RealDaemon:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> int:
        """SIGTERM, then the exit code (once; later calls return the same code)."""
        if self.rc is None:
            self.rc = stop(self.process, timeout=self.grace, name="the daemon")
        return self.rc

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, chars: int = 2000) -> str:
        return self.log()[-chars:]

    def wait_log(self, needle: str, count: int = 1, timeout: float = 60) -> float:
        """Seconds until the daemon's log holds `needle` `count` times; exits if the daemon dies or
        the line does not come within `timeout` s."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise SystemExit(f"the daemon exited {self.process.returncode}:\n{self.tail()}")
            if self.log().count(needle) >= count:
                return time.monotonic() - started
            time.sleep(0.05)
        raise SystemExit(f"the daemon did not log {needle!r} within {timeout:.0f} s:\n{self.tail()}")

    def wait_started(self, timeout: float = 60) -> float:
        return self.wait_log(STARTED, timeout=timeout)


def read_runs(db: Path) -> list[dict[str, object]]:
    """The runs in history.db, read-only (the daemon keeps writing it); [] before it exists."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM runs ORDER BY started_at").fetchall()
    finally:
        conn.close()
    return [dict(row) for row in rows]


def wait_runs(
    db: Path,
    daemon: RealDaemon,
    ready: Callable[[list[dict[str, object]]], bool],
    what: str,
    timeout: float = 60,
) -> float:
    """Seconds until `ready(runs)` holds for the runs in history.db; exits on timeout or a dead daemon."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not daemon.alive():
            raise SystemExit(f"the daemon exited {daemon.process.returncode} while waiting for {what}")
        if ready(read_runs(db)):
            return time.monotonic() - started
        time.sleep(0.1)
    raise SystemExit(f"no {what} within {timeout:.0f} s: {read_runs(db)}")
