"""dbt's console output (run.log) → the errors dbt printed, for when its artifacts say nothing.

dbt writes no run_results.json when it fails before running a node (a bad profile,
a compilation error, a database it cannot connect to: dbt-core #5625), and dbt 1.11
leaves a source whose freshness query raised out of sources.json. What went wrong
is then only in the text dbt printed, e.g.

    14:24:10  Encountered an error:
    Runtime Error
      Database Error
        250001 (08001): Failed to connect to DB: … Could not connect to Snowflake backend …

Pure functions over lines (colour codes are ignored). Both of dbt's log formats are
read: text (what run_commands.sh runs by default) and `--log-format json`, one JSON
object a line whose `info.msg` holds the same text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lib.markers import parse_marker

# A line dbt starts itself: "14:24:10  Encountered an error:". Lines without the
# time are the continuation of a multi-line message.
_TIMESTAMP = re.compile(r"^\d{2}:\d{2}:\d{2}(?:\.\d+)?\s+")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# "Runtime Error", "Database Error in model x (models/x.sql)": a line that only names
# the kind of error; what follows it says what the error is.
_ERROR_HEADING = re.compile(r"^[A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*)* Error(?: in \S+ \S+ \([^)]*\))?:?$")
# The per-node errors dbt repeats at the end of a run ("Completed with 1 error").
_NODE_ERROR = re.compile(
    r"^(?P<kind>[A-Z][A-Za-z ]*Error) in (?P<type>[a-z_]+) (?P<name>\S+) \((?P<path>[^)]*)\)$"
)
# "3 of 4 ERROR freshness of raw.missing ....... [ERROR in 0.07s]" (a query that
# raised; a stale source says "ERROR STALE").
_FRESHNESS_ERROR = re.compile(r"^\d+ of \d+ ERROR freshness of (?P<name>\S+?)(?: \.+|\s*$)")
# Where a database's error points into the SQL ("LINE 5:     from …" and a caret line).
_SQL_POINTER = re.compile(r"^LINE \d+:")
_STEP_COMMAND = re.compile(r"^command (?P<index>\d+)/\d+:")

REASON_MAX_LENGTH = 300


@dataclass(frozen=True)
class _Message:
    """One message dbt printed: its first line and the lines that continue it."""

    lines: tuple[str, ...]


def _messages(lines: Iterable[str]) -> list[_Message]:
    messages: list[list[str]] = []
    for raw in lines:
        line = _ANSI.sub("", raw).rstrip("\r\n")
        if parse_marker(line) is not None:
            messages.append([])  # a run_commands.sh marker ends whatever dbt was printing
            continue
        from_json = _json_message(line)
        if from_json is not None:
            messages.append(from_json.splitlines() or [""])
            continue
        stamp = _TIMESTAMP.match(line)
        if stamp is not None or not messages:
            messages.append([line[stamp.end() :] if stamp else line])
        else:
            messages[-1].append(line)
    return [_Message(tuple(m)) for m in messages if m]


def _json_message(line: str) -> str | None:
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    info = data.get("info") if isinstance(data, dict) else None
    msg = info.get("msg") if isinstance(info, dict) else None
    return _ANSI.sub("", msg) if isinstance(msg, str) else None


def _join(parts: Sequence[str], limit: int) -> str:
    """Message lines as one line: a heading ("Runtime Error") and what it heads are
    joined by ": ", other lines by a space."""
    text, previous = "", ""
    for part in parts:
        if not text:
            text = part
        elif _ERROR_HEADING.match(previous) or previous.endswith(":"):
            text = f"{text.rstrip(':')}: {part}"
        else:
            text = f"{text} {part}"
        previous = part
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _body(lines: Sequence[str]) -> list[str]:
    """The message's lines that say something, up to a traceback dbt appends."""
    body = []
    for line in lines:
        text = line.strip()
        if line.startswith("Traceback (most recent call last)") or _SQL_POINTER.match(text):
            break  # the rest is for a debugger: the failing SQL line and a caret
        if text:
            body.append(text)
    return body


def dbt_error(lines: Iterable[str], limit: int = REASON_MAX_LENGTH) -> str | None:
    """dbt's own account of why it stopped, as one line, or None when it printed none.

    The last `Encountered an error:` block wins (`Runtime Error: The profile 'shop'
    does not have a target named 'nowhere'. …`, `Compilation Error: Model … depends on
    a node named 'nope' which was not found`); without one, the last per-node error
    (`Database Error in model x (models/x.sql): …`). Tracebacks dbt adds are left out.
    """
    messages = _messages(lines)
    for index in range(len(messages) - 1, -1, -1):
        first, *rest = messages[index].lines
        if first.strip() == "Encountered an error:":
            body = _body(rest)
            if body:
                return _join(body, limit)
        elif first.strip().startswith("Encountered an error:"):  # one-line JSON msg
            return _join(_body([first.strip().removeprefix("Encountered an error:"), *rest]), limit)
    for message in reversed(messages):
        body = _body(message.lines)
        if body and _NODE_ERROR.match(body[0]):
            return _join(body, limit)
    return None


def split_by_command(lines: Iterable[str]) -> dict[int, list[str]]:
    """The output of each of the job's commands, keyed by run_commands.sh's 1-based
    number (`[run_commands] STEP command 2/3: …` starts command 2; the next marker
    ends it)."""
    out: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        marker = parse_marker(line)
        if marker is not None:
            current = None
            kind, rest = marker
            match = _STEP_COMMAND.match(rest) if kind == "STEP" else None
            if match is not None:
                current = out.setdefault(int(match["index"]), [])
            continue
        if current is not None:
            current.append(line)
    return out


def freshness_runtime_errors(lines: Iterable[str]) -> dict[str, str]:
    """Sources whose freshness query raised, as {"source_name.table": dbt's error}.

    dbt 1.11 leaves these out of sources.json (only pass/warn/error results are
    written), so the progress line `N of M ERROR freshness of raw.orders` and the
    `Runtime Error in source orders (…)` block at the end are all there is."""
    messages = _messages(lines)
    names: list[str] = []
    errors: dict[str, str] = {}
    for message in messages:
        first = message.lines[0].strip()
        match = _FRESHNESS_ERROR.match(first)
        if match is not None:
            names.append(match["name"])
            continue
        body = _body(message.lines)
        node = _NODE_ERROR.match(body[0]) if body else None
        if node is not None and node["type"] == "source":
            errors.setdefault(node["name"], _join(body[1:], REASON_MAX_LENGTH) or body[0])
    return {name: errors.get(name.rsplit(".", 1)[-1], "freshness query failed") for name in names}
