"""A generic webhook: JSON with the report.json fields (nodes limited to the non-passing
ones) plus `event` and `consecutive_failures`, signed as Standard Webhooks
(standardwebhooks.com) when a secret is set:

    webhook-id: <unique message id>   webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">

A secret written `whsec_<base64>` is the spec's form (its base64 part is the key);
any other secret is used as UTF-8 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

from lib.clock import Clock
from lib.notify.delivery import Deliverer, DeliveryResult
from lib.notify.message import Alert


def payload(alert: Alert) -> dict[str, Any]:
    """The body as data: the masked report fields, then the alert's own."""
    data = dict(alert.report)
    data["nodes"] = list(data.get("nodes") or [])
    data.update(
        {
            "event": alert.event,
            "consecutive_failures": alert.consecutive_failures,
            "suppressed": alert.suppressed,
            "owners": list(alert.owners),
            "failure_key": alert.failure_key,
            "run_url": alert.run_url,
        }
    )
    if alert.event == "recovered":
        data["broken_for_s"] = alert.broken_for_s
        data["failed_runs"] = alert.failed_runs
    return data


def render(alert: Alert) -> bytes:
    return json.dumps(payload(alert), separators=(",", ":")).encode()


def secret_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :] + "==")
    return secret.encode()


def signature_headers(secret: str, body: bytes, msg_id: str, timestamp: int) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def send(
    alert: Alert,
    url: str,
    deliverer: Deliverer,
    secret: str | None = None,
    channel: str = "webhook",
    clock: Clock | None = None,
) -> DeliveryResult:
    """POSTs the payload; with a secret, each attempt is signed afresh with the same
    `webhook-id` (receivers de-duplicate retries by it) and the attempt's timestamp
    (receivers reject old ones)."""
    body = render(alert)
    msg_id = f"msg_{uuid.uuid4().hex}"
    clock = clock or deliverer.clock

    def headers() -> dict[str, str]:
        if not secret:
            return {}
        return signature_headers(secret, body, msg_id, int(clock.now().timestamp()))

    return deliverer.post(
        channel,
        alert.event,
        url,
        body,
        {"Content-Type": "application/json"},
        headers_for_attempt=headers,
    )
