"""`notifications:`, `heartbeat:` and the jobs' `notify`, `deadline`, `heartbeat` in jobs.yaml."""

from __future__ import annotations

import json
import textwrap
from datetime import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from lib.config import parse_config
from lib.config.schema import render
from lib.errors import ConfigError

ISSUE_EXAMPLE = """
notifications:
  channels:
    data_slack: {type: slack, url: "${SLACK_WEBHOOK_URL}"}
    oncall:     {type: pagerduty, routing_key: "${PD_ROUTING_KEY}"}
    mail:       {type: email, host: smtp.example.com, port: 587, starttls: true, username: dbt,
                 password: "${SMTP_PASSWORD}", from: dbt@example.com, to: [data@example.com]}
    teams:      {type: teams, url: "${TEAMS_WORKFLOW_URL}"}
    bus:        {type: sns, topic_arn: "arn:aws:sns:eu-west-1:123456789012:dbt"}
    hook:       {type: webhook, url: "https://example.com/dbt", secret: "${HOOK_SECRET}"}
  rules:
    - {jobs: ["*"], on: [failed, timed_out, failed_to_start, recovered], to: [data_slack]}
    - {jobs: ["nightly*"], on: [failed], to: [oncall], after: 2}
heartbeat: {url: "https://hc-ping.com/${HC_DAEMON}", every: 2m}
jobs:
  nightly:
    every: day at 02:00
    project_dir: PROJECT
    notify: [mail]
    deadline: "07:00"
    heartbeat: "https://hc-ping.com/5f3c"
"""
ENVIRON = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/xyzsecret",
    "PD_ROUTING_KEY": "pd-routing-key-123",
    "SMTP_PASSWORD": "smtp-pass-456",
    "TEAMS_WORKFLOW_URL": "https://prod.westeurope.logic.azure.com/workflows/abc",
    "HOOK_SECRET": "whsec_c2VjcmV0",
    "HC_DAEMON": "0000-1111",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "dbt_project.yml").write_text("name: p\n")
    return folder


def parse(text: str, project: Path, tmp_path: Path, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    data = yaml.safe_load(textwrap.dedent(text).replace("PROJECT", str(project)))
    return parse_config(data, base_dir=tmp_path, environ=ENVIRON if environ is None else environ)


def errors(text: str, project: Path, tmp_path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse(text, project, tmp_path, environ)
    return [str(issue) for issue in raised.value.issues]


def test_the_issue_example_parses_with_every_reference_resolved(project: Path, tmp_path: Path) -> None:
    config = parse(ISSUE_EXAMPLE, project, tmp_path)
    channels = config.notifications.channels
    assert set(channels) == {"data_slack", "oncall", "mail", "teams", "bus", "hook"}
    assert channels["data_slack"].settings["url"] == ENVIRON["SLACK_WEBHOOK_URL"]
    assert (
        channels["mail"].settings["to"] == ("data@example.com",) and channels["mail"].settings["port"] == 587
    )
    first, second = config.notifications.rules
    assert first.on == (
        "failed",
        "timed_out",
        "failed_to_start",
        "recovered",
    )  # `on:` read as YAML 1.1's true
    assert second.jobs == ("nightly*",) and second.after == 2 and second.repeat_every == 86400
    job = config.jobs["nightly"]
    assert (
        job.notify == ("mail",) and job.deadline == time(7, 0) and job.heartbeat == "https://hc-ping.com/5f3c"
    )
    assert config.heartbeat is not None and config.heartbeat.url == "https://hc-ping.com/0000-1111"
    assert config.heartbeat.every == 120
    # Every value brought in from the environment is known, to be masked.
    assert set(config.notifications.secret_values) == set(ENVIRON.values())


def test_a_missing_variable_is_a_located_error(project: Path, tmp_path: Path) -> None:
    environ = {k: v for k, v in ENVIRON.items() if k != "PD_ROUTING_KEY"}
    [message] = errors(ISSUE_EXAMPLE, project, tmp_path, environ)
    assert "notifications.channels.oncall.routing_key: ${PD_ROUTING_KEY} is not set" in message


def test_channel_types_references_and_events_get_did_you_mean(project: Path, tmp_path: Path) -> None:
    text = f"""
    notifications:
      channels:
        chat: {{type: slak, url: "https://hooks.slack.com/x"}}
        hook: {{type: webhook, url: "https://example.com/x", colour: red}}
      rules:
        - {{on: [faild], to: [hook]}}
        - {{on: [failed], to: [hok]}}
    jobs:
      nightly: {{every: day, project_dir: {project}, notify: [chta], deadline: "7am"}}
    """
    found = errors(text, project, tmp_path)
    assert any("channels.chat.type: 'slak' is not a channel type: did you mean 'slack'?" in m for m in found)
    assert any("channels.hook.colour: unknown key" in m for m in found)
    assert any("rules[0].on: [0] 'faild' is not an event: did you mean 'failed'?" in m for m in found)
    assert any("rules[1].to[0]: no channel named 'hok': did you mean 'hook'?" in m for m in found)
    assert any("jobs.nightly.deadline: must be a time of day" in m for m in found)
    # The job's bad deadline does not hide its bad reference.
    assert any("jobs.nightly.notify[0]: no channel named 'chta': did you mean 'chat'?" in m for m in found)


def test_a_job_naming_an_unknown_channel_is_refused(project: Path, tmp_path: Path) -> None:
    text = f"""
    notifications:
      channels:
        chat: {{type: slack, url: "https://hooks.slack.com/x"}}
    jobs:
      nightly: {{every: day, project_dir: {project}, notify: chta}}
    """
    [message] = errors(text, project, tmp_path)
    assert "jobs.nightly.notify[0]: no channel named 'chta': did you mean 'chat'? (channels: chat)" in message


def test_required_channel_settings_are_named(project: Path, tmp_path: Path) -> None:
    text = f"""
    notifications:
      channels:
        mail: {{type: email, host: smtp.example.com}}
    jobs:
      nightly: {{every: day, project_dir: {project}}}
    """
    found = errors(text, project, tmp_path)
    assert any("channels.mail.from: missing" in m for m in found)
    assert any("channels.mail.to: missing" in m for m in found)


def test_the_schema_takes_the_issue_example_and_refuses_an_unknown_channel_setting(
    project: Path, tmp_path: Path
) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(render()))
    data = yaml.safe_load(ISSUE_EXAMPLE.replace("PROJECT", str(project)))
    # An editor reads YAML 1.2, where `on` is a string: as the language server sees the file.
    for rule in data["notifications"]["rules"]:
        rule["on"] = rule.pop(True)
    assert list(validator.iter_errors(data)) == []
    data["notifications"]["channels"]["hook"]["colour"] = "red"
    assert list(validator.iter_errors(data))
