"""The HTTP channels against local stand-ins that check what the real service checks:
Slack's Block Kit limits, Teams' 28 KB, PagerDuty's event shape, a Standard Webhooks
receiver verifying the signature with the `standardwebhooks` package, healthchecks'
ping paths. Each channel sends twice, as a second run would."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from standardwebhooks import Webhook

from lib.notify.channels import healthchecks, pagerduty, slack, teams, webhook
from lib.notify.delivery import Deliverer
from lib.notify.message import EVENTS, Alert, build_alert
from lib.secrets import SecretMasker
from tests.notify_helpers import (
    SECRET,
    HttpStandIn,
    Received,
    deliverer,
    failing_alert,
    failing_report,
    stand_in,
)

__all__ = ["stand_in"]  # a pytest fixture


def huge_alert() -> Alert:
    """200 failing tests with 4,500-character messages and a 10,500-character reason: over
    every service's limit. (Words, not one long run of letters: lib/secrets.py's URL
    credentials pattern is slow on very long runs of scheme characters.)"""
    report = failing_report()
    report["nodes"] = [
        {
            "unique_id": f"test.shop.t{i}",
            "name": f"t{i}",
            "resource_type": "test",
            "status": "fail",
            "message": f"row {i} " + "too long " * 500,
            "failures": i,
            "skipped_because": [],
        }
        for i in range(200)
    ]
    report["reason"] = "reason " * 1500
    return build_alert("failed", report, mask=SecretMasker([SECRET]))


def slack_check(request: Received) -> str | None:
    """What Slack answers `invalid_blocks` / `invalid_payload` for."""
    body = request.json()
    if not isinstance(body.get("text"), str) or not body["text"]:
        return "missing_text"
    blocks = body["blocks"]
    if len(blocks) > 50:
        return f"invalid_blocks: {len(blocks)} blocks"
    for block in blocks:
        if block["type"] == "header" and len(block["text"]["text"]) > 150:
            return "invalid_blocks: header"
        if block["type"] == "section":
            if "text" in block and len(block["text"]["text"]) > 3000:
                return "invalid_blocks: section text"
            if len(block.get("fields", ())) > 10 or any(
                len(f["text"]) > 2000 for f in block.get("fields", ())
            ):
                return "invalid_blocks: fields"
    return None


def test_slack_message_names_the_failure_and_the_skipped_model(stand_in: HttpStandIn) -> None:
    stand_in.check = slack_check
    alert = failing_alert()
    send = deliverer()
    for _ in range(2):
        assert slack.send(alert, stand_in.url + "/services/T/B/X", send).status == "delivered"
    body = stand_in.requests[-1].json()
    text = json.dumps(body)
    assert body["blocks"][0]["text"]["text"] == "❌ nightly failed"
    assert "not_null_stg_orders_order_id" in text and "orders" in text and "customer_name_lengths" in text
    assert "orders-team@example.com" in text
    assert "<https://dbt.example.com/runs/nightly-20261202T020000Z|Run page>" in text
    assert SECRET not in text


def test_slack_stays_within_its_limits_and_says_what_it_cut(stand_in: HttpStandIn) -> None:
    stand_in.check = slack_check
    for _ in range(2):
        assert slack.send(huge_alert(), stand_in.url, deliverer()).status == "delivered"
    blocks = stand_in.requests[-1].json()["blocks"]
    assert len(blocks) == 50
    text = json.dumps(blocks)
    assert "more nodes not shown" in text and "chars cut)" in text


def test_the_slack_stand_in_rejects_an_oversized_message(stand_in: HttpStandIn) -> None:
    # The check above is able to fail: an unlimited message is refused with 400.
    stand_in.check = slack_check
    body = slack.render(huge_alert())
    body["blocks"] = body["blocks"] * 2
    result = deliverer().post("slack", "failed", stand_in.url, json.dumps(body).encode())
    assert result.status == "failed" and "invalid_blocks" in (result.error or "")


def teams_check(request: Received) -> str | None:
    if len(request.body) > 28 * 1024:
        return f"RequestEntityTooLarge: {len(request.body)} bytes"
    body = request.json()
    attachment = body["attachments"][0]
    if body["type"] != "message" or attachment["contentType"] != "application/vnd.microsoft.card.adaptive":
        return "not an Adaptive Card message"
    if attachment["content"]["type"] != "AdaptiveCard":
        return "not an AdaptiveCard"
    return None


@pytest.mark.parametrize("make", [failing_alert, huge_alert], ids=["failing", "huge"])
def test_teams_card_is_an_adaptive_card_under_28_kb(stand_in: HttpStandIn, make: Any) -> None:
    stand_in.check = teams_check
    stand_in.script = [(202, {}, b"")]  # Workflows answers 202 Accepted
    alert = make()
    for _ in range(2):
        assert teams.send(alert, stand_in.url + "/workflows/x", deliverer()).status == "delivered"
    text = stand_in.requests[-1].body.decode()
    if make is huge_alert:
        assert "more nodes not shown" in text
    else:
        assert "not_null_stg_orders_order_id" in text and "customer_name_lengths" in text


def test_pagerduty_triggers_per_failure_and_resolves_on_recovery(stand_in: HttpStandIn) -> None:
    stand_in.script = [(202, {}, b'{"status":"success","dedup_key":"x"}')]
    url = stand_in.url + "/v2/enqueue"
    send = deliverer()
    failed = failing_alert()
    again = build_alert("failed", failing_report(run_id="nightly-2"), mask=SecretMasker([SECRET]))
    for alert in (failed, again):
        assert pagerduty.send(alert, "R0UT1NG", send, url=url).status == "delivered"
    first, second = (r.json() for r in stand_in.requests)
    assert first["event_action"] == "trigger" and first["routing_key"] == "R0UT1NG"
    assert first["dedup_key"] == second["dedup_key"] == failed.failure_key
    assert first["payload"]["severity"] == "error" and first["payload"]["source"] == "dbt-scheduler"
    assert len(first["payload"]["summary"]) <= 1024
    recovered = build_alert(
        "recovered",
        failing_report(outcome="succeeded", nodes=[]),
        mask=SecretMasker(),
        resolves_key=failed.failure_key,
    )
    assert pagerduty.send(recovered, "R0UT1NG", send, url=url).status == "delivered"
    resolve = stand_in.requests[-1].json()
    assert resolve == {"routing_key": "R0UT1NG", "event_action": "resolve", "dedup_key": failed.failure_key}
    # Not an incident: nothing is sent.
    succeeded = build_alert("succeeded", failing_report(outcome="succeeded"), mask=SecretMasker())
    assert pagerduty.send(succeeded, "R0UT1NG", send, url=url) is None
    assert len(stand_in.requests) == 3


def test_pagerduty_huge_event_fits_512_kb() -> None:
    event = pagerduty.render(huge_alert(), "k")
    assert event is not None and len(json.dumps(event).encode()) <= 512 * 1024


def test_webhook_is_signed_as_standard_webhooks(stand_in: HttpStandIn) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    verifier = Webhook(secret)
    verified: list[Any] = []

    def check(request: Received) -> str | None:
        try:
            verified.append(verifier.verify(request.body, request.headers))
        except Exception as exc:
            return f"signature: {exc}"
        return None

    stand_in.check = check
    real_time = _RealClock()
    send = Deliverer(mask=SecretMasker([SECRET]), clock=real_time)
    for _ in range(2):
        assert webhook.send(failing_alert(), stand_in.url + "/dbt", send, secret=secret).status == "delivered"
    payload = verified[-1]
    assert payload["event"] == "failed" and payload["consecutive_failures"] == 2
    assert payload["job"] == "nightly" and payload["run_id"] == "nightly-20261202T020000Z"
    names = {n["name"]: n["status"] for n in payload["nodes"]}
    assert names["not_null_stg_orders_order_id"] == "fail" and names["orders"] == "skipped"
    assert not {"success", "pass"} & set(names.values())
    assert SECRET not in stand_in.requests[-1].body.decode()
    ids = {r.headers["webhook-id"] for r in stand_in.requests}
    assert len(ids) == 2  # one id per message (the same across a message's retries)


def test_webhook_retry_keeps_the_message_id(stand_in: HttpStandIn) -> None:
    stand_in.script = [(500, {}, b""), (200, {}, b"")]
    result = webhook.send(failing_alert(), stand_in.url, deliverer(), secret="plain-secret")
    assert (result.status, result.attempts) == ("delivered", 2)
    first, second = stand_in.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    # A secret without the whsec_ prefix is used as its UTF-8 bytes; the package agrees.
    stamp = datetime.fromtimestamp(int(second.headers["webhook-timestamp"]), UTC)
    expected = Webhook(b"plain-secret").sign(second.headers["webhook-id"], stamp, second.body.decode())
    assert second.headers["webhook-signature"] == expected


def test_webhook_without_a_secret_is_not_signed(stand_in: HttpStandIn) -> None:
    assert webhook.send(failing_alert(), stand_in.url, deliverer()).status == "delivered"
    assert "webhook-signature" not in {k.lower() for k in stand_in.requests[0].headers}


def test_healthchecks_pings_start_success_and_fail_with_a_run_uuid(stand_in: HttpStandIn) -> None:
    send = deliverer()
    base = stand_in.url + "/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
    for run in ("nightly-1", "nightly-2"):
        report = failing_report(run_id=run)
        for event in ("started", "failed", "succeeded"):
            alert = build_alert(event, report, mask=SecretMasker([SECRET]))
            assert healthchecks.send(alert, base, send).status == "delivered"
    paths = [urlsplit(r.path) for r in stand_in.requests]
    assert [p.path.rsplit("/", 1)[-1] for p in paths[:3]] == [
        "start",
        "fail",
        "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278",
    ]
    rids = [parse_qs(p.query)["rid"][0] for p in paths]
    assert len(set(rids[:3])) == 1 and len(set(rids[3:])) == 1 and rids[0] != rids[3]
    assert rids[0] == healthchecks.run_uuid("nightly-1")
    assert b"not_null_stg_orders_order_id" in stand_in.requests[1].body
    late = build_alert("late", failing_report(), mask=SecretMasker())
    assert healthchecks.send(late, base, send) is None


def test_heartbeat_is_a_plain_ping(stand_in: HttpStandIn) -> None:
    for _ in range(2):
        assert healthchecks.heartbeat(stand_in.url + "/ping/abc", deliverer()).status == "delivered"
    assert [(r.method, r.path) for r in stand_in.requests] == [("GET", "/ping/abc")] * 2


class _RealClock:
    """Standard Webhooks receivers reject timestamps over 5 minutes from their clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, event: Any) -> bool:
        raise AssertionError("no wait expected")


@pytest.mark.parametrize("event", EVENTS)
def test_every_event_renders_in_every_channel_within_limits(event: str) -> None:
    # A local run (a log path, not a link) that timed out before dbt reported anything.
    report = failing_report(outcome="timed_out", nodes=[], log_url=None, log_path="/var/lib/dbt/run.log")
    alert = build_alert(event, report, mask=SecretMasker([SECRET]))
    body = slack.render(alert)
    assert slack_check(Received("POST", "/", {}, json.dumps(body).encode())) is None
    assert "Log: `/var/lib/dbt/run.log`" in json.dumps(body, ensure_ascii=False)
    assert teams_check(Received("POST", "/", {}, json.dumps(teams.render(alert)).encode())) is None
    event_body = pagerduty.render(alert, "k")
    assert event_body is None or event_body["event_action"] in ("trigger", "resolve")
    assert json.loads(webhook.render(alert))["event"] == event
    assert SECRET not in json.dumps(body) + webhook.render(alert).decode()
