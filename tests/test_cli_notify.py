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


def test_history_json_and_status_show_the_deliveries(tmp_path: Path, stand_in: HttpStandIn) -> None:
    from datetime import UTC, datetime

    from lib.history import History
    from lib.models import RunOutcome, RunRecord, RunStatus, TriggerKind

    run(tmp_path, "validate", url=stand_in.url)  # writes jobs.yaml
    history = History(tmp_path / "state" / "history.db")
    now = datetime.now(UTC)
    history.finish(RunRecord("nightly", "r1", TriggerKind.SCHEDULE, RunOutcome(RunStatus.FAILED), now, now))
    for status, error in (("delivered", None), ("failed", "chat: HTTP 500 from the endpoint")):
        history.record_delivery(
            run_id="r1",
            job="nightly",
            channel="chat",
            event="failed",
            status=status,
            attempts=4,
            error=error,
            at=now,
        )
    done = run(tmp_path, "history", "nightly", "--json", url=stand_in.url)
    assert done.returncode == 0, done.stderr
    import json

    [row] = json.loads(done.stdout)
    assert [(d["channel"], d["status"]) for d in row["deliveries"]] == [
        ("chat", "delivered"),
        ("chat", "failed"),
    ]
    status = run(tmp_path, "status", url=stand_in.url)
    assert "alert not delivered: failed of nightly to chat" in status.stdout
    assert "HTTP 500 from the endpoint" in status.stdout
