"""CloudWatch Logs helpers: stream names, console links, and tail against moto over HTTP."""

from __future__ import annotations

import time

from lib.aws.clients import AwsClients
from lib.aws.logs import console_link, stream_name, tail, task_id

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


def test_tail_returns_the_last_lines_and_never_raises_for_missing_logs(aws_clients: AwsClients) -> None:
    logs = aws_clients.logs()
    group = aws_clients.settings.log_group
    assert tail(logs, group, "no/such/stream") == []  # the group does not exist either
    logs.create_log_group(logGroupName=group)
    assert tail(logs, group, "no/such/stream") == []
    logs.create_log_stream(logGroupName=group, logStreamName="dbt/dbt/t1")
    assert tail(logs, group, "dbt/dbt/t1") == []
    # AWS (and moto) drop events older than 14 days: stamp them now.
    now_ms = int(time.time() * 1000)
    events = [{"timestamp": now_ms - 100 + i, "message": f"line {i}\n"} for i in range(80)]
    events.append({"timestamp": now_ms, "message": "two\nlines"})
    logs.put_log_events(logGroupName=group, logStreamName="dbt/dbt/t1", logEvents=events)
    last = tail(logs, group, "dbt/dbt/t1", lines=5)
    assert last == ["line 77", "line 78", "line 79", "two", "lines"]
    assert len(tail(logs, group, "dbt/dbt/t1")) == 50
    assert tail(logs, group, "dbt/dbt/t1", lines=0) == []
