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


def stop_group(
    pid: int, started: int | None, sequence: Sequence[tuple[signal.Signals, float]]
) -> tuple[bool, str | None]:
    """Stop an orphaned run the way LocalRunner stops its own: SIGINT to the script alone
    (it passes Ctrl-C on to dbt once, and dbt cancels its queries), its grace, then
    SIGTERM and SIGKILL to its whole process group (pgid = pid: its own session).

    An orphan's script differs in one way: its output pipe has no reader any more, so
    the line run_commands.sh prints on SIGINT, before it passes the signal on, kills
    it with SIGPIPE (measured: dbt then never got SIGINT and ran until SIGTERM). So
    when the script is gone and the group still lives within the SIGINT grace, dbt
    gets the SIGINT itself, once — the script can no longer send it a second one.

    SIGINT goes to the script only when `pid` is still the process that started at
    `started` (not a reused pid); group signals only while the group exists (a pgid is
    not given to a new process while its group lives). Returns (the group is gone, the
    name of the signal it went on, or None when it was gone before any was sent).
    """
    sent: str | None = None
    now_started = start_time(pid)
    if now_started is not None and now_started != started:
        # The pid was reused, so its old group is gone (a pid in use as a pgid is not
        # handed out): the group there now is someone else's.
        return True, None
    for sig, grace in sequence:
        try:
            if sig == signal.SIGINT:
                if same_process(pid, started):
                    os.kill(pid, sig)
                    sent = sig.name
                    deadline = time.monotonic() + grace
                    if _script_gone(pid, started, grace) and group_alive(pid):
                        os.killpg(pid, sig)  # the script died without passing it on
                    grace = max(0.0, deadline - time.monotonic())
                elif group_alive(pid):
                    os.killpg(pid, sig)  # the script is long gone: dbt never had SIGINT
                    sent = sig.name
            elif group_alive(pid):
                os.killpg(pid, sig)
                sent = sig.name
        except ProcessLookupError:
            pass
        if _group_gone(pid, grace):
            return True, sent
    return not group_alive(pid), sent


def _script_gone(pid: int, started: int | None, timeout: float) -> bool:
    """Wait up to `timeout` s for the script to exit (or be a zombie); True when it has."""
    deadline = time.monotonic() + timeout
    while True:
        fields = _stat_fields(pid)
        if fields is None or fields[0] == b"Z" or int(fields[19]) != started:
            return True
        if time.monotonic() >= deadline or not group_alive(pid):
            return False
        time.sleep(0.1)


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait up to `timeout` s for group `pgid` to empty. Polls: a group has no pidfd, and
    these processes are not our children, so no wait() tells us."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True
