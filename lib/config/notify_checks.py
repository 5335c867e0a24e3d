"""The checks of `notifications:`, `heartbeat:` and the jobs' `notify`, `deadline` and
`heartbeat` keys (issue 9), and the `${ENV}` references their strings may hold.

A channel's string may be, or contain, `${NAME}`: the value of NAME in the scheduler's
environment (systemd's EnvironmentFile, see README), so webhook URLs, routing keys and
passwords stay out of jobs.yaml. A reference to a variable that is not set is a
located error; every value brought in that way is masked in whatever we print or store.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

from lib.config.checks import CONTROL, Field, check_unknown, did_you_mean, read_section, shown
from lib.models import AlertRule, Channel, Heartbeat, QuietHoursSetting
from lib.notify.message import EVENTS

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HTTP_URL = re.compile(r"https?://[^\s/:@]+(?::\d+)?(?:/\S*)?", re.IGNORECASE)
_WALL_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")


def expand(value: Any, field: Field) -> Any:
    """`value` with each `${NAME}` replaced from the scheduler's environment (lists and
    mappings item by item); a NAME that is not set is an issue at `field`."""
    if isinstance(value, list):
        return [expand(item, field) for item in value]
    if isinstance(value, dict):
        return {key: expand(item, field.at(str(key))) for key, item in value.items()}
    if not isinstance(value, str) or "${" not in value:
        return value
    environ = field.memo.environ
    missing = [name for name in _REFERENCE.findall(value) if not environ.get(name)]
    if missing:
        names = ", ".join(f"${{{name}}}" for name in dict.fromkeys(missing))
        field.bad(
            f"{names} is not set in the scheduler's environment: export it, or put it in the "
            "EnvironmentFile of the service (see README, Alerts)"
        )
        return None
    for name in _REFERENCE.findall(value):
        field.memo.secret_values.add(environ[name])
    return _REFERENCE.sub(lambda match: environ[match[1]], value)


def http_url(value: Any, field: Field) -> str | None:
    if not isinstance(value, str) or not _HTTP_URL.fullmatch(value) or CONTROL.search(value):
        return field.bad(f"must be an http(s) URL, got {shown(value) if '${' not in str(value) else 'that'}")
    return value


def channel_names(value: Any, field: Field) -> tuple[str, ...] | None:
    """A list of channel names (or one name); that they exist is checked once all are read."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        return field.bad(f"must be a list of channel names from notifications.channels, got {shown(value)}")
    return tuple(value)


def events(value: Any, field: Field) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return field.bad(f"must be a list of events ({', '.join(EVENTS)}), got {shown(value)}")
    for i, event in enumerate(value):
        if event not in EVENTS:
            hint = did_you_mean(str(event), EVENTS) or f" (events: {', '.join(EVENTS)})"
            return field.bad(f"[{i}] {shown(event)} is not an event{hint}")
    return tuple(dict.fromkeys(value))


def job_globs(value: Any, field: Field) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        return field.bad(f"must be a list of job names or globs such as 'nightly*', got {shown(value)}")
    return tuple(value)


def wall_time(value: Any, field: Field) -> time | None:
    """ "HH:MM" (24-hour) as a time of day."""
    match = _WALL_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return field.bad(f'must be a time of day as "HH:MM" (24-hour, quoted), got {shown(value)}')
    return time(int(match[1]), int(match[2]))


def quiet_hours(value: Any, field: Field) -> QuietHoursSetting | None:
    from lib.config.checks import timezone

    if not isinstance(value, dict):
        return field.bad('must be a mapping such as {from: "22:00", to: "07:00", timezone: Europe/Paris}')
    check_unknown(value, ("from", "to", "timezone"), field.path, field.issues)
    start = wall_time(value.get("from"), field.at("from"))
    end = wall_time(value.get("to"), field.at("to"))
    zone = timezone(value.get("timezone", "UTC"), field.at("timezone"))
    if start is None or end is None or zone is None:
        return None
    if start == end:
        return field.bad("`from` and `to` are the same time: the window would be empty")
    return QuietHoursSetting(start, end, zone if isinstance(zone, ZoneInfo) else ZoneInfo("UTC"))


def heartbeat(value: Any, field: Field) -> Heartbeat | None:
    """The top-level `heartbeat:`: a URL, or {url, every}."""
    from lib.config.checks import duration

    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict):
        return field.bad("must be a ping URL or {url: …, every: 5m}")
    check_unknown(value, ("url", "every"), field.path, field.issues)
    url = http_url(expand(value.get("url"), field.at("url")), field.at("url"))
    every = duration(value.get("every", "5m"), field.at("every"))
    if url is None or every is None:
        return None
    return Heartbeat(url=url, every=every)


def job_heartbeat(value: Any, field: Field) -> str | None:
    return http_url(expand(value, field), field)


# --------------------------------------------------------------------------- channels


def email_addresses(value: Any, field: Field) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and _ADDRESS.fullmatch(v) for v in value)
    ):
        return field.bad(f"must be a list of e-mail addresses, got {shown(value)}")
    return tuple(value)


def email_address(value: Any, field: Field) -> str | None:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        return field.bad(f"must be an e-mail address, got {shown(value)}")
    return value


def channel(name: str, value: Any, field: Field) -> Channel | None:
    """One `notifications.channels` entry, checked with its type's keys (lib/config/keys.py)."""
    from lib.config.keys import CHANNEL_TYPES

    if not isinstance(value, dict):
        return field.bad('must be a mapping such as {type: slack, url: "${SLACK_WEBHOOK_URL}"}')
    kind = value.get("type")
    section = CHANNEL_TYPES.get(kind) if isinstance(kind, str) else None
    if section is None:
        hint = did_you_mean(str(kind), CHANNEL_TYPES) or ""
        return field.at("type").bad(
            f"{shown(kind)} is not a channel type{hint} (types: {', '.join(CHANNEL_TYPES)})"
        )
    check_unknown(value, section.names, field.path, field.issues)
    before = len(field.issues.items)
    expanded = {key: expand(item, field.at(key)) for key, item in value.items() if key != "type"}
    for key in section.keys:
        if key.required and expanded.get(key.name) is None and value.get(key.name) is None:
            field.at(key.name).bad(f"missing: a {kind} channel needs `{key.name}` ({key.doc})")
    settings = read_section(section, expanded, field.at, field.memo)
    if len(field.issues.items) > before:
        return None
    settings.pop("type", None)
    return Channel(name=name, type=kind, settings={k: v for k, v in settings.items() if v is not None})


def channels(value: Any, field: Field) -> dict[str, Channel] | None:
    if not isinstance(value, dict):
        return field.bad("must be a mapping of channel name → {type: …, …}")
    result: dict[str, Channel] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            field.at(str(name)).bad(
                "channel names use letters, digits, '_', '-' and '.', up to 64 characters"
            )
            continue
        checked = channel(name, item, field.at(name))
        if checked is not None:
            result[name] = checked
    return result


RULE_KEYS = ("jobs", "on", "to", "after", "repeat_every", "quiet_hours")


def rules(value: Any, field: Field) -> tuple[AlertRule, ...] | None:
    from lib.config.keys import RULE

    if not isinstance(value, list):
        return field.bad("must be a list of rules such as {jobs: ['*'], on: [failed], to: [data_slack]}")
    result: list[AlertRule] = []
    for i, item in enumerate(value):
        where = Field(f"{field.path}[{i}]", field.issues, field.memo)
        if not isinstance(item, dict):
            where.bad("must be a mapping such as {on: [failed], to: [data_slack]}")
            continue
        # YAML 1.1 (PyYAML) reads a bare `on` key as the boolean true, as GitHub Actions
        # files show; the rule's `on:` is meant, and an editor (YAML 1.2) reads it so.
        if True in item and "on" not in item:
            item = {("on" if key is True else key): value for key, value in item.items()}
        check_unknown(item, RULE.names, where.path, field.issues)
        if item.get("to") is None:
            where.at("to").bad("missing: the channels this rule sends to")
            continue
        before = len(field.issues.items)
        settings = read_section(RULE, {k: v for k, v in item.items() if v is not None}, where.at, field.memo)
        if len(field.issues.items) == before:
            result.append(AlertRule(**{k: v for k, v in settings.items() if v is not None}))
    return tuple(result)


def matches(rule: AlertRule, job: str) -> bool:
    return any(fnmatch.fnmatchcase(job, pattern) for pattern in rule.jobs)
