"""Which `running` rows a restarted daemon leaves, stops or closes; stopping a real group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from lib import procs
from lib.orphans import ORPHAN_GONE, ORPHAN_NOT_STOPPED, ORPHAN_REASON, Fate, Liveness, fate, stop_orphan

ME = 100


def row(**kw: Any) -> dict[str, Any]:
    base = {
        "job": "nightly",
        "supervisor_pid": 7,
        "supervisor_start": 70,
        "process_pid": 8,
        "process_start": 80,
    }
    return base | kw


def liveness(
    alive: set[tuple[int, int]] = frozenset(), groups: set[int] = frozenset(), locked: bool = False
) -> Liveness:  # type: ignore[assignment]
    return Liveness(
        lock_held=lambda job: locked,
        same_process=lambda pid, start: (pid, start) in alive,
        group_alive=lambda pgid: pgid in groups,
        me=ME,
    )


def test_a_run_whose_supervisor_lives_is_followed_even_with_its_process_alive() -> None:
    # a `run-now` in another shell: its own scheduler records the real outcome
    assert fate(row(), liveness(alive={(7, 70), (8, 80)}, locked=True)) is Fate.FOLLOWED


def test_a_reused_supervisor_pid_does_not_count() -> None:
    assert fate(row(), liveness(alive={(7, 71)})) is Fate.ABANDONED


def test_the_restarted_daemon_itself_is_not_a_live_supervisor() -> None:
    assert fate(row(supervisor_pid=ME, supervisor_start=1), liveness(alive={(ME, 1)})) is Fate.ABANDONED


def test_a_live_script_of_a_dead_supervisor_is_an_orphan() -> None:
    assert fate(row(), liveness(alive={(8, 80)}, locked=True)) is Fate.ORPHAN


def test_a_group_outliving_its_script_is_an_orphan_only_while_it_holds_the_job_lock() -> None:
    assert fate(row(), liveness(groups={8}, locked=True)) is Fate.ORPHAN
    # without the lock, the pgid may be someone else's new group: never signal it
    assert fate(row(), liveness(groups={8}, locked=False)) is Fate.ABANDONED


def test_a_held_job_lock_keeps_a_row_whose_processes_are_unknown() -> None:
    assert fate(row(supervisor_pid=None, process_pid=None), liveness(locked=True)) is Fate.FOLLOWED
    assert fate(row(supervisor_pid=None, process_pid=None), liveness()) is Fate.ABANDONED


def test_stop_orphan_names_a_group_that_would_not_stop() -> None:
    reason = stop_orphan(row(), (), stop_group=lambda pgid, start, seq: (True, "SIGINT"))
    assert reason == ORPHAN_REASON.format(signal="SIGINT") and "stopped (SIGINT)" in reason
    assert stop_orphan(row(), (), stop_group=lambda pgid, start, seq: (True, None)) == ORPHAN_GONE
    reason = stop_orphan(row(), (), stop_group=lambda pgid, start, seq: (False, "SIGKILL"))
    assert reason == ORPHAN_NOT_STOPPED.format(pgid=8) and "ps -g 8" in reason


def test_stop_group_sends_sigint_to_the_script_then_kills_the_group() -> None:
    # A real group whose leader and its child ignore SIGINT and SIGTERM: only SIGKILL ends them.
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "print('ready', flush=True); time.sleep(300)\n"
    )
    for _ in (1, 2):
        leader = subprocess.Popen(
            [sys.executable, "-c", stubborn], start_new_session=True, stdout=subprocess.PIPE
        )
        try:
            assert leader.stdout is not None and leader.stdout.readline() == b"ready\n"  # signals ignored now
            started = procs.start_time(leader.pid)
            assert procs.same_process(leader.pid, started)
            assert not procs.same_process(leader.pid, (started or 0) + 1)
            seq = ((signal.SIGINT, 0.3), (signal.SIGTERM, 0.3), (signal.SIGKILL, 5.0))
            assert procs.stop_group(leader.pid, started, seq) == (True, "SIGKILL")
            leader.wait(timeout=5)
            assert leader.returncode == -signal.SIGKILL
            assert not procs.group_alive(leader.pid)
        finally:
            if leader.poll() is None:
                os.killpg(leader.pid, signal.SIGKILL)
                leader.wait()


def test_a_script_dying_on_sigint_without_passing_it_on_gets_its_group_sigint_once() -> None:
    # What an orphaned run_commands.sh does: its SIGINT trap prints to a pipe nobody
    # reads and dies of SIGPIPE. Here the leader exits at SIGINT; its child counts
    # the SIGINTs it gets and exits on the first.
    script = (
        "import signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, sys, time\\n"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\\n"
        "print(1, flush=True); time.sleep(300)'], stdout=sys.stdout)\n"
        "time.sleep(300)\n"
    )
    for _ in (1, 2):
        leader = subprocess.Popen(
            [sys.executable, "-c", script], start_new_session=True, stdout=subprocess.PIPE
        )
        try:
            assert leader.stdout is not None and leader.stdout.readline() == b"1\n"  # the child is ready
            started = procs.start_time(leader.pid)
            seq = ((signal.SIGINT, 10.0), (signal.SIGTERM, 0.2), (signal.SIGKILL, 5.0))
            assert procs.stop_group(leader.pid, started, seq) == (True, "SIGINT")
            assert leader.wait(timeout=5) == -signal.SIGINT
        finally:
            if leader.poll() is None:
                os.killpg(leader.pid, signal.SIGKILL)
                leader.wait()


def test_stop_group_leaves_a_reused_pid_alone() -> None:
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        started = procs.start_time(other.pid)
        # recorded start time of an earlier process with the same pid: SIGINT is not sent
        seq = ((signal.SIGINT, 0.2),)
        # its old group is gone (a pgid in use is not handed out as a pid); nothing is sent
        assert procs.stop_group(other.pid, (started or 0) - 1, seq) == (True, None)
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
