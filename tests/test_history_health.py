"""history.db that is corrupt, replaced under a running scheduler, or busy."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from lib.history import History, HistoryCorrupt
from tests.test_e2e_dbt import cli
from tests.test_history import record


def history_with_rows(path: Path, count: int = 300) -> History:
    history = History(path)
    for n in range(count):
        history.finish(record(f"r{n:04d}", minutes=n))
    history.close()
    # Checkpoint into the main file, so the bytes overwritten below hold rows.
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return History(path)


def corrupt(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as out:
        out.seek(size // 2)
        out.write(b"\xde\xad\xbe\xef" * 1024)


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.yaml"
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    path.write_text(
        f"state_dir: state\njobs:\n  j:\n    schedule: '0 6 * * *'\n    project_dir: {tmp_path}\n"
    )
    return path


def test_a_corrupt_history_stops_status_and_run_until_repaired(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "state" / "history.db"
    history_with_rows(db)
    corrupt(db)
    for command in ("status", "run", "history", "status"):
        done = cli(config, command)
        assert done.returncode == 2, done.stdout + done.stderr
        errors = done.stderr.strip().splitlines()
        assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
        assert errors[0].startswith(f"error: history {db} is corrupt (")
        assert errors[0].endswith("run `scheduler.py repair-history` to move it aside and start a new one")
    done = cli(config, "repair-history")
    assert done.returncode == 0, done.stderr
    aside = list(db.parent.glob("history.db.corrupt-*Z"))
    assert len(aside) == 1 and str(aside[0]) in done.stdout
    for _ in range(2):
        done = cli(config, "status")
        assert done.returncode == 0, done.stderr
    assert History(db).runs() == []


def test_check_passes_a_good_or_missing_history(tmp_path: Path) -> None:
    History(tmp_path / "none.db").check()
    history_with_rows(tmp_path / "good.db", count=5).check()
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(HistoryCorrupt, match="file is not a database"):
        History(bad).check()


def test_a_history_replaced_under_the_writer_is_detected_and_the_new_file_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "history.db"
    history = History(db)
    history.finish(record("before"))
    for n, how in enumerate(("deleted", "replaced")):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            sqlite3.connect(db).close()  # an empty file put there by someone else
        with caplog.at_level(logging.ERROR, logger="dbt_scheduler"):
            history.finish(record(f"after-{n}"))
            history.finish(record(f"later-{n}"))
        assert {r["run_id"] for r in History(db).runs()} == {f"after-{n}", f"later-{n}"}
        replaced = [m for m in caplog.messages if "deleted or replaced" in m]
        assert len(replaced) == n + 1, caplog.messages


def test_a_busy_history_is_waited_for_then_written(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    history = History(db, timeout=0.3)
    history.finish(record("first"))
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            history.finish(record("during"))
    finally:
        other.execute("COMMIT")
        other.close()
    for run_id in ("after", "again"):
        history.finish(record(run_id))
    assert {r["run_id"] for r in History(db).runs()} == {"first", "after", "again"}


def test_a_run_whose_start_cannot_be_recorded_still_runs_and_is_recorded_at_its_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import signal

    from lib.clock import SystemClock
    from lib.execution import RunService
    from lib.models import RunStatus, TriggerKind
    from lib.runners.local import LocalRunner
    from tests.test_local_runner import make_job

    script = tmp_path / "script.sh"
    script.write_text("echo hello\n")
    stop = ((signal.SIGINT, 1.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0))
    db = tmp_path / "state" / "history.db"
    service = RunService(
        state_dir=tmp_path / "state",
        runners={
            "local": LocalRunner(script=script, base_env={"PATH": os.environ["PATH"]}, stop_sequence=stop)
        },
        history=History(db, timeout=0.2),
        clock=SystemClock(),
    )
    service.history.schema_version()
    job = make_job(tmp_path)
    for attempt in range(2):
        holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the timeout

        def let_go(line: str, holder: sqlite3.Connection = holder) -> None:
            if holder.in_transaction:
                holder.execute("COMMIT")

        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="dbt_scheduler"):
            result = service.execute(service.new_request(job, TriggerKind.MANUAL), on_line=let_go)
        holder.close()
        assert result.outcome.status is RunStatus.SUCCEEDED, result.outcome.reason
        errors = [m for m in caplog.messages if "could not record the start" in m]
        assert len(errors) == 1 and "is busy: another process holds its lock" in errors[0], caplog.messages
        assert len(History(db).runs()) == attempt + 1, caplog.messages
        assert History(db).get(result.run_id)["outcome"] == "succeeded"


def test_status_says_plainly_that_state_dir_is_full_or_read_only(tmp_path: Path) -> None:
    import subprocess

    from tests.disk_helpers import fill

    disk = tmp_path / "state"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        config = write_config(tmp_path)
        assert cli(config, "status").returncode == 0  # creates history.db
        filler = fill(disk)
        for _ in range(2):
            done = cli(config, "status")
            assert done.returncode == 0, done.stderr
            assert f"warning: state_dir {disk} is full (0 bytes free)" in done.stdout
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        done = cli(config, "status")
        assert f"warning: state_dir {disk} is read-only" in done.stdout, done.stdout + done.stderr
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert "warning" not in cli(config, "status").stdout
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
