"""Amazon SNS: publish through the one client factory (lib/aws/clients.py).

SNS limits (docs.aws.amazon.com/sns/latest/api/API_Publish.html): the message at most
256 KB (262,144 bytes, UTF-8), the subject at most 100 characters of printable ASCII
without line breaks. The message is the webhook's JSON (one schema for machines on the
topic); `event`, `job` and `outcome` are message attributes, for subscription filters.
"""

from __future__ import annotations

import json
from typing import Any

from lib.notify.channels import webhook
from lib.notify.delivery import Attempt, Deliverer, DeliveryResult
from lib.notify.message import Alert, truncate

MAX_BYTES = 256 * 1024
SUBJECT = 100
_RETRYABLE = {"Throttling", "ThrottlingException", "InternalError", "InternalFailure", "ServiceUnavailable"}


def _subject(title: str) -> str:
    # ASCII only: SNS rejects anything else in a subject; the emoji goes first.
    text = "".join(ch for ch in title if 32 <= ord(ch) < 127).strip()
    return truncate(text or "dbt-scheduler alert", SUBJECT)


def render(alert: Alert, topic_arn: str) -> dict[str, Any]:
    """Publish's arguments, the message cut to 256 KB by leaving out nodes (the count
    left out is in `nodes_not_shown`)."""
    data = webhook.payload(alert)
    while len(json.dumps(data).encode()) > MAX_BYTES and data["nodes"]:
        data["nodes"].pop()
        data["nodes_not_shown"] = data.get("nodes_not_shown", 0) + 1
    text = json.dumps(data)
    if len(text.encode()) > MAX_BYTES:  # a report too large even without nodes
        text = json.dumps({k: data.get(k) for k in ("event", "job", "run_id", "outcome", "reason")})
    attributes = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in (("event", alert.event), ("job", alert.job), ("outcome", alert.outcome or ""))
        if value
    }
    return {
        "TopicArn": topic_arn,
        "Subject": _subject(alert.title),
        "Message": text,
        "MessageAttributes": attributes,
    }


def send(
    alert: Alert, topic_arn: str, clients: Any, deliverer: Deliverer, channel: str = "sns"
) -> DeliveryResult:
    """Publishes with `clients.client("sns")`; throttling and AWS-side errors are retried."""
    request = render(alert, topic_arn)

    def attempt() -> Attempt:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            clients.client("sns").publish(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            return Attempt(ok=False, error=f"SNS {code}: {message}", retry=code in _RETRYABLE)
        except BotoCoreError as exc:
            return Attempt(ok=False, error=f"SNS: {exc}", retry=True)
        return Attempt(ok=True)

    return deliverer.run(channel, alert.event, attempt)
