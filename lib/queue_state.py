"""The daemon's run queue as a small file in state_dir, for `status` (another process) to read.

The daemon writes `<state_dir>/queue.json` whenever its queue of runs waiting for a
free slot changes (not on every tick): which job, its fire time and since when it
waits. The file is replaced atomically (write a temp file, `os.replace`), so a reader
never sees half of it. It is only believed while the daemon lock is held: a file left
by a daemon that was killed describes a queue that no longer exists.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("dbt_scheduler")

FILE = "queue.json"


@dataclass(frozen=True)
class QueuedEntry:
    """One run waiting for a slot: what `status` shows."""

    job: str
    run_id: str
    scheduled_for: datetime | None
    queued_at: datetime


def publish(state_dir: Path, entries: list[QueuedEntry], max_parallel: int, now: datetime) -> None:
    """Replace the queue file atomically; a failed write (full disk) is logged, never raised."""
    path = state_dir / FILE
    tmp = path.with_name(f".{FILE}.tmp")
    body = {
        "pid": os.getpid(),
        "written_at": now.isoformat(),
        "max_parallel": max_parallel,
        "queued": [
            {
                "job": e.job,
                "run_id": e.run_id,
                "scheduled_for": e.scheduled_for.isoformat() if e.scheduled_for else None,
                "queued_at": e.queued_at.isoformat(),
            }
            for e in entries
        ],
    }
    try:
        tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # the queue still works; only `status` loses sight of it
        log.warning("could not write %s (%s): `status` will not show the run queue", path, exc)


def read_live(state_dir: Path) -> list[QueuedEntry] | None:
    """The running daemon's queue, oldest first; None when no daemon holds state_dir's lock."""
    if not _daemon_lock_held(state_dir):
        return None
    try:
        body: dict[str, Any] = json.loads((state_dir / FILE).read_text(encoding="utf-8"))
        return [
            QueuedEntry(
                job=item["job"],
                run_id=item["run_id"],
                scheduled_for=datetime.fromisoformat(item["scheduled_for"])
                if item["scheduled_for"]
                else None,
                queued_at=datetime.fromisoformat(item["queued_at"]),
            )
            for item in body["queued"]
        ]
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or by another version
        return []


def _daemon_lock_held(state_dir: Path) -> bool:
    """True when a daemon holds `daemon.lock`, probed with a shared flock.

    A shared lock conflicts with the daemon's exclusive one and, unlike taking the
    lock (lib/locks.py), never rewrites the holder line in the file.
    """
    try:
        fd = os.open(state_dir / "daemon.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
