"""CloudWatch Logs for ECS runs: the stream a task writes to, its console link, its lines.

No boto3 import here: the client is passed in, so a report or a status table can
build console links on a daemon that never talks to AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

# A bound on GetLogEvents calls for one stream (10 GB and more at 1 MB a page).
_MAX_PAGES = 10_000


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


def stream_lines(logs_client: Any, group: str, stream: str, *, max_pages: int = _MAX_PAGES) -> Iterator[str]:
    """Every line of a log stream, oldest first, without line ends, one page at a time.

    Reads GetLogEvents from the head (`startFromHead=True`) and follows
    `nextForwardToken` until the answer repeats the token it was given: that is how
    CloudWatch says "end of stream" (AWS: GetLogEvents, nextForwardToken). An empty
    page is not the end — pages are cut by time range as well as by 10,000 events
    and 1 MB. Only one page is held at a time, so the caller decides how much to keep.

    A missing group or stream (the task never started, so the awslogs driver never
    created it) gives no lines — never an exception. Other AWS errors (throttling, no
    network, access denied) do raise, possibly after some lines: the caller decides
    what a failed read means. `max_pages` only guards against an endpoint that never
    repeats its token.
    """
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    for _ in range(max_pages):
        try:
            page = logs_client.get_log_events(**kwargs)
        except logs_client.exceptions.ResourceNotFoundException:
            return
        for event in page.get("events") or []:
            # One event is usually one line (awslogs sends one per line), but a
            # message may hold several.
            message = str(event.get("message", "")).rstrip("\r\n")
            yield from message.splitlines() or [""]
        token = page.get("nextForwardToken")
        if not token or token == kwargs.get("nextToken"):
            return
        kwargs["nextToken"] = token
