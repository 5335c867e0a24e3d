"""Slack incoming webhook, Block Kit.

Slack's limits (api.slack.com/reference/block-kit): at most 50 blocks a message, 3000
characters a section's text, 10 fields of 2000 characters, 150 for a header; a message
over them is rejected with `invalid_blocks`. `text` is the fallback notifications and
screen readers show.
"""

from __future__ import annotations

import json
from typing import Any

from lib.notify.delivery import Deliverer, DeliveryResult
from lib.notify.message import Alert, facts, node_line, truncate

MAX_BLOCKS = 50
SECTION_TEXT = 3000
FIELD_TEXT = 2000
MAX_FIELDS = 10
HEADER_TEXT = 150
FALLBACK_TEXT = 3000


def _escape(text: str) -> str:
    # Slack mrkdwn: only &, < and > need escaping (they start links and mentions).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}}


def _node_text(node: Any) -> str:
    text = f"*{_escape(node_line(node))}*"
    if node.owners:
        text += f"\nowner: {_escape(', '.join(node.owners))}"
    if node.message:
        # The code fence must survive truncation, so the message is cut first.
        room = SECTION_TEXT - len(text) - 10
        text += f"\n```{_escape(truncate(node.message, max(room, 20)))}```"
    return text


def _link(label: str, url: str) -> str:
    # A local log path is not a link Slack can open: shown as text instead.
    if url.startswith(("http://", "https://")):
        return f"<{url}|{label}>"
    return f"{label}: `{_escape(url)}`"


def render(alert: Alert) -> dict[str, Any]:
    """The webhook body: header, reason, facts as fields, one section per problem node,
    links. Nodes past the 50-block limit are replaced by one line saying how many."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(alert.title, HEADER_TEXT)}}
    ]
    if alert.reason:
        blocks.append(_section(_escape(alert.reason)))
    fields = [
        {"type": "mrkdwn", "text": truncate(f"*{label}*\n{_escape(value)}", FIELD_TEXT)}
        for label, value in facts(alert)
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields[:MAX_FIELDS]})
    if len(fields) > MAX_FIELDS:
        extra = "\n".join(field["text"].replace("\n", ": ", 1) for field in fields[MAX_FIELDS:])
        blocks.append(_section(extra))
    links = [_link(label, url) for label, url in (("Log", alert.log_url), ("Run page", alert.run_url)) if url]
    tail = [{"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]}] if links else []
    room = MAX_BLOCKS - len(blocks) - len(tail)
    nodes = list(alert.nodes)
    if len(nodes) > room:
        shown, hidden = nodes[: room - 1], len(nodes) - (room - 1)
    else:
        shown, hidden = nodes, 0
    blocks += [_section(_node_text(node)) for node in shown]
    if hidden:
        blocks.append(_section(f"…and {hidden} more nodes not shown (see the run's report)"))
    blocks += tail
    fallback = alert.title + (f": {alert.reason}" if alert.reason else "")
    return {"text": truncate(_escape(fallback), FALLBACK_TEXT), "blocks": blocks}


def send(alert: Alert, url: str, deliverer: Deliverer, channel: str = "slack") -> DeliveryResult:
    body = json.dumps(render(alert)).encode()
    return deliverer.post(channel, alert.event, url, body, {"Content-Type": "application/json"})
