"""SNS through the one client factory against a moto server over HTTP; an SQS queue
subscribed to the topic reads each message back, as a real subscriber would."""

from __future__ import annotations

import json
from typing import Any

from lib.aws.clients import AwsClients
from lib.notify.channels import sns
from tests.notify_helpers import SECRET, deliverer, failing_alert
from tests.test_notify_channels import huge_alert


def _topic_with_queue(clients: AwsClients, name: str) -> tuple[str, str]:
    topic_arn = clients.client("sns").create_topic(Name=name)["TopicArn"]
    sqs = clients.client("sqs")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    queue_arn = attributes["Attributes"]["QueueArn"]
    clients.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url


def _received(clients: AwsClients, queue_url: str) -> list[dict[str, Any]]:
    messages = clients.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_sns_publishes_the_alert_a_subscriber_reads_back(aws_clients: AwsClients) -> None:
    topic_arn, queue_url = _topic_with_queue(aws_clients, f"{aws_clients.settings.cluster}-alerts")
    for _ in range(2):
        assert sns.send(failing_alert(), topic_arn, aws_clients, deliverer()).status == "delivered"
    envelopes = _received(aws_clients, queue_url)
    assert len(envelopes) == 2
    envelope = envelopes[-1]
    assert envelope["Subject"] == "nightly failed"
    assert envelope["MessageAttributes"]["event"]["Value"] == "failed"
    message = json.loads(envelope["Message"])
    names = {n["name"]: n["status"] for n in message["nodes"]}
    assert names["not_null_stg_orders_order_id"] == "fail" and names["orders"] == "skipped"
    assert message["event"] == "failed" and SECRET not in envelope["Message"]


def test_sns_huge_alert_stays_within_256_kb_and_a_100_char_subject(aws_clients: AwsClients) -> None:
    topic_arn, queue_url = _topic_with_queue(aws_clients, f"{aws_clients.settings.cluster}-huge")
    alert = huge_alert()
    request = sns.render(alert, topic_arn)
    assert len(request["Message"].encode()) <= 256 * 1024 and len(request["Subject"]) <= 100
    assert json.loads(request["Message"])["nodes_not_shown"] > 0
    for _ in range(2):
        assert sns.send(alert, topic_arn, aws_clients, deliverer()).status == "delivered"
    assert len(_received(aws_clients, queue_url)) == 2


def test_sns_unknown_topic_fails_with_the_service_error(aws_clients: AwsClients) -> None:
    missing = f"arn:aws:sns:{aws_clients.settings.region}:123456789012:no-such-topic"
    result = sns.send(failing_alert(), missing, aws_clients, deliverer())
    assert (result.status, result.attempts) == ("failed", 1)
    assert result.error and result.error.startswith("sns: SNS NotFound")
