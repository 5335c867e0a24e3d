"""History: real SQLite, schema versioning, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lib.history import MIGRATIONS, SCHEMA_VERSION, History
from lib.models import Job, NodeResult, RunOutcome, RunRecord, RunRequest, RunStatus, TriggerKind
from lib.triggers import parse_cron

T0 = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
JOB = Job(name="nightly", trigger=parse_cron("0 6 * * *", ZoneInfo("UTC")), timezone=ZoneInfo("UTC"))


def record(run_id: str, status: RunStatus = RunStatus.SUCCEEDED, minutes: int = 0, **kw: object) -> RunRecord:
    start = T0 + timedelta(minutes=minutes)
    return RunRecord(
        job=str(kw.pop("job", "nightly")),
        run_id=run_id,
        trigger=kw.pop("trigger", TriggerKind.SCHEDULE),  # type: ignore[arg-type]
        outcome=RunOutcome(
            status,
            reason="why",
            exit_code=0,
            nodes=(NodeResult("model.p.a", "success"), NodeResult("test.p.t", "fail")),
            git_sha="abc",
        ),
        started_at=start,
        finished_at=start + timedelta(seconds=42),
        scheduled_for=kw.pop("scheduled_for", start),  # type: ignore[arg-type]
    )


def test_schema_is_versioned_and_created_on_first_use(tmp_path: Path) -> None:
    history = History(tmp_path / "state" / "history.db")
    assert not (tmp_path / "state").exists()
    assert history.schema_version() == SCHEMA_VERSION == 8
    conn = sqlite3.connect(tmp_path / "state" / "history.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 8


def test_a_version_1_history_is_upgraded_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute(
        "INSERT INTO runs (run_id, job, trigger, started_at, outcome)"
        " VALUES ('old', 'nightly', 'schedule', ?, 'succeeded')",
        (T0.isoformat(),),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    history = History(path)
    assert history.schema_version() == 8
    old = history.get("old")
    assert old is not None and old["outcome"] == "succeeded"
    assert (old["target_override"], old["select_override"], old["commands"], old["image"]) == (None,) * 4


def test_a_version_5_history_gains_the_token_and_audit_tables_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[:5]:
        conn.executescript(step)
    conn.execute(
        "INSERT INTO runs (run_id, job, trigger, started_at, outcome)"
        " VALUES ('old', 'nightly', 'schedule', ?, 'succeeded')",
        (T0.isoformat(),),
    )
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()

    history = History(path)
    assert history.schema_version() == 8
    assert history.get("old") is not None
    with history.transaction() as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"api_tokens", "audit"} <= tables


def test_run_now_overrides_and_commands_are_recorded_from_start_to_finish(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    request = RunRequest(JOB, "r1", TriggerKind.MANUAL, triggered_by="alice", target="prod", select="tag:x")
    history.start(request, T0, None, ("dbt build --select tag:x",))
    [running] = history.running()
    assert (running["target_override"], running["select_override"]) == ("prod", "tag:x")
    assert running["commands"] == ["dbt build --select tag:x"]
    finished = replace(
        record("r1", trigger=TriggerKind.MANUAL, scheduled_for=None),
        target_override="prod",
        select_override="tag:x",
        commands=("dbt build --select tag:x",),
    )
    history.finish(finished)
    run = history.get("r1")
    assert run is not None
    assert (run["target_override"], run["select_override"]) == ("prod", "tag:x")
    assert run["commands"] == ["dbt build --select tag:x"]
    # A record without them (a runner's own) keeps what the start wrote.
    history.start(RunRequest(JOB, "r2", TriggerKind.MANUAL, target="dev"), T0, None, ("dbt build",))
    history.finish(record("r2", trigger=TriggerKind.MANUAL, scheduled_for=None))
    assert history.get("r2")["target_override"] == "dev"  # type: ignore[index]
    assert history.get("r2")["commands"] == ["dbt build"]  # type: ignore[index]
    plain = history.get("r1")
    assert plain is not None and set(plain) >= {"target_override", "select_override", "commands"}


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this dbt-scheduler"):
        History(path).runs()


def test_start_then_finish_round_trip(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    request = RunRequest(JOB, "r1", TriggerKind.MANUAL, triggered_by="alice")
    history.start(request, T0, tmp_path / "r1")
    [running] = history.running()
    assert (running["run_id"], running["outcome"], running["triggered_by"]) == ("r1", "running", "alice")
    history.set_external_id("r1", "arn:aws:ecs:task/1", "https://console/x")
    history.finish(record("r1", RunStatus.FAILED, trigger=TriggerKind.MANUAL, scheduled_for=None))
    run = history.get("r1")
    assert run is not None
    assert run["outcome"] == "failed"
    assert run["duration_s"] == 42.0
    assert run["counts"]["fail"] == 1 and run["counts"]["total"] == 2
    assert run["external_id"] == "arn:aws:ecs:task/1"  # kept from when the task started
    assert run["log_url"] == "https://console/x"
    assert run["started_at"] == T0.isoformat()
    assert history.running() == []


def test_queries_newest_first_last_runs_and_last_scheduled(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    history.finish(record("a", minutes=0))
    history.finish(record("b", RunStatus.SKIPPED, minutes=10))
    history.finish(record("c", minutes=20, trigger=TriggerKind.MANUAL, scheduled_for=None))
    history.finish(record("d", minutes=5, job="other"))
    assert [r["run_id"] for r in history.runs("nightly")] == ["c", "b", "a"]
    assert [r["run_id"] for r in history.runs(limit=2)] == ["c", "b"]
    assert {job: r["run_id"] for job, r in history.last_runs().items()} == {"nightly": "c", "other": "d"}
    # manual runs do not count as fire times; skipped ones do
    assert history.last_scheduled_for("nightly") == T0 + timedelta(minutes=10)
    assert history.last_scheduled_for("never") is None


def test_abandoned_runs_are_closed_but_remote_ones_kept(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    history.start(RunRequest(JOB, "local", TriggerKind.SCHEDULE, T0), T0, None)
    history.start(RunRequest(JOB, "remote", TriggerKind.SCHEDULE, T0), T0, None)
    history.set_external_id("remote", "arn:task")
    assert history.close_abandoned(T0 + timedelta(hours=1), "daemon died") == 1
    assert history.get("local")["outcome"] == "cancelled"  # type: ignore[index]
    assert history.get("remote")["outcome"] == "running"  # type: ignore[index]


def test_a_run_records_its_supervisor_and_process_and_close_abandoned_keeps_what_keep_says(
    tmp_path: Path,
) -> None:
    import os

    from lib.procs import start_time

    history = History(tmp_path / "h.db")
    for run_id in ("followed", "gone", "gone2"):
        history.start(RunRequest(JOB, run_id, TriggerKind.SCHEDULE, T0), T0, None)
    history.set_process("followed", pid=os.getpid())
    rows = {row["run_id"]: row for row in history.running()}
    me = (os.getpid(), start_time(os.getpid()))
    assert (rows["gone"]["supervisor_pid"], rows["gone"]["supervisor_start"]) == me
    assert (rows["followed"]["process_pid"], rows["followed"]["process_start"]) == me
    assert rows["gone"]["process_pid"] is None
    closed = history.close_abandoned(T0, "daemon died", keep=lambda row: row["run_id"] == "followed")
    assert closed == 2
    assert history.get("followed")["outcome"] == "running"  # type: ignore[index]
    assert history.get("gone")["outcome"] == "cancelled"  # type: ignore[index]
    # A row is closed once: a second pass finds nothing more, and close_run says so.
    assert history.close_abandoned(T0, "again", keep=lambda row: True) == 0
    assert history.close_run("gone", T0, "cancelled", "again") == 0
    assert history.get("gone")["reason"] == "daemon died"  # type: ignore[index]


def test_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    errors: list[Exception] = []

    def write(prefix: str) -> None:
        history = History(path)
        try:
            for i in range(25):
                history.finish(record(f"{prefix}-{i}", minutes=i))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(History(path).runs(limit=None)) == 100
