"""CloudWatch Logs helpers: stream names, console links, and reading a whole stream against moto over HTTP."""

from __future__ import annotations

import time
from typing import Any

from lib.aws.clients import AwsClients
from lib.aws.logs import console_link, stream_lines, stream_name, task_id

SHORT_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/0123abcd4567"
LONG_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/dbt/0123abcd4567"


def test_task_id_and_stream_name_in_both_arn_formats() -> None:
    assert task_id(SHORT_ARN) == task_id(LONG_ARN) == "0123abcd4567"
    assert stream_name("dbt", "dbt", LONG_ARN) == "dbt/dbt/0123abcd4567"
    assert stream_name("ecs", "worker", SHORT_ARN) == "ecs/worker/0123abcd4567"


def test_console_link_escapes_as_the_console_does() -> None:
    # Written out by hand: "/" → %2F → %252F → $252F; the console's own links look so.
    link = console_link("eu-west-1", "/ecs/dbt", "dbt/dbt/0123abcd4567")
    assert link == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#logsV2:log-groups/log-group/$252Fecs$252Fdbt"
        "/log-events/dbt$252Fdbt$252F0123abcd4567"
    )
    # Other specials get the same double escaping (a Lambda-style stream name).
    assert console_link("us-east-1", "g", "2026/01/02/[$LATEST]ab").endswith(
        "/log-events/2026$252F01$252F02$252F$255B$2524LATEST$255Dab"
    )


def put_lines(logs: Any, group: str, stream: str, messages: list[str]) -> None:
    """PutLogEvents in batches of at most 10,000 events, as AWS requires, stamped now:
    AWS (and moto) drop events older than 14 days."""
    now_ms = int(time.time() * 1000) - len(messages)
    for start in range(0, len(messages), 10_000):
        batch = messages[start : start + 10_000]
        events = [{"timestamp": now_ms + start + i, "message": m} for i, m in enumerate(batch)]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def test_stream_lines_never_raises_for_missing_logs(aws_clients: AwsClients) -> None:
    logs = aws_clients.logs()
    group = aws_clients.settings.log_group
    assert list(stream_lines(logs, group, "no/such/stream")) == []  # the group does not exist either
    logs.create_log_group(logGroupName=group)
    assert list(stream_lines(logs, group, "no/such/stream")) == []
    logs.create_log_stream(logGroupName=group, logStreamName="dbt/dbt/t1")
    assert list(stream_lines(logs, group, "dbt/dbt/t1")) == []


def test_stream_lines_reads_every_page_until_the_token_repeats(aws_clients: AwsClients) -> None:
    logs = aws_clients.logs()
    group = aws_clients.settings.log_group
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="dbt/dbt/t2")
    put_lines(logs, group, "dbt/dbt/t2", [f"line {i}\n" for i in range(10_600)] + ["two\nlines"])
    calls: list[dict[str, Any]] = []
    logs.meta.events.register(
        "before-parameter-build.logs.GetLogEvents", lambda params, **_: calls.append(dict(params))
    )

    lines = list(stream_lines(logs, group, "dbt/dbt/t2"))

    assert lines == [f"line {i}" for i in range(10_600)] + ["two", "lines"]
    # moto pages by 10,000 events: the head, the other 601, then the same token back.
    assert len(calls) == 3
    assert all(call["startFromHead"] is True for call in calls)
    assert "nextToken" not in calls[0] and calls[1]["nextToken"] != calls[2]["nextToken"]
