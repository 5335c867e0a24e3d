"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is
received"), which takes a message with an Adaptive Card attachment. The old Office 365
connectors (MessageCard) are retired. Teams rejects a message over about 28 KB.
"""

from __future__ import annotations

import json
from typing import Any

from lib.notify.delivery import Deliverer, DeliveryResult
from lib.notify.message import Alert, facts, node_line, truncate

MAX_BYTES = 28 * 1024
NODE_MESSAGE = 1000


def _card(alert: Alert, shown: int, message_limit: int) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": alert.title, "weight": "Bolder", "size": "Medium", "wrap": True}
    ]
    if alert.reason:
        body.append({"type": "TextBlock", "text": truncate(alert.reason, 1000), "wrap": True})
    body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts(alert)]})
    for node in alert.nodes[:shown]:
        items: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": node_line(node), "weight": "Bolder", "wrap": True}
        ]
        if node.owners:
            items.append({"type": "TextBlock", "text": "owner: " + ", ".join(node.owners), "wrap": True})
        if node.message:
            text = truncate(node.message, message_limit)
            items.append({"type": "TextBlock", "text": text, "wrap": True, "fontType": "Monospace"})
        body.append({"type": "Container", "separator": True, "items": items})
    hidden = len(alert.nodes) - shown
    if hidden:
        body.append({"type": "TextBlock", "text": f"…and {hidden} more nodes not shown", "wrap": True})
    actions = [
        {"type": "Action.OpenUrl", "title": title, "url": url}
        for title, url in (("Log", alert.log_url), ("Run page", alert.run_url))
        if url and url.startswith(("http://", "https://"))
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def render(alert: Alert) -> dict[str, Any]:
    """The message, at most 28 KB: node messages are shortened first, then nodes are
    left out from the end (with a line saying how many)."""
    shown = len(alert.nodes)
    limit = NODE_MESSAGE
    while True:
        message = _card(alert, shown, limit)
        if len(json.dumps(message).encode()) <= MAX_BYTES or (shown == 0 and limit <= 100):
            return message
        if limit > 200:
            limit //= 2
        elif shown > 0:
            shown -= 1
        else:
            limit = 100


def send(alert: Alert, url: str, deliverer: Deliverer, channel: str = "teams") -> DeliveryResult:
    body = json.dumps(render(alert)).encode()
    return deliverer.post(channel, alert.event, url, body, {"Content-Type": "application/json"})
