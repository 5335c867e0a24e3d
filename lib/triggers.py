"""When a job fires next: cron expressions and "every …" intervals, in the job's time zone.

Two kinds of `Trigger` (see models.py), both pure: nothing here reads the clock.

* `CronTrigger` / `parse_cron`: five-field cron ("30 2 * * *") and the macros @yearly,
  @annually, @monthly, @weekly, @daily, @midnight, @hourly.
* `IntervalTrigger` / `parse_every`: phrases such as "15 minutes", "day at 06:00",
  "monday at 09:00", validated by the `schedule` package.

`fire_times(trigger, after, until)` lists every fire time in a window, for catch-up.

Time zones and daylight saving time
-----------------------------------
Calendar fields (hour, day, weekday, "at 06:00") are read on the local clock of the
job's IANA zone. On the two days a year that clock jumps, we follow Vixie cron and
cronie (cron.c: "fixed-time" jobs vs "wildcard" jobs), which is also what people expect:

* A *fixed-time* job (the cron minute and hour fields do not start with ``*``, e.g.
  ``30 2 * * *``; every "day at …" or "monday at …" phrase; "N days"/"N weeks") whose
  local time does not exist on spring-forward day runs **once, at the moment the clock
  jumps**: ``30 2 * * *`` in Europe/Berlin on 2026-03-29 fires at 03:00 CEST (01:00 UTC)
  instead of being lost. On fall-back day its local time happens twice and it runs
  **once, at the first occurrence** (02:30 CEST, not again at 02:30 CET).
* A *wildcard* cron job (the minute or hour field starts with ``*``: ``0 * * * *``,
  ``*/15 * * * *``, @hourly) fires at every real instant whose local time matches. Wall
  times inside the spring-forward gap do not exist and are skipped, and the repeated
  hour on fall-back day is run through twice, so an hourly job fires every real hour
  and a ``*/15`` job every 15 real minutes through both transitions: no duplicate, no
  gap in elapsed time.
* "N hours [at :MM]" intervals are read on the local clock too: they restart at every
  local midnight and fire when the local clock shows 00:00, N:00, 2N:00 … (plus the
  minutes of `at`), exactly like the cron wildcard job ``MM */N * * *``. "6 hours" fires
  at 00:00, 06:00, 12:00 and 18:00 local every day, DST days included; on the 23-hour or
  25-hour day the real gap that spans the change is one hour shorter or longer (5 or 7
  real hours around 02:00 in New York or Berlin). A slot inside the spring-forward gap
  is skipped and one inside the repeated hour fires twice, as for any wildcard job, so
  "hour" fires every real hour through both changes.
* "N seconds / minutes" intervals are elapsed time on a grid aligned to the Unix epoch,
  so DST never shifts them and they are exactly N real units apart through both changes
  (see `IntervalTrigger` for why minutes and hours differ).

The rules come from cronie's src/cron.c (the "time jumped forward/backward" cases:
non-wildcard jobs run for the skipped minutes, only wildcard jobs run again when the
clock goes back); "fixed" vs "wildcard" is its MIN_STAR | HR_STAR test.

croniter (7.0) is not used for the computation: it costs ~300 µs to build and ~90 µs
per step, far over the ~50 µs budget per job of a 10,000-job daemon, and it runs a
fixed-time job twice on fall-back day. The tests use it as a reference where DST plays
no part, and a minute-by-minute model of the rules above on DST days.

Returned datetimes are aware and in UTC: the job's zone is used only inside a trigger,
for the local-time arithmetic. Fire times are compared, sorted and stored by the daemon,
the policies and history, and Python compares two datetimes that share a tzinfo by wall
time, ignoring `fold` — 02:30 CEST and 02:30 CET would look equal, and `min()` over a
zone's fire times picks the wrong one on fall-back night. In UTC no two instants share a
wall time. Convert to the job's zone only to show a fire time to a person.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import schedule

from lib.models import Trigger

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY = 86400
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_TITLES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _require_aware(moment: datetime, what: str = "moment") -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {moment.isoformat()}")


def _zone_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and _is_leap(year):
        return 29
    return _DAYS_IN_MONTH[month]


def _wall_seconds(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> int:
    """A local wall time as seconds since 1970-01-01 00:00 on that same (zone-less) clock."""
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * _DAY + hour * 3600 + minute * 60 + second


def _wall_fields(wall: int) -> tuple[int, int, int, int, int]:
    """The inverse of `_wall_seconds`, truncated to the minute: (year, month, day, hour, minute)."""
    days, rest = divmod(wall, _DAY)
    day = date.fromordinal(days + _EPOCH_ORDINAL)
    return day.year, day.month, day.day, rest // 3600, rest % 3600 // 60


# --------------------------------------------------------------------------------------
# A zone's offsets as integers, and the DST rules stated in the module docstring
# --------------------------------------------------------------------------------------

_NORMAL, _GAP, _REPEATED = 0, 1, 2

_Change = tuple[int, int, int]  # (instant, offset before, offset after), all in seconds


def _offset_of(tz: tzinfo, instant: int) -> int:
    return datetime.fromtimestamp(instant, tz).utcoffset() // timedelta(seconds=1)  # type: ignore[operator]


class _Zone:
    """A time zone's offset changes as plain integers, found on demand, three days at a time.

    zoneinfo keeps its transition table private, so the offset is probed at the midnights
    (UTC) around the day in question and a change between two probes is bisected to the
    second. That costs ~20 µs once per zone and day touched (DST days a little more);
    afterwards every question a trigger asks (the offset at an instant, whether a wall
    time is skipped or repeated) is a dict lookup. Offsets never change twice within a
    day, so probing once a day misses nothing.
    """

    __slots__ = ("_windows", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        # Day number → (offset at the start of day - 1, changes during days - 1 … + 1).
        self._windows: dict[int, tuple[int, tuple[_Change, ...]]] = {}

    def _window(self, day: int) -> tuple[int, tuple[_Change, ...]]:
        window = self._windows.get(day)
        if window is None:
            bounds = [(day + step) * _DAY for step in (-1, 0, 1, 2)]
            offsets = [_offset_of(self.tz, bound) for bound in bounds]
            changes: list[_Change] = []
            for index in range(3):
                changes += self._changes(bounds[index], bounds[index + 1], offsets[index], offsets[index + 1])
            # Plain dict assignment: threads that race here compute the same value.
            window = self._windows[day] = (offsets[0], tuple(changes))
        return window

    def _changes(self, low: int, high: int, offset_low: int, offset_high: int) -> list[_Change]:
        found = []
        while offset_low != offset_high:
            start, end = low, high  # the offset is offset_low at `start`, not at `end`
            while end - start > 1:
                middle = (start + end) // 2
                if _offset_of(self.tz, middle) == offset_low:
                    start = middle
                else:
                    end = middle
            offset_end = _offset_of(self.tz, end)
            found.append((end, offset_low, offset_end))
            low, offset_low = end, offset_end
        return found

    def offset_at(self, instant: int) -> int:
        """The zone's UTC offset (seconds) at an instant (epoch seconds)."""
        offset, changes = self._window(instant // _DAY)
        for at, _, after in changes:
            if instant >= at:
                offset = after
        return offset

    def wall(self, wall: int) -> tuple[int, int, int, int]:
        """What a local wall time (see `_wall_seconds`) is: (kind, offset0, offset1, change).

        _NORMAL: it happens once, with offset0 == offset1. _GAP: it is skipped by the
        spring-forward change at instant `change` (offset0 before it, offset1 after).
        _REPEATED: it happens twice, first with offset0, then with offset1, around the
        fall-back change at `change`; the repeated wall times are
        [change + offset1, change + offset0).
        """
        offset, changes = self._window(wall // _DAY)
        for at, before, after in changes:
            if at + min(before, after) <= wall < at + max(before, after):
                return (_GAP if after > before else _REPEATED), before, after, at
            if wall >= at + max(before, after):
                offset = after
        return _NORMAL, offset, offset, 0


_ZONES: dict[tzinfo, _Zone] = {}


def _zone(tz: tzinfo) -> _Zone:
    zone = _ZONES.get(tz)
    if zone is None:
        zone = _ZONES.setdefault(tz, _Zone(tz))
    return zone


def _utc(instant: int) -> datetime:
    """An instant (epoch seconds) as the aware UTC datetime every trigger returns."""
    return datetime.fromtimestamp(instant, UTC)


def _fixed_instant(zone: _Zone, wall: int) -> int:
    """The instant (epoch seconds) a fixed-time job with local time `wall` fires.

    A wall time skipped by spring forward resolves to the moment the clock jumps; one
    repeated by fall back resolves to its first occurrence (Vixie cron's behaviour).
    """
    kind, offset0, _, change = zone.wall(wall)
    if kind == _GAP:
        return change
    return wall - offset0


# --------------------------------------------------------------------------------------
# Cron
# --------------------------------------------------------------------------------------


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...]  # names[i] is the value low + i (or empty: numbers only)
    allowed: str  # for messages: "0-59", "1-12 or jan-dec"


_MINUTE = _Field("minute", 0, 59, (), "0-59")
_HOUR = _Field("hour", 0, 23, (), "0-23")
_DOM = _Field("day-of-month", 1, 31, (), "1-31")
_MONTH = _Field("month", 1, 12, _MONTH_NAMES, "1-12 or jan-dec")
_DOW = _Field("day-of-week", 0, 7, (*_DOW_NAMES, "sun"), "0-7 or sun-sat")
_FIELDS = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class _FieldError(Exception):
    """A reason a cron field is invalid, completed into a full sentence by the caller."""


def _field_value(token: str, field: _Field) -> int:
    if token.isascii() and token.isdigit():
        value = int(token)
        if field.low <= value <= field.high:
            return value
    elif field.names:
        lowered = token.lower()
        if lowered in field.names:
            return field.low + field.names.index(lowered)
    raise _FieldError(f"{field.name} must be {field.allowed}")


@lru_cache(maxsize=2048)
def _parse_field(text: str, field: _Field) -> tuple[int, ...]:
    """The sorted values a cron field matches: `*`, lists, ranges, steps and names.

    Cached: distinct expressions mostly share fields ("*", "0", "mon-fri").
    """
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise _FieldError(f"{field.name} step must be a whole number of at least 1")
            step = int(step_text)
        if base == "*":
            # Day-of-week 7 is Sunday again; `*/2` means 0,2,4,6 as in Vixie cron.
            low, high = field.low, 6 if field is _DOW else field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _field_value(first, field), _field_value(last, field)
            if field is _DOW and high == 0 and low > 0:  # "fri-sun": Sunday as 7
                high = 7
            if low > high:
                raise _FieldError(
                    f"{field.name} range {base} runs backwards: "
                    f"write {low}-{field.high},{field.low}-{high} instead"
                )
        else:
            low = _field_value(base, field)
            high = field.high if slash else low  # "5/15" means 5-59/15
        values.update(range(low, high + 1, step))
    if field is _DOW and 7 in values:
        values.discard(7)
        values.add(0)
    return tuple(sorted(values))


@lru_cache(maxsize=512)
def _flags(values: tuple[int, ...], size: int) -> tuple[bool, ...]:
    """flags[i] is True when i is one of `values`."""
    flags = [False] * size
    for value in values:
        flags[value] = True
    return tuple(flags)


@lru_cache(maxsize=128)
def _weekday_flags(weekdays: tuple[int, ...]) -> tuple[bool, ...]:
    """Cron weekdays (Sunday 0) as flags indexed by `date.weekday()` (Monday 0)."""
    return tuple((weekday + 1) % 7 in weekdays for weekday in range(7))


def _join(words: list[str], conjunction: str) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


class _CronSpec(NamedTuple):
    """A parsed cron expression: the matched values of each field, plus Vixie's flags."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    month_ok: tuple[bool, ...]  # index 1-12
    day_ok: tuple[bool, ...]  # index 1-31
    weekday_ok: tuple[bool, ...]  # index = date.weekday() (Monday 0)
    # Vixie cron: when either day field starts with `*`, a day must match both fields;
    # when both are restricted, matching either is enough ("1,15 * mon" = 1st, 15th, Mondays).
    days_and: bool
    check_weekday: bool  # False when every weekday is allowed (skip computing it)
    wildcard: bool  # minute or hour field starts with `*` (cron.c MIN_STAR | HR_STAR)


def _cron_error(expression: str, reason: str) -> ValueError:
    return ValueError(f"{expression!r} is not a valid cron expression: {reason}")


@lru_cache(maxsize=4096)
def _parse_cron_spec(expression: str) -> _CronSpec:
    text = expression
    if text.startswith("@"):
        macro = text.lower()
        if macro == "@reboot":
            raise _cron_error(
                expression,
                "@reboot is not supported, because the scheduler has no boot to run at; use a "
                "schedule such as @daily or '0 6 * * *', or start a run by hand with run-now",
            )
        if macro not in _MACROS:
            raise _cron_error(
                expression,
                f"unknown macro {text}; use one of {', '.join(_MACROS)} or five fields",
            )
        text = _MACROS[macro]
    parts = text.split()
    if len(parts) != 5:
        raise _cron_error(
            expression,
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}",
        )
    try:
        minutes = _parse_field(parts[0], _MINUTE)
        hours = _parse_field(parts[1], _HOUR)
        days = _parse_field(parts[2], _DOM)
        months = _parse_field(parts[3], _MONTH)
        weekdays = _parse_field(parts[4], _DOW)
    except _FieldError as exc:
        raise _cron_error(expression, str(exc)) from None

    dom_star, dow_star = parts[2].startswith("*"), parts[4].startswith("*")
    days_and = dom_star or dow_star
    if days_and and days[0] > 28:  # every month has days 1-28
        # The day-of-month must exist in one of the months, or the job never fires.
        longest = max(29 if month == 2 else _DAYS_IN_MONTH[month] for month in months)
        if days[0] > longest:
            names = [_MONTH_TITLES[month - 1] for month in months]
            missing = [str(day) for day in days]
            raise _cron_error(
                expression,
                f"it never fires, because {_join(names, 'and')} {'has' if len(names) == 1 else 'have'} "
                f"no day {_join(missing, 'or')}",
            )
    weekday_ok = _weekday_flags(weekdays)
    return _CronSpec(
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        month_ok=_flags(months, 13),
        day_ok=_flags(days, 32),
        weekday_ok=weekday_ok,
        days_and=days_and,
        check_weekday=not (days_and and all(weekday_ok)),
        wildcard=parts[0].startswith("*") or parts[1].startswith("*"),
    )


_Wall = tuple[int, int, int, int, int]  # year, month, day, hour, minute (local, naive)


def _first_match(spec: _CronSpec, year: int, month: int, day: int, hour: int, minute: int) -> _Wall:
    """The first local wall time at or after the given one that the expression matches.

    Fields may overflow by one (minute 60, hour 24, day past the month's end); they are
    carried. Validation guarantees a match within a few years (Feb 29 needs ≤ 8).
    """
    months, hours, minutes, days = spec.months, spec.hours, spec.minutes, spec.days
    month_ok, day_ok, weekday_ok = spec.month_ok, spec.day_ok, spec.weekday_ok
    days_and, check_weekday = spec.days_and, spec.check_weekday
    give_up = year + 400
    while True:
        if year > give_up:  # unreachable for a validated expression; never loop forever
            raise RuntimeError("cron expression never matches")
        if month > 12:
            year, month, day, hour, minute = year + 1, 1, 1, 0, 0
        if not month_ok[month]:
            index = bisect_left(months, month)
            if index == len(months):
                year, month = year + 1, months[0]
            else:
                month = months[index]
            day, hour, minute = 1, 0, 0
        if day > _days_in_month(year, month):
            month, day, hour, minute = month + 1, 1, 0, 0
            continue
        if days_and:
            if not day_ok[day]:
                index = bisect_left(days, day)
                day = days[index] if index < len(days) else 32
                hour = minute = 0
                continue
            matches = not check_weekday or weekday_ok[date(year, month, day).weekday()]
        else:
            matches = day_ok[day] or weekday_ok[date(year, month, day).weekday()]
        if not matches:
            day, hour, minute = day + 1, 0, 0
            continue
        index = bisect_left(hours, hour)
        if index == len(hours):
            day, hour, minute = day + 1, 0, 0
            continue
        if hours[index] != hour:
            hour, minute = hours[index], 0
        index = bisect_left(minutes, minute)
        if index == len(minutes):
            hour, minute = hour + 1, 0
            if hour == 24:
                day, hour = day + 1, 0
            continue
        return year, month, day, hour, minutes[index]


class CronTrigger:
    """A five-field cron expression (or macro) evaluated on the local clock of `tz`.

    Fields: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or jan-dec,
    day-of-week 0-7 or sun-sat (0 and 7 are Sunday). Each accepts `*`, lists (`1,15`),
    ranges (`1-5`, `mon-fri`, `fri-sun`), steps (`*/15`, `1-5/2`, `5/15` = 5-59/15) and
    names in any case. As in Vixie cron, when both day fields are restricted a day
    matching either fires (`0 0 1,15 * mon` = the 1st, the 15th and every Monday); when
    either starts with `*` both must match.

    DST follows the module docstring: a fixed-time job (minute and hour fields not
    starting with `*`) whose time falls in the spring-forward gap runs once when the
    clock jumps, and once (the first time) in the repeated fall-back hour; a wildcard job
    fires at every real instant whose local time matches.

    Invalid expressions raise `ValueError` with a sentence such as
    "'61 * * * *' is not a valid cron expression: minute must be 0-59". Parsing is
    cached per expression, so ten thousand jobs sharing a schedule parse it once.
    """

    __slots__ = ("_spec", "_zone", "expression", "tz")

    def __init__(self, expression: str, tz: ZoneInfo) -> None:
        if not isinstance(expression, str):
            raise _cron_error(str(expression), "expected text such as '0 6 * * *'")
        self.expression = expression.strip()
        self.tz = tz
        self._spec = _parse_cron_spec(self.expression)
        self._zone = _zone(tz)

    def describe(self) -> str:
        """The expression as written (macros stay macros)."""
        return self.expression

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (any zone), aware and in UTC."""
        _require_aware(moment)
        spec, zone = self._spec, self._zone
        after = moment.timestamp()
        whole = int(after // 1)
        local = whole + zone.offset_at(whole)
        if spec.wildcard:
            kind, _, offset1, change = zone.wall(local)
            if kind == _REPEATED:
                # `moment` is in the repeated hour. Fire times of its second pass may show an
                # earlier wall time than `moment` itself, so search from the hour's start.
                local = change + offset1
            else:
                local += 60 - local % 60  # the current minute fired at or before `moment`
        else:
            local += 60 - local % 60
        cursor = _wall_fields(local)
        while True:
            found = _first_match(spec, *cursor)
            wall = _wall_seconds(*found)
            kind, offset0, offset1, change = zone.wall(wall)
            if kind == _NORMAL:
                if wall - offset0 > after:
                    return _utc(wall - offset0)
            elif kind == _GAP:
                # Skipped local time: a fixed-time job runs when the clock jumps; a wildcard
                # job just has no such minute (its next real minute follows).
                if not spec.wildcard and change > after:
                    return _utc(change)
            elif not spec.wildcard:  # repeated local time: the first occurrence only
                if wall - offset0 > after:
                    return _utc(wall - offset0)
            else:
                # Wildcard job in the repeated hour: every match fires twice, and in real time
                # all first occurrences come before all second ones.
                end = change + offset0
                instant = self._in_repeated_hour(found, end, offset0, offset1, after)
                if instant is not None:
                    return instant
                cursor = _wall_fields(end)
                continue
            cursor = (*found[:4], found[4] + 1)

    def _in_repeated_hour(
        self, found: _Wall, end: int, offset0: int, offset1: int, after: float
    ) -> datetime | None:
        """The first fire after `after` among the matches from `found` to wall time `end`."""
        matches: list[int] = []
        probe = found
        while (wall := _wall_seconds(*probe)) < end:
            matches.append(wall)
            probe = _first_match(self._spec, *probe[:4], probe[4] + 1)
        for offset in (offset0, offset1):  # the first pass, then the second
            for wall in matches:
                if wall - offset > after:
                    return _utc(wall - offset)
        return None

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, tz={_zone_name(self.tz)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronTrigger):
            return NotImplemented
        return (self.expression, self.tz) == (other.expression, other.tz)

    def __hash__(self) -> int:
        return hash((CronTrigger, self.expression, self.tz))


def parse_cron(expression: str, tz: ZoneInfo) -> CronTrigger:
    """A `CronTrigger` for `expression` in `tz`; `ValueError` with a readable reason if invalid."""
    return CronTrigger(expression, tz)


# --------------------------------------------------------------------------------------
# "every …" intervals, validated by the `schedule` package
# --------------------------------------------------------------------------------------

_EVERY_HINT = "use e.g. 30 seconds, 15 minutes, 2 hours, day at 06:00 or monday at 09:00"
_EVERY = re.compile(r"(?:every\s+)?(?:(\d+)\s+)?([a-z]+)(?:\s+at\s+(\S+))?")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNIT_WORDS = frozenset(
    ("second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks", *_WEEKDAYS)
)
_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600}
_AT_FORMATS = {
    "days": "HH:MM or HH:MM:SS between 00:00 and 23:59:59, e.g. day at 06:00",
    "hours": ":MM or MM:SS, e.g. hour at :15",
    "minutes": ":SS, e.g. minute at :30",
}
# A private scheduler: jobs are built on it to validate phrases, never registered or run
# (`do()` is never called, so schedule never reads the clock for us).
_SCHEDULER = schedule.Scheduler()
_WEEK_ANCHOR = -3  # days from 1970-01-01 (a Thursday) back to the Monday of its week


# The longest `every` period: ten years keeps every fire time inside datetime's range
# (year 9999) for as long as anyone will run this, and is no real limit on a schedule.
_MAX_EVERY_DAYS = 3653
_EVERY_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


class _Every(NamedTuple):
    unit: str  # seconds | minutes | hours | days | weeks (schedule's own words)
    interval: int
    at_time: time | None
    start_day: str | None  # monday … sunday for "monday at 09:00"


def _every_error(phrase: str, reason: str) -> ValueError:
    return ValueError(f"{phrase!r} is not a valid interval: {reason}")


@lru_cache(maxsize=4096)
def _parse_every(phrase: str) -> _Every:
    match = _EVERY.fullmatch(phrase.lower())
    if not match:
        raise _every_error(phrase, _EVERY_HINT)
    number, word, at = match.groups()
    if word == "every":
        raise _every_error(phrase, _EVERY_HINT)
    if word not in _UNIT_WORDS:
        raise _every_error(
            phrase,
            f"unknown unit {word!r}; use seconds, minutes, hours, days, weeks or a weekday "
            "(monday to sunday)",
        )
    # Checked before int(): Python refuses to convert strings of more than 4,300 digits,
    # and a period past a few years overflows datetime arithmetic in next_after.
    if number is not None and len(number.lstrip("0")) > 9:
        raise _every_error(phrase, f"the number is too large: at most {_MAX_EVERY_DAYS} days in all")
    interval = int(number) if number is not None else 1
    if interval < 1:
        raise _every_error(phrase, f"the number must be at least 1; {_EVERY_HINT}")
    job = _SCHEDULER.every(interval)
    try:
        job = getattr(job, word)
    except schedule.IntervalError:
        if word in _WEEKDAYS:
            reason = f"a weekday runs every week; drop the number ({word} at 09:00)"
        else:
            reason = f"write {interval} {word}s"
        raise _every_error(phrase, reason) from None
    if job.unit == "hours" and interval > 24:
        # Hour intervals restart at local midnight (IntervalTrigger), so 25 hours or more
        # has no meaning there; say what does.
        instead = f"write {interval // 24} days" if interval % 24 == 0 else "use days or a cron schedule"
        raise _every_error(
            phrase, f"hour intervals restart at local midnight, so the number must be 1-24; {instead}"
        )
    if interval * _EVERY_UNIT_SECONDS.get(job.unit, 0) > _MAX_EVERY_DAYS * 86400:
        raise _every_error(
            phrase, f"the period is too long: at most {_MAX_EVERY_DAYS} days; use a cron schedule"
        )
    if at is not None:
        daily = job.unit == "days" or job.start_day is not None
        if daily and re.fullmatch(r"\d:\d\d(:\d\d)?", at):
            at = "0" + at  # schedule insists on two-digit hours; "6:00" is unambiguous
        try:
            job.at(at)
        except schedule.ScheduleValueError:
            if not daily and job.unit not in _AT_FORMATS:
                reason = "'at' goes with day(s), hour(s), minute(s) or a weekday"
            else:
                reason = f"the time must be {_AT_FORMATS['days' if daily else job.unit]}"
            raise _every_error(phrase, reason) from None
    return _Every(job.unit, job.interval, job.at_time, job.start_day)


class IntervalTrigger:
    """An "every …" phrase ("15 minutes", "6 hours", "day at 06:00", "monday at 09:00") in zone `tz`.

    Build it with `parse_every`. What each phrase means:

    * `N seconds|minutes` (or `second`, `minute`): elapsed time on a grid aligned to the
      Unix epoch, so "15 minutes" fires at :00, :15, :30 and :45, a restart never shifts
      the grid and DST never does either: the runs are exactly N real units apart, day
      and night, through both changes. `minute at :SS` fires when the local clock shows
      that second.
    * `N hours` (or `hour`), `N hours at :MM` / `at MM:SS`: the local clock, restarting at
      every local midnight: "6 hours" fires at 00:00, 06:00, 12:00 and 18:00 local each
      day, "2 hours at :15" at 00:15, 02:15, … — the cron wildcard job `15 */2 * * *`,
      with its DST rules (module docstring). On a 23-hour or 25-hour day the gap across
      the change is an hour shorter or longer in real time (New York "6 hours":
      00:00 EST → 06:00 EDT is 5 real hours on 8 March, 00:00 EDT → 06:00 EST 7 on
      1 November). When N does not divide 24 the last gap of the day is shorter ("5 hours":
      20:00 → 00:00). N is 1-24: longer intervals are days.
    * `day at HH:MM[:SS]`, `N days at …`: that local time every N days; `N days`
      alone: local midnight. Days are counted on a grid aligned to 1970-01-01, so
      "3 days" fires on the same dates whenever the daemon starts.
    * `week`, `N weeks`: Monday 00:00 local, every N weeks on a grid aligned to the
      epoch's week. `monday` … `sunday` [at HH:MM]: that weekday every week, at 00:00
      unless a time is given.

    Why hours follow the local clock and minutes do not: DST moves the clock by an hour,
    so it shifts an hour grid by a whole step ("6 hours" on a UTC grid would run at
    01:00/07:00… local in summer and 00:00/06:00… in winter) but leaves the minutes a
    minute interval shows untouched ("15 minutes" shows :00/:15/:30/:45 either way, in
    every zone whose offset is whole hours). Elapsed time keeps minute intervals free of
    the doubled or missing runs a local grid would give in the changing hour, and of a
    restart at midnight of intervals that do not divide the day ("7 minutes").

    Day and week phrases are fixed-time: a local time that does not exist on
    spring-forward day fires when the clock jumps, one that happens twice fires once,
    the first time. A leading "every " is ignored; `describe()` returns the phrase as
    written. schedule's `next_run` is not used: it reads `datetime.now()`.
    """

    __slots__ = ("_anchor", "_local_unit", "_period", "_shift", "_zone", "phrase", "spec", "tz")

    def __init__(self, phrase: str, tz: ZoneInfo) -> None:
        if not isinstance(phrase, str):
            raise _every_error(str(phrase), _EVERY_HINT)
        self.phrase = phrase.strip()
        self.tz = tz
        self.spec = spec = _parse_every(self.phrase)
        self._zone = _zone(tz)
        at = spec.at_time
        self._local_unit = 0
        if spec.unit == "hours":
            self._period = spec.interval * 3600  # wall seconds between slots of a local day
            self._anchor = 0
            self._shift = 0 if at is None else at.minute * 60 + at.second
        elif spec.unit in _UNIT_SECONDS:
            unit = _UNIT_SECONDS[spec.unit]
            self._period = spec.interval * unit  # seconds, on the epoch grid
            self._anchor = 0
            self._shift = 0 if at is None else at.second
            if at is not None:
                # "minute at :30" follows the local clock's seconds (the same as UTC's in
                # every zone in use today, whose offsets are whole minutes).
                self._local_unit = unit
        else:
            if spec.start_day is not None:
                self._period = 7
                self._anchor = _WEEK_ANCHOR + _WEEKDAYS.index(spec.start_day)
            elif spec.unit == "weeks":
                self._period = 7 * spec.interval
                self._anchor = _WEEK_ANCHOR
            else:
                self._period = spec.interval
                self._anchor = 0  # 1970-01-01
            self._shift = 0 if at is None else at.hour * 3600 + at.minute * 60 + at.second

    def describe(self) -> str:
        """The phrase as written, e.g. "every 15 minutes"."""
        return self.phrase

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (any zone), aware and in UTC."""
        _require_aware(moment)
        after = moment.timestamp()
        # Fire times are whole seconds, so the first one after `after` is the first one
        # after its whole second.
        whole = int(after // 1)
        if self.spec.unit == "hours":
            return _utc(self._next_on_local_hours(whole))
        if self.spec.unit in _UNIT_SECONDS:
            return _utc(self._next_on_grid(whole))
        return _utc(self._next_on_calendar(whole, after))

    def _grid_after(self, whole: int, offset: int) -> int:
        period = self._period
        shift = self._shift - offset % self._local_unit if self._local_unit else self._shift
        return ((whole - shift) // period + 1) * period + shift

    def _next_on_grid(self, whole: int) -> int:
        if not self._local_unit:
            return self._grid_after(whole, 0)
        offset_at = self._zone.offset_at
        return self._grid_after(whole, offset_at(whole))

    def _next_on_local_hours(self, whole: int) -> int:
        """The first slot after `whole` of "N hours": local wall times day + shift + k·N hours.

        Each slot is a wildcard time: none in the spring-forward gap, two (first pass, then
        second) in the repeated hour. Slots are at least an hour apart and a repeated span
        is at most an hour long, so walking them in wall order visits instants in order.
        The walk starts at the slot at or before the wall time `whole` shows: no earlier
        slot fires after `whole`, except in the repeated hour, whose second pass shows
        earlier wall times, so there it starts from the hour's beginning (as cron does).
        """
        zone, step, shift = self._zone, self._period, self._shift
        local = whole + zone.offset_at(whole)
        kind, _, offset1, change = zone.wall(local)
        if kind == _REPEATED:
            local = change + offset1
        day, into_day = divmod(local, _DAY)
        first = max(0, (into_day - shift) // step)
        while True:
            start = day * _DAY
            for wall in range(start + shift + first * step, start + _DAY, step):
                kind, offset0, offset1, _ = zone.wall(wall)
                if kind == _GAP:
                    continue
                for offset in (offset0,) if kind == _NORMAL else (offset0, offset1):
                    if wall - offset > whole:
                        return wall - offset
            day, first = day + 1, 0

    def _next_on_calendar(self, whole: int, after: float) -> int:
        zone, period = self._zone, self._period
        local_day = (whole + zone.offset_at(whole)) // _DAY
        # Start a day early: a time in a gap just before midnight resolves to the next day.
        day = local_day - 1
        day += (self._anchor - day) % period
        while True:
            instant = _fixed_instant(zone, day * _DAY + self._shift)
            if instant > after:
                return instant
            day += period

    def __repr__(self) -> str:
        return f"IntervalTrigger({self.phrase!r}, tz={_zone_name(self.tz)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntervalTrigger):
            return NotImplemented
        return (self.phrase, self.tz) == (other.phrase, other.tz)

    def __hash__(self) -> int:
        return hash((IntervalTrigger, self.phrase, self.tz))


def parse_every(phrase: str, tz: ZoneInfo) -> IntervalTrigger:
    """An `IntervalTrigger` for `phrase` in `tz`; `ValueError` with a readable reason if invalid.

    Units and `at` formats are checked by building a job on a private
    `schedule.Scheduler()`; its `ScheduleValueError`/`IntervalError` become `ValueError`
    sentences such as "'5 fortnights' is not a valid interval: unknown unit 'fortnights'; …".
    """
    return IntervalTrigger(phrase, tz)


# --------------------------------------------------------------------------------------
# Windows of fire times
# --------------------------------------------------------------------------------------


def fire_times(
    trigger: Trigger, after: datetime, until: datetime, limit: int | None = None
) -> list[datetime]:
    """Every fire time in (after, until], oldest first; at most `limit` (the earliest) if given.

    The daemon uses it for catch-up after downtime. An empty list when `until` is not
    after `after`.
    """
    _require_aware(after, "after")
    _require_aware(until, "until")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    end = until.astimezone(UTC)
    found: list[datetime] = []
    moment = after
    while limit is None or len(found) < limit:
        moment = trigger.next_after(moment)
        if moment > end:
            break
        found.append(moment)
    return found
