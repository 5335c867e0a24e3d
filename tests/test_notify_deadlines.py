"""`deadline:`: the last deadline instant, the fire time it guards, and when a job is late."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from lib.notify.deadlines import last_deadline, last_fire_before, late_fire_time
from lib.triggers import parse_cron, parse_every

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_last_deadline_is_today_once_passed_else_yesterday() -> None:
    # 07:00 Paris is 06:00 UTC in winter.
    assert last_deadline(utc(2026, 12, 2, 6, 0), time(7, 0), PARIS) == utc(2026, 12, 2, 6, 0)
    assert last_deadline(utc(2026, 12, 2, 5, 59), time(7, 0), PARIS) == utc(2026, 12, 1, 6, 0)


def test_a_deadline_in_the_spring_forward_gap_is_the_gap_later() -> None:
    # 8 March 2026, New York: 02:00 EST jumps to 03:00 EDT; 02:30 reads as 03:30 EDT = 07:30 UTC.
    assert last_deadline(utc(2026, 3, 8, 12, 0), time(2, 30), NEW_YORK) == utc(2026, 3, 8, 7, 30)


def test_last_fire_before_finds_dense_and_sparse_schedules() -> None:
    every_minute = parse_every("minute", UTC)
    assert last_fire_before(every_minute, utc(2026, 12, 2, 6, 0, 30)) == utc(2026, 12, 2, 6, 0)
    nightly = parse_cron("0 2 * * *", PARIS)  # 01:00 UTC in winter
    assert last_fire_before(nightly, utc(2026, 12, 2, 6, 0)) == utc(2026, 12, 2, 1, 0)
    yearly = parse_cron("@yearly", UTC)
    assert last_fire_before(yearly, utc(2026, 12, 2)) == utc(2026, 1, 1)
    assert last_fire_before(nightly, utc(2026, 12, 2, 1, 0)) == utc(2026, 12, 2, 1, 0)  # at: included


def test_late_when_no_success_between_the_fire_time_and_the_deadline() -> None:
    nightly = parse_cron("0 2 * * *", PARIS)
    at_deadline = utc(2026, 12, 2, 6, 0)
    fire = utc(2026, 12, 2, 1, 0)
    assert late_fire_time(nightly, time(7, 0), PARIS, at_deadline, None) == (fire, at_deadline)
    # Yesterday's success does not count for today's fire time.
    assert late_fire_time(nightly, time(7, 0), PARIS, at_deadline, utc(2026, 12, 1, 1, 20)) == (
        fire,
        at_deadline,
    )
    # A success in time: not late.
    assert late_fire_time(nightly, time(7, 0), PARIS, at_deadline, utc(2026, 12, 2, 1, 20)) is None
    # Before today's deadline, yesterday's deadline is the one that counts.
    assert late_fire_time(nightly, time(7, 0), PARIS, utc(2026, 12, 2, 5, 0), utc(2026, 12, 1, 1, 20)) is None
