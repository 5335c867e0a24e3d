"""Durations as people write them in jobs.yaml ("90s", "15m", "1h30m") and as reports show them.

`parse_duration` turns a timeout, a grace period or a retry delay into seconds;
`format_duration` turns seconds back into a short label ("1h 30m", "2.5s").
"""

from __future__ import annotations

import math
import re

from lib.errors import quoted

_HINT = "use e.g. 90s, 15m, 2h or 1h30m"

_UNIT_SECONDS: dict[str, int] = {}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1),
    (("m", "min", "mins", "minute", "minutes"), 60),
    (("h", "hr", "hrs", "hour", "hours"), 3600),
    (("d", "day", "days"), 86400),
    (("w", "week", "weeks"), 7 * 86400),
):
    for _name in _names:
        _UNIT_SECONDS[_name] = _seconds

# The longest duration accepted: a timeout or grace period of more than a year means a
# typo, and anything near timedelta's or threading's limits overflows where it is used
# (`timedelta(seconds=1e30)` raises OverflowError in the run path, not here).
MAX_SECONDS = 366 * 86400
_TOO_LONG = "at most 366 days"

_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
# One or more "<number><optional spaces><unit>" parts, optionally separated by spaces/commas.
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)[\s,]*")
_PARTS = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)\s*[a-z]+[\s,]*)+")


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`, which is a number of seconds or a phrase such as "90s", "15 minutes", "1h30m".

    Accepted units: s/sec/second(s), m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s);
    parts may be combined ("1h30m", "1 day 2 hours") and a bare number ("90", 90, 1.5)
    means seconds. Zero, negative, infinite, over 366 days (`MAX_SECONDS`) or unreadable
    values raise `ValueError` with a sentence naming the accepted forms, e.g. "'abc' is not
    a duration: use e.g. 90s, 15m, 2h or 1h30m".
    """
    if isinstance(value, bool):  # bool is an int: `timeout: yes` must not mean 1 second
        raise ValueError(f"{value!r} is not a duration: {_HINT}")
    if isinstance(value, int | float):
        if isinstance(value, int) and value > MAX_SECONDS:  # float() of a huge int overflows
            raise ValueError(f"{_shown(value)} is not a duration: {_TOO_LONG}; {_HINT}")
        seconds = float(value)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"{value!r} is not a duration: it must be more than zero; {_HINT}")
        if seconds > MAX_SECONDS:
            raise ValueError(f"{value!r} is not a duration: {_TOO_LONG}; {_HINT}")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration: {_HINT}")

    text = value.strip().lower()
    if text.startswith("-"):
        raise ValueError(f"{value!r} is not a duration: it must be more than zero; {_HINT}")
    if _NUMBER.fullmatch(text):
        seconds = float(text)
    elif _PARTS.fullmatch(text):
        seconds = 0.0
        seen: set[int] = set()
        for number, unit in _PART.findall(text):
            unit_seconds = _UNIT_SECONDS.get(unit)
            if unit_seconds is None:
                raise ValueError(f"{value!r} is not a duration: unknown unit {unit!r}; {_HINT}")
            if unit_seconds in seen:  # "1h 2h" is a typo, not three hours
                raise ValueError(f"{value!r} is not a duration: a unit appears twice; {_HINT}")
            seen.add(unit_seconds)
            seconds += float(number) * unit_seconds
    else:
        raise ValueError(f"{value!r} is not a duration: {_HINT}")
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a duration: it must be more than zero; {_HINT}")
    if seconds > MAX_SECONDS:  # also `inf`: float() reads 400 nines as infinity
        raise ValueError(f"{_shown(value)} is not a duration: {_TOO_LONG}; {_HINT}")
    return seconds


def _shown(value: object) -> str:
    return quoted(value, 40)


def format_duration(seconds: float | None) -> str:
    """A short label for a number of seconds: "45s", "2.5s", "0.3s", "1m 5s", "1h 30m", "2d 3h".

    Under a minute, one decimal is shown when the value is not whole ("2.5s"); from a
    minute up the value is rounded to whole seconds and only non-zero units are listed,
    largest first. Negative values get a leading "-".
    """
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    tenths = round(seconds, 1)
    if tenths < 60:
        if tenths == int(tenths):
            return f"{int(tenths)}s"
        return f"{tenths:.1f}s"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)
