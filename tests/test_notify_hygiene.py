"""Repeats, `after: N` and quiet hours, on fixed aware datetimes (DST nights included)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lib.notify.hygiene import AlertState, QuietHours, decide, quiet_until

T0 = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
BERLIN_NIGHT = QuietHours.parse("22:00", "07:00", "Europe/Berlin")


def test_the_same_failure_is_held_back_until_repeat_every_and_counted() -> None:
    state = AlertState()
    first = decide("failed", "k1", 1, T0, state)
    assert first.action == "send" and first.suppressed == 0
    second = decide("failed", "k1", 2, T0 + timedelta(hours=1), first.state)
    third = decide("failed", "k1", 3, T0 + timedelta(hours=2), second.state)
    assert (second.action, third.action, third.state.suppressed) == ("suppress", "suppress", 2)
    # 24 h after the last one sent: it goes again, saying how many were held back.
    again = decide("failed", "k1", 4, T0 + timedelta(hours=24), third.state)
    assert (again.action, again.suppressed, again.state.suppressed) == ("send", 2, 0)
    assert again.state.last_sent_at == T0 + timedelta(hours=24)


def test_a_different_failure_goes_at_once_with_the_held_back_count() -> None:
    first = decide("failed", "k1", 1, T0, AlertState())
    held = decide("failed", "k1", 2, T0 + timedelta(hours=1), first.state)
    other = decide("failed", "k2", 3, T0 + timedelta(hours=2), held.state)
    assert (other.action, other.suppressed, other.state.last_key) == ("send", 1, "k2")


def test_recovered_always_goes_and_clears_the_memory() -> None:
    first = decide("failed", "k1", 1, T0, AlertState())
    recovered = decide("recovered", "k1", 0, T0 + timedelta(minutes=5), first.state)
    assert recovered.action == "send" and recovered.state == AlertState()
    # The same failure right after a recovery is news again.
    assert decide("failed", "k1", 1, T0 + timedelta(minutes=10), recovered.state).action == "send"
    assert decide("recovered", None, 0, T0, AlertState()).action == "send"


def test_after_n_alerts_only_from_the_nth_failure_in_a_row() -> None:
    state = AlertState()
    assert decide("failed", "k1", 1, T0, state, after=3).action == "below_after"
    assert decide("failed", "k1", 2, T0, state, after=3).action == "below_after"
    assert decide("failed", "k1", 3, T0, state, after=3).action == "send"
    assert decide("succeeded", None, 0, T0, state, after=3).action == "send"


def test_quiet_hours_delay_failures_and_drop_good_news() -> None:
    at_23 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)  # 23:00 in Berlin (CET)
    delayed = decide("failed", "k1", 1, at_23, AlertState(), quiet=BERLIN_NIGHT)
    assert delayed.action == "delay" and delayed.send_at == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert delayed.state.last_key == "k1"
    assert decide("succeeded", None, 0, at_23, AlertState(), quiet=BERLIN_NIGHT).action == "drop"
    assert decide("warned", None, 0, at_23, AlertState(), quiet=BERLIN_NIGHT).action == "drop"
    noon = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert decide("succeeded", None, 0, noon, AlertState(), quiet=BERLIN_NIGHT).action == "send"


def test_quiet_hours_window_edges() -> None:
    assert quiet_until(datetime(2026, 12, 1, 21, 0, tzinfo=UTC), BERLIN_NIGHT) == datetime(
        2026, 12, 2, 6, 0, tzinfo=UTC
    )  # 22:00 local: inside
    assert quiet_until(datetime(2026, 12, 2, 6, 0, tzinfo=UTC), BERLIN_NIGHT) is None  # 07:00: over
    assert quiet_until(datetime(2026, 12, 2, 5, 59, tzinfo=UTC), BERLIN_NIGHT) == datetime(
        2026, 12, 2, 6, 0, tzinfo=UTC
    )  # 06:59, after midnight: ends this morning
    daytime = QuietHours.parse("12:00", "13:00", "UTC")
    assert quiet_until(datetime(2026, 12, 2, 12, 30, tzinfo=UTC), daytime) == datetime(
        2026, 12, 2, 13, 0, tzinfo=UTC
    )
    assert quiet_until(datetime(2026, 12, 2, 13, 30, tzinfo=UTC), daytime) is None


def test_quiet_hours_on_dst_nights_end_at_seven_local() -> None:
    # Spring forward (29 March 2026, 02:00 CET → 03:00 CEST): 07:00 CEST is 05:00 UTC.
    spring = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # 00:30 CET
    assert quiet_until(spring, BERLIN_NIGHT) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
    # Fall back (25 October 2026, 03:00 CEST → 02:00 CET): 07:00 CET is 06:00 UTC.
    fall = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first pass
    assert quiet_until(fall, BERLIN_NIGHT) == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)
    second_pass = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, the repeated hour
    assert quiet_until(second_pass, BERLIN_NIGHT) == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)


def test_a_window_ending_in_the_spring_forward_gap_ends_when_the_clock_passes_it() -> None:
    ends_in_gap = QuietHours.parse("01:00", "02:30", "Europe/Berlin")  # 02:30 never happens that night
    at = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET
    assert quiet_until(at, ends_in_gap) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
