"""The real daemon reloading a hostile or runner-changing jobs.yaml on SIGHUP.

An alias bomb written over the file is refused with one log line while the daemon keeps
running its job on the last good config; a reload that adds a docker job with its
`docker:` section rebuilds the runners, so the new job's runs reach the docker runner
(there is no Docker engine here: they fail to start, with the engine's own reason, and
not with "no runner 'docker' is configured").
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.daemon_helpers import history_rows, running_daemon, wait_for
from tests.dbt_helpers import copy_example
from tests.test_config_hostile import BILLION_LAUGHS


def config_text(project: Path, extra: str = "", top: str = "") -> str:
    return (
        f"{top}state_dir: state\n"
        "shutdown_grace: 20s\n"
        "jobs:\n"
        "  quick:\n"
        "    every: 2 seconds\n"
        f"    project_dir: {project}\n"
        f"    profiles_dir: {project}\n"
        "    commands: ['dbt seed']\n"
        f"{extra}"
    )


def succeeded(state: Path, job: str = "quick") -> int:
    return sum(r["job"] == job and r["outcome"] == "succeeded" for r in history_rows(state))


@pytest.mark.timeout(240)
def test_sighup_refuses_an_alias_bomb_and_rebuilds_runners_for_a_new_docker_job(tmp_path: Path) -> None:
    project = copy_example(tmp_path / "example")
    config, log_path, state = tmp_path / "jobs.yaml", tmp_path / "daemon.log", tmp_path / "state"
    config.write_text(config_text(project))
    with running_daemon(config, log_path) as daemon:
        wait_for(lambda: succeeded(state) >= 1, 90, "a first run")

        # 1. An alias bomb: refused in one line, the job goes on running.
        config.write_text(config_text(project, top=BILLION_LAUGHS))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the last good config" in log_path.read_text(), 30, "the refused reload")
        refused = [line for line in log_path.read_text().splitlines() if "budget exceeded" in line]
        assert len(refused) == 1 and "alias/size budget exceeded" in refused[0], refused
        before = succeeded(state)
        wait_for(lambda: succeeded(state) >= before + 2, 90, "two more runs on the last good config")

        # 2. A docker job and its `docker:` section: the runners are rebuilt on reload.
        docker_job = (
            "  boxed:\n"
            "    every: 2 seconds\n"
            "    runner: docker\n"
            f"    project_dir: {project}\n"
            "    commands: ['dbt seed']\n"
        )
        config.write_text(config_text(project, docker_job, top="docker: {engine: docker, image: 'nope:1'}\n"))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "runners rebuilt (docker, local)" in log_path.read_text(), 30, "the runners rebuilt")

        def boxed() -> list[dict]:
            return [r for r in history_rows(state) if r["job"] == "boxed" and r["outcome"] != "skipped"]

        wait_for(
            lambda: len(boxed()) >= 2 and all(r["finished_at"] for r in boxed()[:2]), 90, "two docker runs"
        )
        for run in boxed()[:2]:
            assert "no runner" not in (run["reason"] or ""), run
            assert run["outcome"] == "failed_to_start", run  # the docker CLI answers; no engine behind it

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    assert "Traceback" not in log_path.read_text()
