"""`scheduler.py notify test CHANNEL`, as a process, against a local stand-in for Slack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.dbt_helpers import REPO_ROOT
from tests.notify_helpers import HttpStandIn, stand_in

__all__ = ["stand_in"]


def run(tmp_path: Path, *args: str, url: str) -> subprocess.CompletedProcess[str]:
    project = tmp_path / "proj"
    project.mkdir(exist_ok=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "notifications:\n"
        "  channels:\n"
        '    chat: {type: slack, url: "${SLACK_URL}"}\n'
        "jobs:\n"
        f"  nightly: {{every: day, project_dir: {project}}}\n"
    )
    env = {**os.environ, "SLACK_URL": f"{url}/services/T0/B0/tokentoken"}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scheduler.py"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_notify_test_delivers_a_sample_and_exits_0(stand_in: HttpStandIn, tmp_path: Path) -> None:
    for _ in range(2):
        done = run(tmp_path, "notify", "test", "chat", url=stand_in.url)
        assert done.returncode == 0, done.stderr
        assert "chat (slack): delivered" in done.stdout
    assert len(stand_in.requests) == 2
    assert "not_null_orders_id" in stand_in.requests[0].body.decode()


def test_a_refusing_channel_exits_1_with_its_error_and_no_token(
    stand_in: HttpStandIn, tmp_path: Path
) -> None:
    stand_in.script = [(404, {}, b"no_service")]
    done = run(tmp_path, "notify", "test", "chat", url=stand_in.url)
    assert done.returncode == 1
    assert "404" in done.stderr and "tokentoken" not in done.stderr + done.stdout


def test_an_unknown_channel_exits_2_with_did_you_mean(stand_in: HttpStandIn, tmp_path: Path) -> None:
    done = run(tmp_path, "notify", "test", "caht", url=stand_in.url)
    assert done.returncode == 2
    assert "no channel named 'caht': did you mean 'chat'?" in done.stderr
    assert stand_in.requests == []
