"""The notifier speaks every channel type jobs.yaml can name: settings as parsed from the
file reach each channel's sender. Teams and PagerDuty against the HTTP stand-in, e-mail
against aiosmtpd, SNS against the moto server (read back through an SQS subscriber)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from lib.aws.clients import AwsClients
from lib.config import parse_config
from lib.history import History
from lib.notify.dispatcher import build_notifier
from lib.notify.message import build_alert
from lib.secrets import SecretMasker
from tests.notify_helpers import HttpStandIn, failing_report, stand_in
from tests.test_notify_email import plain_smtp
from tests.test_notify_sns import _received, _topic_with_queue

__all__ = ["plain_smtp", "stand_in"]


def notifier_for(tmp_path: Path, channels: str, aws: str = "") -> Any:
    project = tmp_path / "proj"
    project.mkdir(exist_ok=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    jobs = f"jobs:\n  nightly: {{every: day, project_dir: {project}}}\n"
    data = yaml.safe_load(f"{aws}notifications:\n  channels:\n{channels}{jobs}")
    config = parse_config(data, base_dir=tmp_path, environ={"PD_KEY": "pd-routing-key-0123"})
    masker = SecretMasker(config.notifications.secret_values)
    return config, build_notifier(config, History(tmp_path / "history.db"), mask=masker)


def alert(event: str = "failed") -> Any:
    return build_alert(event, failing_report(), mask=SecretMasker())


def test_teams_and_pagerduty_with_their_settings(stand_in: HttpStandIn, tmp_path: Path) -> None:
    config, notifier = notifier_for(
        tmp_path,
        f"    teams: {{type: teams, url: '{stand_in.url}/workflow'}}\n"
        f"    oncall: {{type: pagerduty, routing_key: '${{PD_KEY}}', url: '{stand_in.url}/v2/enqueue'}}\n",
    )
    for _ in range(2):
        assert notifier.send(config.notifications.channels["teams"], alert()).ok
        assert notifier.send(config.notifications.channels["oncall"], alert()).ok
    teams, page = stand_in.requests[0], stand_in.requests[1]
    assert teams.path == "/workflow" and teams.json()["attachments"][0]["contentType"].endswith(
        "card.adaptive"
    )
    assert page.path == "/v2/enqueue"
    assert page.json()["routing_key"] == "pd-routing-key-0123" and page.json()["event_action"] == "trigger"


def test_email_with_its_settings(plain_smtp: Any, tmp_path: Path) -> None:
    inbox, port = plain_smtp
    config, notifier = notifier_for(
        tmp_path,
        f"    mail: {{type: email, host: 127.0.0.1, port: {port}, starttls: false,"
        " from: dbt@example.com, to: [data@example.com, oncall@example.com]}\n",
    )
    for _ in range(2):
        assert notifier.send(config.notifications.channels["mail"], alert()).ok
    assert len(inbox.messages) == 2


def test_sns_with_the_aws_sections_endpoint(aws_clients: AwsClients, tmp_path: Path) -> None:
    topic_arn, queue_url = _topic_with_queue(aws_clients, "routing-alerts")
    settings = aws_clients.settings
    config, notifier = notifier_for(
        tmp_path,
        f"    bus: {{type: sns, topic_arn: '{topic_arn}'}}\n",
        aws=f"aws: {{region: {settings.region}, endpoint_url: '{settings.endpoint_url}'}}\n",
    )
    for _ in range(2):
        assert notifier.send(config.notifications.channels["bus"], alert()).ok
    envelopes = _received(aws_clients, queue_url)
    assert len(envelopes) == 2 and json.loads(envelopes[0]["Message"])["event"] == "failed"
