"""CloudWatch Logs for ECS runs: the stream a task writes to, its console link, its tail.

No boto3 import here: the client is passed in, so a report or a status table can
build console links on a daemon that never talks to AWS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

# GetLogEvents may answer with an empty page although older events exist (pages are
# cut by time range as well as by `limit` and 1 MB): a few backward pages find them.
_MAX_EMPTY_PAGES = 5


def task_id(task_arn: str) -> str:
    """The task id: the last segment of the ARN, in both the short
    (`…:task/<id>`) and the long (`…:task/<cluster>/<id>`) ARN formats."""
    return task_arn.rsplit("/", 1)[-1]


def stream_name(prefix: str, container: str, task_arn: str) -> str:
    """The awslogs stream of a task's container: `<prefix>/<container>/<task-id>`.

    That is the name the awslogs driver gives it when the task definition sets
    `awslogs-stream-prefix` (AWS: "Using the awslogs log driver")."""
    return f"{prefix}/{container}/{task_id(task_arn)}"


def _console_escape(value: str) -> str:
    # The console's own escaping in the URL fragment: percent-encode twice, then
    # write `%` as `$` ("/" → "%2F" → "%252F" → "$252F"). A once-encoded link opens
    # the log group list instead of the stream.
    return quote(quote(value, safe=""), safe="").replace("%", "$")


def console_link(region: str, group: str, stream: str) -> str:
    """The CloudWatch console page showing `stream` of log group `group`."""
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{_console_escape(group)}/log-events/{_console_escape(stream)}"
    )


def tail(logs_client: Any, group: str, stream: str, lines: int = 50) -> list[str]:
    """The last `lines` lines of a log stream, oldest first, without line ends.

    A missing group or stream (the task never started, so the awslogs driver never
    created it) gives [] — never an exception. Other AWS errors (throttling, no
    network, access denied) do raise: the caller decides what a failed read means.
    """
    if lines <= 0:
        return []
    kwargs: dict[str, Any] = {
        "logGroupName": group,
        "logStreamName": stream,
        "startFromHead": False,
        "limit": min(lines, 10_000),  # the API's maximum
    }
    for _ in range(_MAX_EMPTY_PAGES):
        try:
            page = logs_client.get_log_events(**kwargs)
        except logs_client.exceptions.ResourceNotFoundException:
            return []
        events = page.get("events") or []
        if events:
            # One event is usually one line (awslogs sends one per line), but a
            # message may hold several. A page of up to 1 MB is tail enough.
            text = [str(event.get("message", "")).rstrip("\r\n") for event in events]
            return [line for message in text for line in (message.splitlines() or [""])][-lines:]
        token = page.get("nextBackwardToken")
        if not token or token == kwargs.get("nextToken"):
            break
        kwargs["nextToken"] = token
    return []
