"""healthchecks.io-style pings (healthchecks.io/docs/http_api/): `<url>/start` when a run
starts, `<url>` when it succeeds, `<url>/fail` when it fails, each with `rid=<uuid>` so
the service pairs a start with its end and measures the run. The body (up to 100 KB is
kept by healthchecks.io) carries the alert as text. The daemon's own heartbeat pings
`<url>` alone.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

from lib.notify.delivery import Deliverer, DeliveryResult
from lib.notify.message import Alert, plain_text

MAX_BODY = 100_000
_SUFFIX = {
    "started": "/start",
    "succeeded": "",
    "warned": "",
    "recovered": "",
    "failed": "/fail",
    "timed_out": "/fail",
    "failed_to_start": "/fail",
    "cancelled": "/fail",
}
# healthchecks.io accepts only a UUID as rid; a run id that is not one maps to a stable
# UUID (the same run id always gives the same rid, so start and end still pair).
_RID_NAMESPACE = uuid.UUID("6f1b3c1e-55a4-4c55-9a52-8f0e7f1c2d3a")


def run_uuid(run_id: str) -> str:
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(_RID_NAMESPACE, run_id))


def render(alert: Alert, url: str) -> tuple[str, bytes] | None:
    """(ping URL, body), or None for events that are not a run's start or end
    (skipped, late: the check's own schedule notices a missing ping)."""
    if alert.event not in _SUFFIX:
        return None
    ping = url.rstrip("/") + _SUFFIX[alert.event]
    if alert.run_id:
        ping += "?rid=" + quote(run_uuid(alert.run_id))
    body = plain_text(alert).encode()[:MAX_BODY]
    return ping, body


def send(
    alert: Alert, url: str, deliverer: Deliverer, channel: str = "healthchecks"
) -> DeliveryResult | None:
    rendered = render(alert, url)
    if rendered is None:
        return None
    ping, body = rendered
    return deliverer.post(channel, alert.event, ping, body, {"Content-Type": "text/plain; charset=utf-8"})


def heartbeat(url: str, deliverer: Deliverer, channel: str = "heartbeat") -> DeliveryResult:
    """One "I am alive" ping for the daemon itself."""
    return deliverer.post(channel, "heartbeat", url, None, method="GET")
