from __future__ import annotations

import pytest

from lib.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("2.5", 2.5),
        ("90s", 90.0),
        ("30 seconds", 30.0),
        ("1 second", 1.0),
        ("45 sec", 45.0),
        ("15m", 900.0),
        ("15 minutes", 900.0),
        ("1 min", 60.0),
        ("2h", 7200.0),
        ("2 hours", 7200.0),
        ("1.5h", 5400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1 hour 30 minutes", 5400.0),
        ("1h30m15s", 5415.0),
        ("1 day", 86400.0),
        ("1d", 86400.0),
        ("2 days 3h", 2 * 86400.0 + 3 * 3600.0),
        ("1w", 7 * 86400.0),
        ("  15M  ", 900.0),
    ],
)
def test_parse_duration_accepts_numbers_and_phrases(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "'abc' is not a duration: use e.g. 90s, 15m, 2h or 1h30m"),
        ("", "'' is not a duration: use e.g. 90s, 15m, 2h or 1h30m"),
        ("1h30", "'1h30' is not a duration: use e.g. 90s, 15m, 2h or 1h30m"),
        ("h", "'h' is not a duration: use e.g. 90s, 15m, 2h or 1h30m"),
        (
            "5 fortnights",
            "'5 fortnights' is not a duration: unknown unit 'fortnights'; use e.g. 90s, 15m, 2h or 1h30m",
        ),
        ("5ms", "'5ms' is not a duration: unknown unit 'ms'; use e.g. 90s, 15m, 2h or 1h30m"),
        ("1h 2h", "'1h 2h' is not a duration: a unit appears twice; use e.g. 90s, 15m, 2h or 1h30m"),
        ("0", "'0' is not a duration: it must be more than zero; use e.g. 90s, 15m, 2h or 1h30m"),
        ("0s", "'0s' is not a duration: it must be more than zero; use e.g. 90s, 15m, 2h or 1h30m"),
        ("-5m", "'-5m' is not a duration: it must be more than zero; use e.g. 90s, 15m, 2h or 1h30m"),
        (0, "0 is not a duration: it must be more than zero; use e.g. 90s, 15m, 2h or 1h30m"),
        (-3, "-3 is not a duration: it must be more than zero; use e.g. 90s, 15m, 2h or 1h30m"),
        (float("inf"), "inf is not a duration: it must be more than zero; use e.g. 90s, 15m, 2h or 1h30m"),
        (True, "True is not a duration: use e.g. 90s, 15m, 2h or 1h30m"),
        (None, "None is not a duration: use e.g. 90s, 15m, 2h or 1h30m"),
    ],
)
def test_parse_duration_rejects_with_a_sentence(value: object, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (45.0, "45s"),
        (2.5, "2.5s"),
        (0.3, "0.3s"),
        (59.94, "59.9s"),
        (59.96, "1m"),
        (60, "1m"),
        (65, "1m 5s"),
        (90.4, "1m 30s"),
        (5400, "1h 30m"),
        (3600, "1h"),
        (3615, "1h 15s"),
        (86400 + 2 * 3600, "1d 2h"),
        (-45, "-45s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["45s", "2.5s", "1h 30m", "1d 2h", "1m 5s"])
def test_format_duration_output_parses_back(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
