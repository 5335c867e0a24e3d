"""PagerDuty Events API v2 (developer.pagerduty.com/docs/events-api-v2/trigger-events).

A failure triggers an incident whose `dedup_key` is the job plus its set of failing
nodes, so the same failure again joins the open incident and a different failure opens
its own; `recovered` sends `resolve` with the key of the failure it ends. `summary` is
limited to 1024 characters and the whole event to 512 KB.
"""

from __future__ import annotations

import json
from typing import Any

from lib.notify.delivery import Deliverer, DeliveryResult
from lib.notify.message import Alert, node_line, truncate

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY = 1024
MAX_BYTES = 512 * 1024
SEVERITY = {"failed": "error", "timed_out": "error", "failed_to_start": "critical", "late": "warning"}


def render(alert: Alert, routing_key: str) -> dict[str, Any] | None:
    """The event to enqueue, or None for events PagerDuty is not told about (started,
    succeeded…: they are not incidents). `late` triggers under `<job>-late`."""
    if alert.event == "recovered":
        if not alert.failure_key:
            return None
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert.failure_key}
    if alert.event not in SEVERITY:
        return None
    key = alert.failure_key if alert.event != "late" else f"{alert.job}-late"
    summary = alert.title + (f": {alert.reason}" if alert.reason else "")
    details: dict[str, Any] = {
        "run_id": alert.run_id,
        "outcome": alert.outcome,
        "trigger": alert.trigger,
        "triggered_by": alert.triggered_by,
        "started_at": alert.started_at,
        "duration_s": alert.duration_s,
        "git_sha": alert.git_sha,
        "counts": dict(alert.counts),
        "consecutive_failures": alert.consecutive_failures,
        "owners": list(alert.owners),
        "suppressed": alert.suppressed,
        "nodes": [node_line(n) + (f"\n{n.message}" if n.message else "") for n in alert.nodes],
    }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": truncate(summary.replace("\n", " "), SUMMARY),
            "source": "dbt-scheduler",
            "severity": SEVERITY[alert.event],
            "component": alert.job,
            "group": alert.target or "dbt",
            "class": alert.event,
            "custom_details": details,
        },
    }
    if alert.started_at:
        event["payload"]["timestamp"] = alert.started_at
    links = [{"href": u, "text": t} for t, u in (("Log", alert.log_url), ("Run page", alert.run_url))]
    links = [link for link in links if link["href"] and link["href"].startswith(("http://", "https://"))]
    if links:
        event["links"] = links
    while len(json.dumps(event).encode()) > MAX_BYTES and details["nodes"]:
        details["nodes"].pop()
        details["nodes_not_shown"] = details.get("nodes_not_shown", 0) + 1
    return event


def send(
    alert: Alert, routing_key: str, deliverer: Deliverer, url: str = EVENTS_URL, channel: str = "pagerduty"
) -> DeliveryResult | None:
    event = render(alert, routing_key)
    if event is None:
        return None
    body = json.dumps(event).encode()
    return deliverer.post(channel, alert.event, url, body, {"Content-Type": "application/json"})
