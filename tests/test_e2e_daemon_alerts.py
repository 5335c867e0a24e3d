"""Alerts from the real daemon: a job's runs reach the webhook as they end, the daemon's
heartbeat pings while it lives, a SIGHUP that adds a channel takes effect, and SIGTERM
still exits 0 with a dead endpoint holding a delivery. A stand-in run script replaces
dbt (tests/test_e2e_alerts.py runs real dbt through run-now)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.daemon_helpers import running_daemon, stand_in_project, wait_for
from tests.notify_helpers import HttpStandIn, stand_in

__all__ = ["stand_in"]

FAILING_RUN = 'echo "[run_commands] EXIT 1"\nexit 1\n'


def test_the_daemon_alerts_pings_reloads_and_stops_with_a_dead_endpoint(
    stand_in: HttpStandIn, tmp_path: Path
) -> None:
    project, script = stand_in_project(tmp_path, FAILING_RUN)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(16)  # takes connections, never answers
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/dead"
    config = tmp_path / "jobs.yaml"

    def write(channels: str, to: str) -> None:
        config.write_text(
            f"state_dir: {tmp_path / 'state'}\n"
            "shutdown_grace: 5s\n"
            f"heartbeat: {{url: '{stand_in.url}/ping/daemon', every: 1s}}\n"
            "notifications:\n"
            f"  channels:\n{channels}"
            f"  rules:\n    - {{on: [failed], to: {to}, repeat_every: 1s}}\n"
            f"jobs:\n  tick: {{every: 2 seconds, project_dir: {project}}}\n"
        )

    write(f"    hook: {{type: webhook, url: '{stand_in.url}/hook'}}\n", "[hook]")

    def hooks(path: str) -> list[dict]:
        return [r.json() for r in stand_in.requests if r.path == path]

    try:
        with running_daemon(
            config, tmp_path / "daemon.log", {"DBT_SCHEDULER_RUN_COMMANDS": str(script)}
        ) as daemon:
            wait_for(lambda: len(hooks("/hook")) >= 2, 60, "two failure alerts from the daemon")
            assert {h["event"] for h in hooks("/hook")} == {"failed"} and hooks("/hook")[0]["job"] == "tick"
            assert sum(r.path == "/ping/daemon" for r in stand_in.requests) >= 1

            # SIGHUP with a second, dead channel in the rule: the live one keeps receiving.
            write(
                f"    hook: {{type: webhook, url: '{stand_in.url}/hook'}}\n"
                f"    dead: {{type: webhook, url: '{dead_url}'}}\n",
                "[hook, dead]",
            )
            daemon.send_signal(signal.SIGHUP)
            seen = len(hooks("/hook"))
            wait_for(lambda: len(hooks("/hook")) >= seen + 2, 60, "alerts after the reload")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
    finally:
        dead.close()
    log = (tmp_path / "daemon.log").read_text()
    assert "reloaded" in log and "Traceback" not in log
