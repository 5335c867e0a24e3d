"""run.log on a full disk: the child never blocks, timeouts still fire, the loss is noted."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lib.clock import SystemClock
from lib.models import Job, RunRequest, RunStatus, TriggerKind
from lib.runners.base import CancelToken, RunContext
from lib.runners.local import LocalRunner
from lib.runners.runlog import RunLog
from lib.secrets import SecretMasker
from lib.triggers import parse_every
from tests.disk_helpers import fill, small_disk  # noqa: F401

pytestmark = pytest.mark.timeout(60)  # the old pump died and the run hung: fail, do not hang

FAST_STOP = ((signal.SIGINT, 1.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0))
# ~3 MB of output: far more than the 1 MiB disk, and far more than a 64 KiB pipe.
LOUD = 'for i in $(seq 30000); do echo "line $i of a loud job that fills the disk ................"; done\n'


def run_local(disk: Path, script: str, run_id: str, **job: object):
    path = disk.parent / "script.sh"
    path.write_text(script)
    runner = LocalRunner(script=path, base_env={"PATH": os.environ["PATH"]}, stop_sequence=FAST_STOP)
    spec = Job(
        name="j",
        trigger=parse_every("1 hour", ZoneInfo("UTC")),
        timezone=ZoneInfo("UTC"),
        project_dir=disk.parent,
        **job,  # type: ignore[arg-type]
    )
    lines: list[str] = []
    ctx = RunContext(
        request=RunRequest(spec, run_id, TriggerKind.MANUAL),
        run_dir=disk / run_id,
        clock=SystemClock(),
        masker=SecretMasker(),
        on_line=lines.append,
        cancel=CancelToken(),
    )
    return runner.run(ctx), lines


def test_a_loud_run_on_a_full_disk_ends_and_says_what_was_lost(small_disk: Path) -> None:  # noqa: F811
    for run_id in ("r1", "r2"):
        outcome, lines = run_local(small_disk, LOUD + "echo done\n", run_id)
        assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
        assert lines[-1] == "done" and len(lines) == 30001  # the console got every line
        assert "line(s) of output could not be written to run.log: No space left on device" in outcome.reason
        assert os.statvfs(small_disk).f_bavail == 0


def test_the_timeout_fires_while_the_disk_is_full(small_disk: Path) -> None:  # noqa: F811
    fill(small_disk)
    for run_id in ("r1", "r2"):
        outcome, _ = run_local(small_disk, LOUD + "sleep 60\n", run_id, timeout=2.0)
        assert outcome.status is RunStatus.TIMED_OUT, outcome.reason


def test_the_note_is_written_once_space_returns(small_disk: Path) -> None:  # noqa: F811
    log_path = small_disk / "run.log"
    with RunLog(log_path) as log:
        log.write("first\n")
        filler = fill(small_disk)
        for n in range(3):
            log.write(f"lost {n} " + "x" * 8192 + "\n")
        assert log.dropped == 3
        filler.unlink()
        log.write("back\n")
        log.write("again\n")
    # The disk took the start of the first lost line (the rest of the file's last page).
    text = log_path.read_text().splitlines()
    assert text[0] == "first" and text[1].startswith("lost 0 x")
    assert text[2:] == [
        "[dbt-scheduler] 3 line(s) of output could not be written to run.log: No space left on device",
        "back",
        "again",
    ]


def test_a_read_only_disk_still_runs_the_job(small_disk: Path) -> None:  # noqa: F811
    (small_disk / "r1").mkdir()
    (small_disk / "r2").mkdir()
    os.system(f"mount -o remount,ro {small_disk}")
    try:
        for run_id in ("r1", "r2"):
            outcome, lines = run_local(small_disk, "echo hello\n", run_id)
            assert outcome.status is RunStatus.SUCCEEDED, outcome.reason
            assert lines == ["hello"]
            assert "could not be written to run.log: Read-only file system" in outcome.reason
    finally:
        os.system(f"mount -o remount,rw {small_disk}")
