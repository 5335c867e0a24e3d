"""Who a recorded pid is, and stopping a process group this process did not start.

History records a run's supervising scheduler and the run's own script by pid *and*
start time (field 22 of /proc/<pid>/stat, in clock ticks since boot): a pid is reused
after its process dies, and only the pair names one process. A restarted daemon uses
this to tell an orphaned run (its scheduler was killed, its bash + dbt go on) from a
run another live scheduler (a `run-now` in another shell) still follows.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None  # field 22 is the 20th from 3


def same_process(pid: int | None, started: int | None) -> bool:
    """True when `pid` is alive and is the process that started at `started` (not a reuse)."""
    return pid is not None and started is not None and start_time(pid) == started


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None when no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    return data[data.rindex(b")") + 2 :].split()


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is left in process group `pgid`.

    Read from /proc rather than `killpg(pgid, 0)`, which also answers for zombies: an
    orphan's exited children are reaped by whoever PID 1 is, and on some boxes never.
    """
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            # field 3 is the state, field 5 the process group
            if fields is not None and fields[0] != b"Z" and int(fields[2]) == pgid:
                return True
    return False


def stop_group(pid: int, started: int | None, sequence: Sequence[tuple[signal.Signals, float]]) -> bool:
    """Stop an orphaned run the way LocalRunner stops its own: SIGINT to the script alone
    (it passes Ctrl-C on to dbt once, and dbt cancels its queries), its grace, then
    SIGTERM and SIGKILL to its whole process group (pgid = pid: its own session).

    SIGINT goes only when `pid` is still the process that started at `started` (not a
    reused pid); the group signals only while the group exists, and a pgid is not
    given to a new process while its group lives. Returns True when the group is gone.
    """
    for sig, grace in sequence:
        try:
            if sig == signal.SIGINT:
                if same_process(pid, started):
                    os.kill(pid, sig)
            elif group_alive(pid):
                os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        if _group_gone(pid, grace):
            return True
    return not group_alive(pid)


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait up to `timeout` s for group `pgid` to empty. Polls: a group has no pidfd, and
    these processes are not our children, so no wait() tells us."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True
