"""lib/outbox.py and its use: a history row or report state_dir refused is written once it
can be, every fire time still one row; what is left at exit is logged whole, not lost silently."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lib.app import App
from lib.config import Config
from lib.history import History
from lib.outbox import Outbox
from tests.conftest import START
from tests.daemon_helpers import REPO
from tests.disk_helpers import small_disk  # noqa: F401
from tests.fakes import FakeClock, FakeRunner
from tests.test_daemon import daemon_for, runs_of


class Refusing:
    """A write that fails like a full disk `times` times, then works."""

    def __init__(self, times: int) -> None:
        self.times, self.calls = times, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise sqlite3.OperationalError("database or disk is full")


def test_pending_writes_are_retried_in_order_until_they_work() -> None:
    from lib.models import RunOutcome, RunRecord, RunStatus, TriggerKind

    record = RunRecord("j", "r1", TriggerKind.SCHEDULE, RunOutcome(RunStatus.SUCCEEDED), START, START)
    outbox, first, second = Outbox(), Refusing(1), Refusing(2)
    outbox.add(record, "report", first)
    outbox.add(record, "history row", second)
    assert outbox.retry() == 0 and len(outbox) == 2  # both refused: still the disk is full
    assert outbox.retry() == 1 and len(outbox) == 1  # the report went, the row is still refused
    assert outbox.retry() == 1 and len(outbox) == 0
    assert outbox.retry() == 0 and (first.calls, second.calls) == (2, 3)


def test_a_week_on_a_disk_that_is_full_for_a_day_keeps_every_fire_time(
    make_config: Callable[..., Config],
    make_app: Callable[..., App],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hourly runs; history refuses every write on day 2 (a full disk). The daemon logs one
    line per refused row, keeps scheduling, and writes each pending row once writes work."""
    app = make_app(make_config({"hourly": {"every": "1 hour"}}), FakeRunner())
    real_finish = History.finish
    full_from, full_until = START + timedelta(days=1), START + timedelta(days=2)

    def finish(self: History, record: Any) -> None:
        if full_from <= clock.now() < full_until:
            raise sqlite3.OperationalError("database or disk is full")
        real_finish(self, record)

    monkeypatch.setattr(History, "finish", finish)
    caplog.set_level(logging.INFO, "dbt_scheduler")
    assert daemon_for(app).run_forever(until=START + timedelta(days=7)) == 0

    rows = runs_of(app, "hourly")
    fires = [datetime.fromisoformat(r["scheduled_for"]) for r in rows]
    assert sorted(fires) == [START + timedelta(hours=h) for h in range(1, 7 * 24 + 1)]
    refused = [r for r in caplog.records if "recorded when it can be" in r.getMessage()]
    assert len(refused) == 24  # one line per refused row, not one per retry
    assert any("can be written again: recorded 24 pending run(s)" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)
    assert len(app.service.outbox) == 0


def test_what_is_still_pending_at_exit_is_logged_whole(
    make_config: Callable[..., Config],
    make_app: Callable[..., App],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(make_config({"hourly": {"every": "1 hour"}}), FakeRunner())
    monkeypatch.setattr(History, "finish", lambda self, record: Refusing(99)())
    assert daemon_for(app).run_forever(until=START + timedelta(hours=2)) == 0
    lost = [
        r.getMessage()
        for r in caplog.records
        if "could not be recorded: its history row is lost" in r.getMessage()
    ]
    assert len(lost) == 2 and all("hourly: run " in line and "(succeeded)" in line for line in lost)


def test_a_read_only_state_dir_stops_the_daemon_with_one_line_and_exit_3(
    small_disk: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = small_disk / "state"
    config = tmp_path / "jobs.yaml"
    config.write_text(f"state_dir: {state}\njobs:\n  j:\n    every: 1 hour\n    project_dir: {tmp_path}\n")
    (tmp_path / "dbt_project.yml").write_text("name: p\n")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "scheduler.py", "--config", str(config), "run"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 3, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Read-only file system" in errors[0], done.stderr
        assert "Traceback" not in done.stderr
