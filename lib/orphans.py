"""Runs a killed scheduler left behind, found by a restarted daemon in history.

A `running` row without an external id is one of three things at start-up:

- **followed**: its supervising scheduler (a `run-now` in another shell, recorded
  by pid + start time) is alive, or a live process holds the job's lock: left alone,
  it ends with its real outcome.
- **orphan**: its supervisor is gone but its own process group (bash + dbt, whose
  script pid and start time history recorded) still runs, holding the job lock it
  inherited: stopped through the SIGINT path, then recorded `cancelled`.
- **abandoned**: nothing of it is left: recorded `cancelled` at once.

Liveness checks are injected, so the decision is unit-tested without processes.
"""

from __future__ import annotations

import enum
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib import procs

ORPHAN_REASON = (
    "cancelled: the scheduler was killed while this run went on; "
    "its process group was stopped ({signal}) when the scheduler restarted"
)
ORPHAN_CONTAINER = (
    "cancelled: the scheduler was killed while this run went on; "
    "its container {name} was stopped and removed when the scheduler restarted"
)
ORPHAN_GONE = (
    "cancelled: the scheduler was killed while this run went on; it ended unsupervised before the restart"
)
ORPHAN_NOT_STOPPED = (
    "cancelled: the scheduler was killed while this run went on; at restart its process "
    "group did not stop even on SIGKILL (pgid {pgid}): check it with `ps -g {pgid}`"
)


class Fate(enum.Enum):
    FOLLOWED = "followed"
    ORPHAN = "orphan"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Liveness:
    """How to ask the system about a recorded process; tests hand in their own."""

    lock_held: Callable[[str], bool]  # job name -> its job lock is held by a live process
    same_process: Callable[[int | None, int | None], bool] = procs.same_process
    group_alive: Callable[[int], bool] = procs.group_alive
    me: int = field(default_factory=os.getpid)


def fate(row: dict[str, Any], live: Liveness) -> Fate:
    """What a restarted daemon does with one `running` row (without an external id)."""
    supervisor = row.get("supervisor_pid")
    if supervisor != live.me and live.same_process(supervisor, row.get("supervisor_start")):
        return Fate.FOLLOWED
    pid = row.get("process_pid")
    if pid is not None:
        if live.same_process(pid, row.get("process_start")):
            return Fate.ORPHAN
        # The script is gone but dbt may live on in its group. A pgid is not given to a
        # new group while the old one lives, but may be after: only with the job lock
        # still held (the orphan inherited it) is the group taken to be the run's.
        if live.group_alive(pid) and live.lock_held(row["job"]):
            return Fate.ORPHAN
    if live.lock_held(row["job"]):
        return Fate.FOLLOWED
    return Fate.ABANDONED


def stop_orphan(
    row: dict[str, Any],
    sequence: Sequence[tuple[signal.Signals, float]],
    stop_group: Callable[
        [int, int | None, Sequence[tuple[signal.Signals, float]]], tuple[bool, str | None]
    ] = procs.stop_group,
) -> str:
    """Stop an orphan's process group through the SIGINT path; the reason to record,
    naming the signal it stopped on (SIGINT: dbt cancelled its queries)."""
    pgid = int(row["process_pid"])
    gone, by = stop_group(pgid, row.get("process_start"), sequence)
    if not gone:
        return ORPHAN_NOT_STOPPED.format(pgid=pgid)
    return ORPHAN_REASON.format(signal=by) if by else ORPHAN_GONE
