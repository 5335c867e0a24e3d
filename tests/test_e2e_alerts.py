"""Alerts end to end: real dbt on DuckDB through `scheduler.py run-now`, real HTTP stand-ins
for Slack and a signed webhook.

The example project with a duplicate order (an error test upstream fails, the marts
downstream are skipped) runs twice: the first failure reaches both channels naming the
failed test and a skipped model; the second, identical, is held back. With the seed
fixed the third run succeeds and `recovered` goes out, saying how many runs failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.dbt_helpers import EXAMPLE_DIR, break_upstream, copy_example
from tests.notify_helpers import HttpStandIn, stand_in

__all__ = ["stand_in"]
REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cw=="
pytestmark = pytest.mark.timeout(600)


def run_now(config: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env.update(
        {
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "SLACK_URL": f"{url}/slack/T0/B0/slacktoken",
            "HOOK_SECRET": SECRET,
        }
    )
    return subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), *(args or ("run-now", "shop"))],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def sent(server: HttpStandIn, prefix: str) -> list[Any]:
    """What one channel received, in order (each channel sends on its own thread)."""
    return [request for request in server.requests if request.path.startswith(prefix)]


def test_failure_repeat_and_recovery_reach_slack_and_the_webhook(
    stand_in: HttpStandIn, tmp_path: Path
) -> None:
    project = copy_example(tmp_path / "shop")
    break_upstream(project)
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "notifications:\n"
        "  channels:\n"
        '    chat: {type: slack, url: "${SLACK_URL}"}\n'
        f'    hook: {{type: webhook, url: "{stand_in.url}/hook", secret: "${{HOOK_SECRET}}"}}\n'
        "  rules:\n"
        "    - {on: [failed, recovered], to: [chat, hook]}\n"
        "jobs:\n"
        "  shop:\n"
        "    schedule: '0 6 * * *'\n"
        f"    project_dir: {project}\n"
    )
    first = run_now(config, stand_in.url)
    assert first.returncode == 1, first.stderr
    assert sorted(r.path for r in stand_in.requests) == ["/hook", "/slack/T0/B0/slacktoken"]
    slack_text = json.dumps(sent(stand_in, "/slack")[0].json())
    assert "unique_stg_orders_order_id" in slack_text and "order_totals" in slack_text
    [hook] = sent(stand_in, "/hook")
    payload = Webhook(SECRET).verify(hook.body, hook.headers)  # signed as Standard Webhooks
    assert payload["event"] == "failed" and payload["consecutive_failures"] == 1
    failed = {n["name"]: n for n in payload["nodes"]}
    assert failed["unique_stg_orders_order_id"]["status"] == "fail"
    assert any(n["status"] == "skipped" and n["name"] == "order_totals" for n in payload["nodes"])

    second = run_now(config, stand_in.url)
    assert second.returncode == 1
    assert len(stand_in.requests) == 2  # the same failure: held back

    (project / "seeds" / "raw_orders.csv").write_text((EXAMPLE_DIR / "seeds" / "raw_orders.csv").read_text())
    third = run_now(config, stand_in.url)
    assert third.returncode == 0, third.stderr
    last_hook, last_slack = sent(stand_in, "/hook")[-1], sent(stand_in, "/slack")[-1]
    recovered = Webhook(SECRET).verify(last_hook.body, last_hook.headers)
    assert recovered["event"] == "recovered"
    assert "*Failed runs*\\n2" in json.dumps(last_slack.json())  # Slack says how many failed

    history = run_now(config, stand_in.url, "history", "shop", "--json")
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert [len(r["deliveries"]) for r in rows] == [2, 0, 2]
    # The Slack URL's token is a secret (it came from ${SLACK_URL}): in no output, no file.
    for text in (first.stdout, first.stderr, second.stdout, third.stdout, history.stdout):
        assert "slacktoken" not in text
