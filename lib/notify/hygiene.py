"""Whether an alert goes out now, later, or not at all: pure decisions over plain data.

- A failure with the same failure key (job + set of failing nodes) as the last one
  alerted is held back until `repeat_every` has passed; a different failure goes at once.
- `recovered` always goes.
- Held-back alerts are counted, and the count rides on the next alert that goes out.
- `after: N`: a failure is alerted only from the Nth failure in a row.
- Quiet hours: inside the window, `succeeded`/`warned`/`started`/`skipped` are dropped
  and everything else is delayed to the window's end (in the rule's time zone).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from lib.notify.message import FAILURE_EVENTS

REPEAT_EVERY = timedelta(hours=24)
# Low-value news: in quiet hours it is dropped, not kept for the morning.
DROPPED_IN_QUIET_HOURS = frozenset({"started", "succeeded", "warned", "skipped"})


@dataclass(frozen=True)
class QuietHours:
    """`start` to `end` in `tz` wall time; a window with end <= start runs over midnight."""

    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, start: str, end: str, tz: str) -> QuietHours:
        return cls(time.fromisoformat(start), time.fromisoformat(end), ZoneInfo(tz))


@dataclass(frozen=True)
class AlertState:
    """What a rule remembers about one job's alerts between runs."""

    last_key: str | None = None  # failure key of the last failure alerted
    last_sent_at: datetime | None = None
    suppressed: int = 0  # alerts held back since the last one sent


@dataclass(frozen=True)
class Decision:
    """`action`: send (now), delay (until `send_at`), suppress (a repeat), below_after
    (not yet the Nth failure), drop (quiet hours). `suppressed` is the count to put in
    the message when sending; `state` is the state to keep after this decision."""

    action: str
    state: AlertState
    send_at: datetime | None = None
    suppressed: int = 0

    @property
    def sends(self) -> bool:
        return self.action in ("send", "delay")


def quiet_until(now: datetime, quiet: QuietHours) -> datetime | None:
    """The end of the quiet window `now` falls in (aware, UTC), or None outside it.

    The end is the wall time `quiet.end` on the right local day; on a DST day that
    makes the window an hour shorter or longer in real time, as people expect. An end
    in a spring-forward gap (02:30 that never happens) resolves to the instant the gap
    starts plus the gap's length, i.e. 03:30 local."""
    local = now.astimezone(quiet.tz)
    wall = local.time().replace(tzinfo=None)
    start, end = quiet.start, quiet.end
    if start < end:
        inside = start <= wall < end
        end_day = local.date()
    else:  # over midnight: inside after start today, or before end (started yesterday)
        inside = wall >= start or wall < end
        end_day = local.date() + timedelta(days=1) if wall >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=quiet.tz).astimezone(UTC)


def decide(
    event: str,
    failure_key: str | None,
    consecutive_failures: int,
    now: datetime,
    state: AlertState,
    *,
    repeat_every: timedelta = REPEAT_EVERY,
    after: int = 1,
    quiet: QuietHours | None = None,
) -> Decision:
    """The decision for one alert of `event` (see the module docstring for the rules).

    `failure_key` is `Alert.failure_key`; `consecutive_failures` counts this run. The
    returned state records a sent failure's key and time (a recovery clears them), so
    the next call compares against what people were last told."""
    if event in FAILURE_EVENTS:
        if consecutive_failures < after:
            return Decision("below_after", state)
        repeat = (
            failure_key is not None
            and failure_key == state.last_key
            and state.last_sent_at is not None
            and now - state.last_sent_at < repeat_every
        )
        if repeat:
            return Decision("suppress", replace(state, suppressed=state.suppressed + 1))
        sent_state = AlertState(last_key=failure_key, last_sent_at=now, suppressed=0)
    elif event == "recovered":
        sent_state = AlertState()
    else:
        sent_state = replace(state, suppressed=0)
    if quiet is not None:
        until = quiet_until(now, quiet)
        if until is not None:
            if event in DROPPED_IN_QUIET_HOURS:
                return Decision("drop", state)
            return Decision("delay", sent_state, send_at=until, suppressed=state.suppressed)
    return Decision("send", sent_state, send_at=now, suppressed=state.suppressed)
