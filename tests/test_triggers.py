"""Triggers on fixed tz-aware datetimes, DST days included.

Triggers return UTC (Python compares two datetimes that share a tzinfo by wall time,
ignoring `fold`, so 02:30 CEST and 02:30 CET would look equal); `local()` shows them on
the job's clock where that reads better.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from lib import triggers
from lib.triggers import CronTrigger, IntervalTrigger, fire_times, parse_cron, parse_every

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ZONE_UTC = ZoneInfo("UTC")
KOLKATA = ZoneInfo("Asia/Kolkata")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # 30-minute DST
SANTIAGO = ZoneInfo("America/Santiago")  # DST changes at local midnight
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def in_utc(moments: list[datetime]) -> list[datetime]:
    return [moment.astimezone(UTC) for moment in moments]


def local(moments: list[datetime], zone: ZoneInfo) -> list[str]:
    """Fire times as ISO text on `zone`'s clock, offset included."""
    return [moment.astimezone(zone).isoformat() for moment in moments]


def next_n(trigger: CronTrigger | IntervalTrigger, start: datetime, count: int) -> list[datetime]:
    found, moment = [], start
    for _ in range(count):
        moment = trigger.next_after(moment)
        found.append(moment)
    return found


# --------------------------------------------------------------------------------------
# Cron: syntax
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("*/15 * * * *", utc(2026, 5, 5, 12, 7), [utc(2026, 5, 5, 12, 15), utc(2026, 5, 5, 12, 30)]),
        ("0 6 * * *", utc(2026, 5, 5, 6, 0), [utc(2026, 5, 6, 6), utc(2026, 5, 7, 6)]),
        ("5,35 * * * *", utc(2026, 5, 5, 12, 5), [utc(2026, 5, 5, 12, 35), utc(2026, 5, 5, 13, 5)]),
        ("0 1-5/2 * * *", utc(2026, 5, 5, 0), [utc(2026, 5, 5, 1), utc(2026, 5, 5, 3), utc(2026, 5, 5, 5)]),
        ("50/5 * * * *", utc(2026, 5, 5, 12, 0), [utc(2026, 5, 5, 12, 50), utc(2026, 5, 5, 12, 55)]),
        ("0 9 * jan-mar mon-fri", utc(2026, 3, 31, 10), [utc(2027, 1, 1, 9), utc(2027, 1, 4, 9)]),
        ("0 9 * JAN-MAR Mon-Fri", utc(2026, 3, 31, 10), [utc(2027, 1, 1, 9), utc(2027, 1, 4, 9)]),
        ("0 0 * * 0", utc(2026, 5, 5), [utc(2026, 5, 10), utc(2026, 5, 17)]),
        ("0 0 * * 7", utc(2026, 5, 5), [utc(2026, 5, 10), utc(2026, 5, 17)]),
        ("0 0 * * sun", utc(2026, 5, 5), [utc(2026, 5, 10), utc(2026, 5, 17)]),
        ("0 0 * * fri-sun", utc(2026, 5, 5), [utc(2026, 5, 8), utc(2026, 5, 9), utc(2026, 5, 10)]),
        ("0 0 * * 5-7", utc(2026, 5, 5), [utc(2026, 5, 8), utc(2026, 5, 9), utc(2026, 5, 10)]),
        ("0 0 31 * *", utc(2026, 4, 1), [utc(2026, 5, 31), utc(2026, 7, 31), utc(2026, 8, 31)]),
        ("0 0 29 2 *", utc(2026, 1, 1), [utc(2028, 2, 29), utc(2032, 2, 29)]),
        ("0 0 29 2 *", utc(2096, 3, 1), [utc(2104, 2, 29)]),  # 2100 is not a leap year
        ("0 12 * * *", datetime(2026, 5, 5, 11, 59, 59, 999999, tzinfo=UTC), [utc(2026, 5, 5, 12)]),
    ],
)
def test_cron_next_fire_times_in_utc(expression: str, start: datetime, expected: list[datetime]) -> None:
    trigger = parse_cron(expression, ZONE_UTC)
    assert in_utc(next_n(trigger, start, len(expected))) == expected


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_fire_like_their_five_field_form(macro: str, equivalent: str) -> None:
    start = datetime(2026, 3, 27, 13, 17, tzinfo=BERLIN)
    macro_times = next_n(parse_cron(macro, BERLIN), start, 5)
    field_times = next_n(parse_cron(equivalent, BERLIN), start, 5)
    assert in_utc(macro_times) == in_utc(field_times)
    assert parse_cron(macro, BERLIN).describe() == macro


def test_day_fields_are_ored_when_both_are_restricted() -> None:
    # Vixie cron: "0 0 1,15 * mon" is the 1st, the 15th and every Monday.
    got = next_n(parse_cron("0 0 1,15 * mon", ZONE_UTC), utc(2026, 5, 31), 6)
    days = [(moment.month, moment.day) for moment in got]
    assert days == [(6, 1), (6, 8), (6, 15), (6, 22), (6, 29), (7, 1)]


def test_friday_the_13th_fires_on_every_13th_and_every_friday() -> None:
    got = next_n(parse_cron("0 0 13 * fri", ZONE_UTC), utc(2026, 2, 1), 4)
    assert [(moment.month, moment.day) for moment in got] == [(2, 6), (2, 13), (2, 20), (2, 27)]


def test_day_fields_are_anded_when_one_starts_with_a_star() -> None:
    # cron.c sets DOM_STAR when the field *starts* with "*", so "*/2" with a weekday means
    # "odd days that are Mondays", not "odd days or Mondays".
    got = next_n(parse_cron("0 0 */2 * mon", ZONE_UTC), utc(2026, 5, 1), 3)
    assert [(moment.month, moment.day) for moment in got] == [(5, 11), (5, 25), (6, 1)]
    assert all(moment.weekday() == 0 and moment.day % 2 == 1 for moment in got)
    # Day of week only (day-of-month "*"):
    got = next_n(parse_cron("0 0 * * mon", ZONE_UTC), utc(2026, 5, 1), 2)
    assert [(moment.month, moment.day) for moment in got] == [(5, 4), (5, 11)]


CRON_ERROR = "is not a valid cron expression"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", f"'61 * * * *' {CRON_ERROR}: minute must be 0-59"),
        (
            "* * * * * *",
            f"'* * * * * *' {CRON_ERROR}: "
            "expected 5 fields (minute hour day-of-month month day-of-week), got 6",
        ),
        (
            "* * * *",
            f"'* * * *' {CRON_ERROR}: expected 5 fields (minute hour day-of-month month day-of-week), got 4",
        ),
        ("", f"'' {CRON_ERROR}: expected 5 fields (minute hour day-of-month month day-of-week), got 0"),
        ("0 24 * * *", f"'0 24 * * *' {CRON_ERROR}: hour must be 0-23"),
        ("0 0 0 * *", f"'0 0 0 * *' {CRON_ERROR}: day-of-month must be 1-31"),
        ("0 0 32 * *", f"'0 0 32 * *' {CRON_ERROR}: day-of-month must be 1-31"),
        ("0 0 * 13 *", f"'0 0 * 13 *' {CRON_ERROR}: month must be 1-12 or jan-dec"),
        ("0 0 * foo *", f"'0 0 * foo *' {CRON_ERROR}: month must be 1-12 or jan-dec"),
        ("0 0 * * 8", f"'0 0 * * 8' {CRON_ERROR}: day-of-week must be 0-7 or sun-sat"),
        ("0 0 * * funday", f"'0 0 * * funday' {CRON_ERROR}: day-of-week must be 0-7 or sun-sat"),
        ("mon * * * *", f"'mon * * * *' {CRON_ERROR}: minute must be 0-59"),
        ("-5 * * * *", f"'-5 * * * *' {CRON_ERROR}: minute must be 0-59"),
        ("1,,2 * * * *", f"'1,,2 * * * *' {CRON_ERROR}: minute must be 0-59"),
        ("? * * * *", f"'? * * * *' {CRON_ERROR}: minute must be 0-59"),
        ("*/0 * * * *", f"'*/0 * * * *' {CRON_ERROR}: minute step must be a whole number of at least 1"),
        ("*/x * * * *", f"'*/x * * * *' {CRON_ERROR}: minute step must be a whole number of at least 1"),
        (
            "0 22-2 * * *",
            f"'0 22-2 * * *' {CRON_ERROR}: hour range 22-2 runs backwards: write 22-23,0-2 instead",
        ),
        (
            "0 0 * nov-feb *",
            f"'0 0 * nov-feb *' {CRON_ERROR}: month range nov-feb runs backwards: write 11-12,1-2 instead",
        ),
        ("0 0 31 2 *", f"'0 0 31 2 *' {CRON_ERROR}: it never fires, because February has no day 31"),
        (
            "0 0 30,31 feb *",
            f"'0 0 30,31 feb *' {CRON_ERROR}: it never fires, because February has no day 30 or 31",
        ),
        (
            "0 0 31 4,6 *",
            f"'0 0 31 4,6 *' {CRON_ERROR}: it never fires, because April and June have no day 31",
        ),
        ("0 0 31 2 */7", f"'0 0 31 2 */7' {CRON_ERROR}: it never fires, because February has no day 31"),
        (
            "@reboot",
            f"'@reboot' {CRON_ERROR}: @reboot is not supported, because the scheduler has no boot to run at; "
            "use a schedule such as @daily or '0 6 * * *', or start a run by hand with run-now",
        ),
        (
            "@fortnightly",
            f"'@fortnightly' {CRON_ERROR}: unknown macro @fortnightly; use one of @yearly, @annually, "
            "@monthly, @weekly, @daily, @midnight, @hourly or five fields",
        ),
    ],
)
def test_invalid_cron_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_cron(expression, BERLIN)
    assert str(excinfo.value) == message


def test_both_day_fields_restricted_is_never_impossible() -> None:
    # Day 31 never occurs in February, but with a weekday too the weekday alone fires.
    got = parse_cron("0 0 31 2 mon", ZONE_UTC).next_after(utc(2026, 1, 1))
    assert got.astimezone(UTC) == utc(2026, 2, 2)


def test_cron_agrees_with_croniter_in_utc() -> None:
    """croniter as a reference where DST plays no part (and day fields are '*' or plain)."""
    pools = [
        ["*", "0", "*/15", "5,35", "10-20/5", "59", "*/7"],
        ["*", "0", "2", "9-17", "*/6", "23", "1,13"],
        ["*", "1", "15", "1,15", "28-31", "31", "10-12"],
        ["*", "1", "2", "feb", "jan-jun", "*/3", "12"],
        ["*", "0", "mon-fri", "sat,sun", "5", "7", "1-3"],
    ]
    rng = random.Random(20260329)
    checked = 0
    while checked < 300:
        expression = " ".join(rng.choice(pool) for pool in pools)
        try:
            trigger = parse_cron(expression, ZONE_UTC)
        except ValueError:
            continue
        checked += 1
        start = utc(2026, 1, 1) + timedelta(seconds=rng.randrange(3 * 365 * 86400))
        reference = croniter(expression, start.replace(tzinfo=None))
        moment = start
        for _ in range(3):
            moment = trigger.next_after(moment)
            assert moment.astimezone(UTC).replace(tzinfo=None) == reference.get_next(datetime), expression


# --------------------------------------------------------------------------------------
# Cron: daylight saving time
# --------------------------------------------------------------------------------------


def test_berlin_spring_forward_fixed_time_runs_once_when_the_clock_jumps() -> None:
    trigger = parse_cron("30 2 * * *", BERLIN)  # 02:30 does not exist on 2026-03-29
    got = next_n(trigger, datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3)
    assert in_utc(got) == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]
    assert local(got[:2], BERLIN) == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_several_times_in_the_gap_collapse_into_one_run() -> None:
    got = fire_times(parse_cron("0,30 2 * * *", BERLIN), utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert in_utc(got) == [utc(2026, 3, 29, 1)]


def test_fixed_time_job_just_before_and_after_the_gap_is_unaffected() -> None:
    got = fire_times(parse_cron("59 1,3 * * *", BERLIN), utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert local(got, BERLIN) == [
        "2026-03-29T01:59:00+01:00",
        "2026-03-29T03:59:00+02:00",
    ]


def test_berlin_fall_back_fixed_time_runs_once_at_the_first_occurrence() -> None:
    trigger = parse_cron("30 2 * * *", BERLIN)  # 02:30 happens twice on 2026-10-25
    got = next_n(trigger, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3)
    assert in_utc(got) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), utc(2026, 10, 27, 1, 30)]
    assert local(got[:1], BERLIN) == ["2026-10-25T02:30:00+02:00"]
    # Asked from inside the repeated hour, after the first 02:30: not again at 02:30 CET.
    second_pass = utc(2026, 10, 25, 1, 10)  # 02:10 CET
    assert trigger.next_after(second_pass).astimezone(UTC) == utc(2026, 10, 26, 1, 30)


@pytest.mark.parametrize("expression", ["0 * * * *", "@hourly"])
@pytest.mark.parametrize(
    ("day", "runs"),
    [
        (datetime(2026, 3, 29, tzinfo=BERLIN), 23),  # spring forward: a 23-hour day
        (datetime(2026, 10, 25, tzinfo=BERLIN), 25),  # fall back: a 25-hour day
    ],
)
def test_hourly_job_fires_every_real_hour_through_berlin_transitions(
    expression: str, day: datetime, runs: int
) -> None:
    got = in_utc(
        fire_times(parse_cron(expression, BERLIN), day, day + timedelta(days=1) - timedelta(seconds=1))
    )
    start = day.astimezone(UTC)
    assert got == [start + timedelta(hours=hour) for hour in range(1, runs)]
    assert len(got) == runs - 1  # the local midnight that ends the day is excluded


@pytest.mark.parametrize(
    ("after", "until"),
    [
        (utc(2026, 3, 28, 22), utc(2026, 3, 29, 4)),
        (utc(2026, 10, 24, 22), utc(2026, 10, 25, 4)),
        (utc(2026, 3, 8, 4), utc(2026, 3, 8, 10)),
        (utc(2026, 11, 1, 3), utc(2026, 11, 1, 9)),
    ],
)
@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK])
def test_every_15_minutes_keeps_15_real_minutes_apart(
    zone: ZoneInfo, after: datetime, until: datetime
) -> None:
    got = in_utc(fire_times(parse_cron("*/15 * * * *", zone), after, until))
    assert got == [after + timedelta(minutes=15 * step) for step in range(1, 25)]


def test_wildcard_hour_job_skips_the_missing_half_hour_instead_of_running_at_the_jump() -> None:
    # "30 * * * *" is a wildcard job (hour "*"): 02:30 does not exist, and it does not run
    # at 03:00 either; it runs at every real :30, an hour apart.
    got = fire_times(parse_cron("30 * * * *", BERLIN), utc(2026, 3, 28, 23), utc(2026, 3, 29, 2))
    assert in_utc(got) == [utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30)]


def test_wildcard_job_asked_from_inside_the_repeated_hour() -> None:
    trigger = parse_cron("5 * * * *", BERLIN)
    # 02:10 CEST (first pass): the next real :05 is 02:05 CET, an earlier wall time.
    got = trigger.next_after(utc(2026, 10, 25, 0, 10))
    assert got.astimezone(UTC) == utc(2026, 10, 25, 1, 5)
    assert local([got], BERLIN) == ["2026-10-25T02:05:00+01:00"]
    assert got.tzinfo is UTC
    # 02:10 CET (second pass): next is 03:05 CET.
    assert trigger.next_after(utc(2026, 10, 25, 1, 10)).astimezone(UTC) == utc(2026, 10, 25, 2, 5)
    # The same instant given in another zone gives the same answer.
    assert trigger.next_after(utc(2026, 10, 25, 0, 10).astimezone(TOKYO)).astimezone(UTC) == utc(
        2026, 10, 25, 1, 5
    )


def test_new_york_spring_forward_and_fall_back() -> None:
    spring = next_n(parse_cron("30 2 * * *", NEW_YORK), datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), 2)
    assert local(spring, NEW_YORK) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    fall = next_n(parse_cron("30 1 * * *", NEW_YORK), datetime(2026, 10, 31, 12, tzinfo=NEW_YORK), 2)
    assert in_utc(fall) == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    hourly = in_utc(fire_times(parse_cron("0 * * * *", NEW_YORK), utc(2026, 11, 1, 3), utc(2026, 11, 1, 8)))
    assert hourly == [utc(2026, 11, 1, hour) for hour in range(4, 9)]


def test_utc_jobs_have_no_surprises_on_european_dst_days() -> None:
    got = fire_times(parse_cron("30 2 * * *", ZONE_UTC), utc(2026, 3, 28), utc(2026, 3, 31))
    assert got == [utc(2026, 3, 28, 2, 30), utc(2026, 3, 29, 2, 30), utc(2026, 3, 30, 2, 30)]


def test_midnight_that_does_not_exist_runs_when_the_clock_jumps() -> None:
    # Chile springs forward at 24:00: 2026-09-06 00:00 never happens, 01:00 follows 23:59:59.
    got = next_n(parse_cron("@daily", SANTIAGO), datetime(2026, 9, 5, 12, tzinfo=SANTIAGO), 2)
    assert local(got, SANTIAGO) == [
        "2026-09-06T01:00:00-03:00",
        "2026-09-07T00:00:00-03:00",
    ]


def _reference_cron_fires(
    expression: str, zone: ZoneInfo, after: datetime, until: datetime
) -> list[datetime]:
    """The documented semantics, minute by minute over real time, as an independent oracle.

    Field values come from croniter.expand; the fixed/wildcard rule and the day rule are
    cron.c's. Fixed-time jobs fire at the first occurrence of a repeated time and at the
    jump for a skipped time; wildcard jobs fire at every real minute whose wall time matches.
    """
    fields, _ = croniter.expand(expression)
    parts = expression.split()

    def allowed(index: int, value: int) -> bool:
        return fields[index] == ["*"] or value in fields[index]

    def matches(wall: datetime) -> bool:
        if not (allowed(0, wall.minute) and allowed(1, wall.hour) and allowed(3, wall.month)):
            return False
        dom, dow = allowed(2, wall.day), allowed(4, (wall.weekday() + 1) % 7)
        if parts[2].startswith("*") or parts[4].startswith("*"):
            return dom and dow
        return dom or dow

    wildcard = parts[0].startswith("*") or parts[1].startswith("*")
    fires = []
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    previous_wall = (moment - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
    while moment <= until:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None)
        fire = matches(wall) and (wildcard or local.fold == 0)
        skipped = previous_wall + timedelta(minutes=1)
        while not wildcard and skipped < wall:  # wall times the clock jumped over
            fire = fire or matches(skipped)
            skipped += timedelta(minutes=1)
        if fire:
            fires.append(moment)
        previous_wall = wall
        moment += timedelta(minutes=1)
    return fires


DST_WINDOWS = [
    (BERLIN, utc(2026, 3, 28, 20), utc(2026, 3, 29, 8)),
    (BERLIN, utc(2026, 10, 24, 20), utc(2026, 10, 25, 8)),
    (NEW_YORK, utc(2026, 3, 8, 2), utc(2026, 3, 8, 14)),
    (NEW_YORK, utc(2026, 11, 1, 2), utc(2026, 11, 1, 14)),
    (LORD_HOWE, utc(2026, 10, 3, 10), utc(2026, 10, 3, 20)),
    (LORD_HOWE, utc(2026, 4, 4, 10), utc(2026, 4, 4, 20)),
    (SANTIAGO, utc(2026, 9, 5, 22), utc(2026, 9, 6, 8)),
    (SANTIAGO, utc(2026, 4, 4, 22), utc(2026, 4, 5, 8)),
]


@pytest.mark.parametrize(
    "expression",
    [
        "30 2 * * *",
        "0 2 * * *",
        "0,30 2 * * *",
        "15 1-3 * * *",
        "0 0 * * *",
        "59 23 * * *",
        "0 * * * *",
        "*/15 * * * *",
        "30 * * * *",
        "0 */2 * * *",
        "*/10 2 * * *",
        "45 1 * * sun",
    ],
)
@pytest.mark.parametrize(("zone", "after", "until"), DST_WINDOWS, ids=lambda value: str(value))
def test_cron_matches_the_reference_semantics_on_dst_days(
    expression: str, zone: ZoneInfo, after: datetime, until: datetime
) -> None:
    got = in_utc(fire_times(parse_cron(expression, zone), after, until))
    assert got == _reference_cron_fires(expression, zone, after, until)


# --------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "start", "expected"),
    [
        ("15 minutes", utc(2026, 5, 5, 12, 7, 30), [utc(2026, 5, 5, 12, 15), utc(2026, 5, 5, 12, 30)]),
        ("every 15 minutes", utc(2026, 5, 5, 12, 15), [utc(2026, 5, 5, 12, 30), utc(2026, 5, 5, 12, 45)]),
        ("30 seconds", utc(2026, 5, 5, 12, 0, 10), [utc(2026, 5, 5, 12, 0, 30), utc(2026, 5, 5, 12, 1)]),
        ("second", utc(2026, 5, 5, 12), [utc(2026, 5, 5, 12, 0, 1), utc(2026, 5, 5, 12, 0, 2)]),
        ("minute", utc(2026, 5, 5, 12, 0, 59), [utc(2026, 5, 5, 12, 1), utc(2026, 5, 5, 12, 2)]),
        ("2 hours", utc(2026, 5, 5, 13), [utc(2026, 5, 5, 14), utc(2026, 5, 5, 16)]),
        ("hour", utc(2026, 5, 5, 13, 30), [utc(2026, 5, 5, 14), utc(2026, 5, 5, 15)]),
        ("Every Hour", utc(2026, 5, 5, 13, 30), [utc(2026, 5, 5, 14), utc(2026, 5, 5, 15)]),
        ("7 minutes", utc(1970, 1, 1, 0, 0), [utc(1970, 1, 1, 0, 7), utc(1970, 1, 1, 0, 14)]),
        ("hour at :15", utc(2026, 5, 5, 13, 15), [utc(2026, 5, 5, 14, 15), utc(2026, 5, 5, 15, 15)]),
        (
            "hour at 15:30",
            utc(2026, 5, 5, 13, 20),
            [utc(2026, 5, 5, 14, 15, 30), utc(2026, 5, 5, 15, 15, 30)],
        ),
        (
            "minute at :30",
            utc(2026, 5, 5, 13, 0, 45),
            [utc(2026, 5, 5, 13, 1, 30), utc(2026, 5, 5, 13, 2, 30)],
        ),
        ("2 hours at :15", utc(2026, 5, 5, 13), [utc(2026, 5, 5, 14, 15), utc(2026, 5, 5, 16, 15)]),
    ],
)
def test_intervals_on_ordinary_days(phrase: str, start: datetime, expected: list[datetime]) -> None:
    assert in_utc(next_n(parse_every(phrase, BERLIN), start, len(expected))) == expected


def test_a_restart_does_not_shift_the_grid() -> None:
    trigger = parse_every("15 minutes", ZONE_UTC)
    for minute in range(60):
        got = trigger.next_after(utc(2026, 5, 5, 12, minute, 17))
        assert got.minute % 15 == 0 and got.second == 0


@pytest.mark.parametrize(
    ("after", "until"),
    [(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3)), (utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))],
)
def test_elapsed_intervals_ignore_dst(after: datetime, until: datetime) -> None:
    got = in_utc(fire_times(parse_every("15 minutes", BERLIN), after, until))
    assert got == [after + timedelta(minutes=15 * step) for step in range(1, 17)]
    hourly = in_utc(fire_times(parse_every("hour at :15", BERLIN), after, until))
    assert hourly == [after + timedelta(hours=step, minutes=15) for step in range(4)]


def test_hours_follow_the_local_clock_in_half_hour_zones_and_minutes_stay_elapsed() -> None:
    got = next_n(parse_every("hour at :15", KOLKATA), utc(2026, 5, 5, 12), 2)
    assert local(got, KOLKATA) == ["2026-05-05T18:15:00+05:30", "2026-05-05T19:15:00+05:30"]
    # "hour" is the local hour too, and counts from local midnight ...
    assert local([parse_every("hour", KOLKATA).next_after(utc(2026, 5, 5, 12))], KOLKATA) == [
        "2026-05-05T18:00:00+05:30"
    ]
    # ... while "60 minutes" is elapsed time on the epoch (UTC) grid: :30 on Kolkata's clock.
    assert local([parse_every("60 minutes", KOLKATA).next_after(utc(2026, 5, 5, 12))], KOLKATA) == [
        "2026-05-05T18:30:00+05:30"
    ]


def test_hour_at_through_lord_howe_half_hour_dst() -> None:
    # 2026-10-04 02:00 (+10:30) jumps to 02:30 (+11): 02:15 never shows on the clock.
    spring = next_n(parse_every("hour at :15", LORD_HOWE), datetime(2026, 10, 4, 0, 30, tzinfo=LORD_HOWE), 3)
    assert local(spring, LORD_HOWE) == [
        "2026-10-04T01:15:00+10:30",
        "2026-10-04T03:15:00+11:00",
        "2026-10-04T04:15:00+11:00",
    ]
    # 2026-04-05 02:00 (+11) goes back to 01:30 (+10:30): 01:15 is not repeated.
    fall = next_n(parse_every("hour at :15", LORD_HOWE), datetime(2026, 4, 5, 0, 30, tzinfo=LORD_HOWE), 3)
    assert local(fall, LORD_HOWE) == [
        "2026-04-05T01:15:00+11:00",
        "2026-04-05T02:15:00+10:30",
        "2026-04-05T03:15:00+10:30",
    ]


# "6 hours" on both DST days of New York and Berlin: 00:00, 06:00, 12:00, 18:00 local each
# day, so the gap across the change is 5 real hours in spring and 7 in autumn.
SIX_HOURS_ON_DST_DAYS = [
    (NEW_YORK, "2026-03-08", "-05:00", "-04:00", [5, 10, 16, 22]),
    (NEW_YORK, "2026-11-01", "-04:00", "-05:00", [4, 11, 17, 23]),
    (BERLIN, "2026-03-29", "+01:00", "+02:00", [-1, 4, 10, 16]),
    (BERLIN, "2026-10-25", "+02:00", "+01:00", [-2, 5, 11, 17]),
]


@pytest.mark.parametrize(("zone", "day", "before", "after", "utc_hours"), SIX_HOURS_ON_DST_DAYS)
def test_six_hours_aligns_to_local_midnight_on_dst_days(
    zone: ZoneInfo, day: str, before: str, after: str, utc_hours: list[int]
) -> None:
    midnight = datetime.fromisoformat(f"{day}T00:00:00{before}")
    got = fire_times(
        parse_every("6 hours", zone), midnight - timedelta(hours=1), midnight + timedelta(hours=20)
    )
    assert local(got, zone) == [
        f"{day}T00:00:00{before}",
        f"{day}T06:00:00{after}",
        f"{day}T12:00:00{after}",
        f"{day}T18:00:00{after}",
    ]
    day_start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    assert got == [day_start + timedelta(hours=hour) for hour in utc_hours]


@pytest.mark.parametrize(
    ("zone", "day", "real_gap"),
    [
        (NEW_YORK, "2026-03-08", 5),
        (NEW_YORK, "2026-11-01", 7),
        (BERLIN, "2026-03-29", 5),
        (BERLIN, "2026-10-25", 7),
    ],
)
def test_six_hours_gap_across_the_change_is_one_hour_shorter_or_longer(
    zone: ZoneInfo, day: str, real_gap: int
) -> None:
    noon_before = datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=zone) - timedelta(days=1)
    got = fire_times(parse_every("6 hours", zone), noon_before, noon_before + timedelta(days=2))
    gaps = [(later - earlier) / timedelta(hours=1) for earlier, later in pairwise(got)]
    assert sorted(gaps) == sorted([6.0] * (len(gaps) - 1) + [float(real_gap)])
    # And every fire time shows a multiple of six hours on the local clock, on the hour.
    assert {(fire.astimezone(zone).hour % 6, fire.astimezone(zone).minute) for fire in got} == {(0, 0)}


@pytest.mark.parametrize(("zone", "after", "until"), DST_WINDOWS, ids=lambda value: str(value))
@pytest.mark.parametrize(
    ("phrase", "cron"),
    [
        ("hour", "0 * * * *"),
        ("hour at :30", "30 * * * *"),
        ("2 hours at :15", "15 */2 * * *"),
        ("3 hours at :45", "45 */3 * * *"),
        ("5 hours", "0 */5 * * *"),
    ],
)
def test_hour_intervals_fire_like_their_cron_wildcard_job(
    phrase: str, cron: str, zone: ZoneInfo, after: datetime, until: datetime
) -> None:
    interval, reference = parse_every(phrase, zone), parse_cron(cron, zone)
    assert fire_times(interval, after, until) == fire_times(reference, after, until)
    # From any moment, not only from fire times: inside the repeated hour too.
    moment = after
    while moment < until:
        assert interval.next_after(moment) == reference.next_after(moment), moment
        moment += timedelta(minutes=4, seconds=7)


def test_hours_not_dividing_the_day_restart_at_local_midnight() -> None:
    got = fire_times(parse_every("5 hours", NEW_YORK), utc(2026, 5, 5, 4), utc(2026, 5, 6, 4))
    assert [fire.astimezone(NEW_YORK).hour for fire in got] == [5, 10, 15, 20, 0]


def test_day_at_a_local_time() -> None:
    got = next_n(parse_every("day at 06:00", BERLIN), utc(2026, 5, 5, 4), 2)
    assert local(got, BERLIN) == [
        "2026-05-06T06:00:00+02:00",
        "2026-05-07T06:00:00+02:00",
    ]
    seconds = parse_every("day at 06:00:30", NEW_YORK).next_after(utc(2026, 5, 5, 12))
    assert local([seconds], NEW_YORK) == ["2026-05-06T06:00:30-04:00"]
    every_day = parse_every("every day at 6:00", BERLIN).next_after(utc(2026, 5, 5))
    assert local([every_day], BERLIN) == ["2026-05-05T06:00:00+02:00"]


def test_day_at_follows_the_cron_dst_rules() -> None:
    trigger = parse_every("day at 02:30", BERLIN)
    spring = fire_times(trigger, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    assert local(spring, BERLIN) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    fall = fire_times(trigger, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert in_utc(fall) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    new_york = fire_times(parse_every("day at 02:30", NEW_YORK), utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    assert local(new_york, NEW_YORK) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    # A DST day is 23 or 25 hours long, but a daily job still fires at the same local time.
    midnight = fire_times(parse_every("day", BERLIN), utc(2026, 10, 24), utc(2026, 10, 27))
    assert local(midnight, BERLIN) == [
        "2026-10-25T00:00:00+02:00",
        "2026-10-26T00:00:00+01:00",
        "2026-10-27T00:00:00+01:00",
    ]


def test_every_n_days_counts_from_1970_01_01() -> None:
    got = next_n(parse_every("3 days", BERLIN), utc(2026, 5, 5), 4)
    for moment in (fire.astimezone(BERLIN) for fire in got):
        assert (moment.hour, moment.minute) == (0, 0)
        assert (moment.date() - datetime(1970, 1, 1).date()).days % 3 == 0
    assert local(got[:2], BERLIN) == [
        "2026-05-07T00:00:00+02:00",
        "2026-05-10T00:00:00+02:00",
    ]
    with_time = parse_every("3 days at 07:15", BERLIN).next_after(utc(2026, 5, 6, 6))
    assert local([with_time], BERLIN) == ["2026-05-07T07:15:00+02:00"]


def test_weeks_are_mondays_at_local_midnight_on_an_epoch_grid() -> None:
    weekly = next_n(parse_every("week", NEW_YORK), utc(2026, 5, 5), 2)
    assert local(weekly, NEW_YORK) == [
        "2026-05-11T00:00:00-04:00",
        "2026-05-18T00:00:00-04:00",
    ]
    fortnightly = next_n(parse_every("2 weeks", NEW_YORK), utc(2026, 5, 5), 3)
    for moment in (fire.astimezone(NEW_YORK) for fire in fortnightly):
        assert moment.weekday() == 0 and (moment.hour, moment.minute) == (0, 0)
        assert (moment.date() - datetime(1969, 12, 29).date()).days % 14 == 0
    assert in_utc(fortnightly)[1] - in_utc(fortnightly)[0] == timedelta(days=14)


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("monday at 09:00", "2026-05-11T09:00:00+02:00"),
        ("tuesday at 09:00", "2026-05-12T09:00:00+02:00"),
        ("wednesday at 09:00", "2026-05-06T09:00:00+02:00"),
        ("thursday at 09:00", "2026-05-07T09:00:00+02:00"),
        ("friday at 23:59:59", "2026-05-08T23:59:59+02:00"),
        ("saturday at 00:00", "2026-05-09T00:00:00+02:00"),
        ("sunday", "2026-05-10T00:00:00+02:00"),
        ("every monday", "2026-05-11T00:00:00+02:00"),
    ],
)
def test_weekdays(phrase: str, expected: str) -> None:
    start = datetime(2026, 5, 5, 10, tzinfo=BERLIN)  # a Tuesday, after 09:00
    trigger = parse_every(phrase, BERLIN)
    first = trigger.next_after(start)
    assert local([first], BERLIN) == [expected]
    assert in_utc([trigger.next_after(first)])[0] - first.astimezone(UTC) == timedelta(days=7)


def test_describe_returns_the_phrase_as_written() -> None:
    assert parse_every("  every 15 minutes ", BERLIN).describe() == "every 15 minutes"
    assert parse_every("Monday at 09:00", BERLIN).describe() == "Monday at 09:00"
    assert parse_cron(" 30 2 * * * ", BERLIN).describe() == "30 2 * * *"


INTERVAL_HINT = "use e.g. 30 seconds, 15 minutes, 2 hours, day at 06:00 or monday at 09:00"


@pytest.mark.parametrize(
    ("phrase", "message"),
    [
        ("0 minutes", f"'0 minutes' is not a valid interval: the number must be at least 1; {INTERVAL_HINT}"),
        (
            "5 fortnights",
            "'5 fortnights' is not a valid interval: unknown unit 'fortnights'; use seconds, minutes, hours, "
            "days, weeks or a weekday (monday to sunday)",
        ),
        (
            "day at 25:00",
            "'day at 25:00' is not a valid interval: the time must be HH:MM or HH:MM:SS between 00:00 and "
            "23:59:59, e.g. day at 06:00",
        ),
        (
            "day at 6",
            "'day at 6' is not a valid interval: the time must be HH:MM or HH:MM:SS between 00:00 and "
            "23:59:59, e.g. day at 06:00",
        ),
        (
            "hour at 1:2",
            "'hour at 1:2' is not a valid interval: the time must be :MM or MM:SS, e.g. hour at :15",
        ),
        ("minute at 10", "'minute at 10' is not a valid interval: the time must be :SS, e.g. minute at :30"),
        ("2 minute", "'2 minute' is not a valid interval: write 2 minutes"),
        (
            "2 monday",
            "'2 monday' is not a valid interval: "
            "a weekday runs every week; drop the number (monday at 09:00)",
        ),
        (
            "30 seconds at :10",
            "'30 seconds at :10' is not a valid interval: "
            "'at' goes with day(s), hour(s), minute(s) or a weekday",
        ),
        (
            "week at 09:00",
            "'week at 09:00' is not a valid interval: 'at' goes with day(s), hour(s), minute(s) or a weekday",
        ),
        ("", f"'' is not a valid interval: {INTERVAL_HINT}"),
        ("every", f"'every' is not a valid interval: {INTERVAL_HINT}"),
        ("1.5 hours", f"'1.5 hours' is not a valid interval: {INTERVAL_HINT}"),
        (
            "48 hours",
            "'48 hours' is not a valid interval: hour intervals restart at local midnight, "
            "so the number must be 1-24; write 2 days",
        ),
        (
            "25 hours",
            "'25 hours' is not a valid interval: hour intervals restart at local midnight, "
            "so the number must be 1-24; use days or a cron schedule",
        ),
        ("-5 minutes", f"'-5 minutes' is not a valid interval: {INTERVAL_HINT}"),
    ],
)
def test_invalid_intervals_say_what_is_wrong(phrase: str, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_every(phrase, BERLIN)
    assert str(excinfo.value) == message


def test_parsing_never_registers_a_job_with_schedule() -> None:
    # Jobs are built to validate phrases but never `do()`ne: schedule's next_run reads the clock.
    parse_every("day at 06:00", BERLIN)
    parse_every("monday at 09:00", BERLIN)
    assert triggers._SCHEDULER.jobs == []


# --------------------------------------------------------------------------------------
# Properties shared by every trigger
# --------------------------------------------------------------------------------------

PROPERTY_TRIGGERS = [
    parse_cron("30 2 * * *", BERLIN),
    parse_cron("*/15 * * * *", BERLIN),
    parse_cron("5 * * * *", BERLIN),
    parse_cron("0 */2 * * *", NEW_YORK),
    parse_cron("0 0 1,15 * mon", NEW_YORK),
    parse_cron("* * * * *", LORD_HOWE),
    parse_every("day at 02:30", BERLIN),
    parse_every("hour at :15", LORD_HOWE),
    parse_every("6 hours", NEW_YORK),
    parse_every("2 hours at :30", BERLIN),
    parse_every("45 seconds", NEW_YORK),
    parse_every("2 weeks", ZONE_UTC),
]


@pytest.mark.parametrize("trigger", PROPERTY_TRIGGERS, ids=repr)
@pytest.mark.parametrize(
    "around",
    [
        utc(2026, 3, 29, 1),
        utc(2026, 10, 25, 1),
        utc(2026, 3, 8, 7),
        utc(2026, 11, 1, 6),
        utc(2026, 10, 3, 15, 30),
    ],
)
def test_next_after_is_strictly_after_in_utc_and_has_nothing_in_between(
    trigger: CronTrigger | IntervalTrigger, around: datetime
) -> None:
    moment = around - timedelta(hours=3)
    while moment < around + timedelta(hours=3):
        got = trigger.next_after(moment)
        assert got.tzinfo is UTC
        assert got.astimezone(UTC) > moment
        # Nothing fires between `moment` and `got`: a moment just before `got` leads to it.
        just_before = got.astimezone(UTC) - timedelta(microseconds=1)
        if just_before > moment:
            assert trigger.next_after(just_before).astimezone(UTC) == got.astimezone(UTC)
        # Any zone in, the same instant out.
        assert trigger.next_after(moment.astimezone(TOKYO)).astimezone(UTC) == got.astimezone(UTC)
        moment += timedelta(minutes=7, seconds=13, microseconds=1)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="moment must be a timezone-aware datetime"):
        parse_cron("* * * * *", BERLIN).next_after(datetime(2026, 5, 5))
    with pytest.raises(ValueError, match="moment must be a timezone-aware datetime"):
        parse_every("hour", BERLIN).next_after(datetime(2026, 5, 5))
    with pytest.raises(ValueError, match="until must be a timezone-aware datetime"):
        fire_times(parse_every("hour", BERLIN), utc(2026, 5, 5), datetime(2026, 5, 6))


def test_triggers_compare_and_print_by_their_definition() -> None:
    assert parse_cron("0 6 * * *", BERLIN) == CronTrigger("0 6 * * *", BERLIN)
    assert parse_cron("0 6 * * *", BERLIN) != parse_cron("0 6 * * *", NEW_YORK)
    assert parse_every("hour", BERLIN) == IntervalTrigger("hour", BERLIN)
    assert len({parse_every("hour", BERLIN), parse_every("hour", BERLIN)}) == 1
    assert repr(parse_cron("0 6 * * *", BERLIN)) == "CronTrigger('0 6 * * *', tz='Europe/Berlin')"
    assert repr(parse_every("hour", BERLIN)) == "IntervalTrigger('hour', tz='Europe/Berlin')"


# --------------------------------------------------------------------------------------
# fire_times
# --------------------------------------------------------------------------------------


def test_fire_times_is_every_fire_time_in_the_half_open_window() -> None:
    trigger = parse_cron("0 * * * *", ZONE_UTC)
    got = fire_times(trigger, utc(2026, 5, 5, 1), utc(2026, 5, 5, 4))
    assert got == [utc(2026, 5, 5, 2), utc(2026, 5, 5, 3), utc(2026, 5, 5, 4)]  # (after, until]


def test_fire_times_limit_keeps_the_earliest() -> None:
    trigger = parse_every("15 minutes", ZONE_UTC)
    assert fire_times(trigger, utc(2026, 5, 5), utc(2026, 5, 6), limit=2) == [
        utc(2026, 5, 5, 0, 15),
        utc(2026, 5, 5, 0, 30),
    ]
    assert fire_times(trigger, utc(2026, 5, 5), utc(2026, 5, 6), limit=0) == []
    assert len(fire_times(trigger, utc(2026, 5, 5), utc(2026, 5, 6))) == 96


def test_fire_times_of_an_empty_or_backwards_window_is_empty() -> None:
    trigger = parse_cron("0 * * * *", ZONE_UTC)
    assert fire_times(trigger, utc(2026, 5, 5, 1, 10), utc(2026, 5, 5, 1, 50)) == []
    assert fire_times(trigger, utc(2026, 5, 5, 5), utc(2026, 5, 5, 1)) == []


def test_fire_times_over_the_fall_back_hour_lists_both_passes_in_order() -> None:
    got = fire_times(parse_cron("*/30 * * * *", BERLIN), utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 2))
    assert local(got, BERLIN) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    assert in_utc(got) == sorted(in_utc(got))
