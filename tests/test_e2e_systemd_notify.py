"""The real daemon speaking systemd's notify protocol to a socket that stands in for PID 1.

`scheduler.py run` is started as systemd starts a `Type=notify` service with
`WatchdogSec=`: NOTIFY_SOCKET names a bound datagram socket, WATCHDOG_USEC a (short)
timeout. READY comes once the daemon is up, the loop pings while jobs run, SIGHUP is
bracketed by RELOADING and READY (a refused config too), SIGTERM sends STOPPING and
the daemon exits 0; every message comes from the daemon's own pid (NotifyAccess=main)
and no job sees the variables. A SIGABRT (what the watchdog sends a hung daemon) leaves
every thread's traceback in the log.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_helpers import history_rows, running_daemon, stand_in_project, wait_for
from tests.systemd_helpers import NotifySocket

WATCHDOG_USEC = 400_000  # pings every 0.2 s

RUN_SCRIPT = """printf '%s|%s\\n' "${NOTIFY_SOCKET-unset}" "${WATCHDOG_USEC-unset}" >> "$SEEN"
echo "[run_commands] EXIT 0"
"""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path, reading=True)
    yield sock
    sock.close()


def config_text(project: Path, jobs: int = 1, broken: bool = False) -> str:
    text = "state_dir: state\nshutdown_grace: 10s\njobs:\n"
    for i in range(jobs):
        text += f"  j{i}:\n    every: 2 seconds\n    project_dir: {project}\n"
    return text + ("  bad:\n    every: 2 fortnights\n" if broken else "")


def succeeded(state: Path) -> int:
    return sum(r["outcome"] == "succeeded" for r in history_rows(state))


@pytest.mark.timeout(180)
def test_ready_watchdog_reload_and_stop_reach_the_notify_socket(
    tmp_path: Path, listener: NotifySocket
) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    config, log_path, state = tmp_path / "jobs.yaml", tmp_path / "daemon.log", tmp_path / "state"
    seen = tmp_path / "seen_by_jobs"
    config.write_text(config_text(project))
    env = {
        "DBT_SCHEDULER_RUN_COMMANDS": str(script),
        "SEEN": str(seen),
        "NOTIFY_SOCKET": listener.env,
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    with running_daemon(config, log_path, env=env) as daemon:
        ready = listener.wait_for("READY=1", 30)
        assert listener.received[ready]["STATUS"].startswith("scheduling 1 job(s), state_dir ")

        # The watchdog: pinged again and again while runs go on (two runs at least).
        first = listener.wait_for("WATCHDOG=1", 10, since=ready)
        wait_for(lambda: succeeded(state) >= 2, 60, "two runs")
        pinged = time.monotonic()
        at = first
        for _ in range(5):
            at = listener.wait_for("WATCHDOG=1", 5, since=at + 1)
        assert time.monotonic() - pinged < 5  # five pings of 0.2 s: not one per minute

        # SIGHUP with a second job: RELOADING, then READY with the new job count.
        config.write_text(config_text(project, jobs=2))
        daemon.send_signal(signal.SIGHUP)
        reloading = listener.wait_for("RELOADING=1", 30, since=at)
        assert int(listener.received[reloading]["MONOTONIC_USEC"]) > 0
        again = listener.wait_for("READY=1", 30, since=reloading)
        assert listener.received[again]["STATUS"].startswith("scheduling 2 job(s)")

        # SIGHUP with a broken file: refused, and still READY (the old config runs on).
        config.write_text(config_text(project, jobs=2, broken=True))
        daemon.send_signal(signal.SIGHUP)
        refused = listener.wait_for("RELOADING=1", 30, since=again + 1)
        kept = listener.wait_for("READY=1", 30, since=refused)
        assert listener.received[kept]["STATUS"].startswith("reload failed, the last good config kept")
        listener.wait_for("WATCHDOG=1", 5, since=kept)  # and the loop goes on feeding it
        before = succeeded(state)
        wait_for(lambda: succeeded(state) >= before + 2, 60, "two more runs after the refused reload")

        daemon.send_signal(signal.SIGTERM)
        stopping = listener.wait_for("STOPPING=1", 30, since=kept)
        assert daemon.wait(timeout=60) == 0

    listener.drain()
    assert set(listener.pids) == {daemon.pid}  # NotifyAccess=main: all from the main process
    assert not any("WATCHDOG" in m for m in listener.received[stopping + 1 :])  # none once stopping
    seen_lines = seen.read_text().splitlines()
    assert len(seen_lines) >= 4 and set(seen_lines) == {"unset|unset"}  # the jobs were not told
    log = log_path.read_text()
    assert "Traceback" not in log and "systemd: cannot notify" not in log


@pytest.mark.timeout(120)
def test_the_watchdogs_sigabrt_leaves_every_threads_traceback_in_the_log(
    tmp_path: Path, listener: NotifySocket
) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    config, log_path = tmp_path / "jobs.yaml", tmp_path / "daemon.log"
    config.write_text(config_text(project))
    env = {
        "DBT_SCHEDULER_RUN_COMMANDS": str(script),
        "SEEN": str(tmp_path / "seen"),
        "NOTIFY_SOCKET": listener.env,
    }
    for _ in range(2):  # once more after the abort: the restarted daemon starts cleanly
        with running_daemon(config, log_path, env=env) as daemon:
            listener.wait_for("READY=1", 30, since=len(listener.received))
            daemon.send_signal(signal.SIGABRT)  # systemd's WatchdogSignal= default
            assert daemon.wait(timeout=30) == -signal.SIGABRT
        log = log_path.read_text()
        assert "Fatal Python error: Aborted" in log
        assert "lib/daemon.py" in log  # the loop's thread, where a hang would show
