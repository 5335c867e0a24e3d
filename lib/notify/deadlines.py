"""`deadline:` — is a job late? Pure functions over a trigger, a wall time and instants.

A job with `deadline: "07:00"` is late when, at 07:00 in its zone, no run has
succeeded since its last scheduled fire time before then. Each such fire time is
alerted once (`late`), however often the daemon looks.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from lib.models import Trigger

# How far back a fire time is looked for: a yearly job's deadline still finds its fire time.
MAX_LOOKBACK = timedelta(days=400)


def last_deadline(now: datetime, deadline: time, tz: ZoneInfo) -> datetime:
    """The latest instant at or before `now` that reads `deadline` on `tz`'s clock (UTC-aware).

    A deadline in a repeated hour is its first occurrence (fold=0); one in a
    spring-forward gap (02:30 that never happens) is read with the offset before the
    jump, i.e. 03:30 new time: the gap's length later, as zoneinfo does."""
    local = now.astimezone(tz)
    for days in (0, 1, 2):
        day = local.date() - timedelta(days=days)
        instant = datetime.combine(day, deadline, tzinfo=tz).astimezone(ZoneInfo("UTC"))
        if instant <= now:
            return instant
    raise AssertionError("unreachable: one of three days has passed its deadline")


def last_fire_before(trigger: Trigger, moment: datetime) -> datetime | None:
    """The trigger's latest fire time at or before `moment`, or None within MAX_LOOKBACK.

    Triggers only answer `next_after`, so the search steps back (doubling from a minute)
    until a fire time falls inside the window, then walks forward to the last one: a
    dense schedule is found in a step or two, a sparse one in about twenty."""
    step = timedelta(minutes=1)
    while step <= MAX_LOOKBACK * 2:
        probe = moment - step
        fire = trigger.next_after(probe)
        if fire <= moment:
            while True:
                following = trigger.next_after(fire)
                if following > moment:
                    return fire
                fire = following
        step *= 2
    return None


def late_fire_time(
    trigger: Trigger,
    deadline: time,
    tz: ZoneInfo,
    now: datetime,
    last_success: datetime | None,
) -> tuple[datetime, datetime] | None:
    """(fire time, deadline instant) when the job is late at `now`, else None.

    `last_success` is when the job's latest successful run finished. It counts when it
    finished at or after the fire time and by the deadline."""
    due_by = last_deadline(now, deadline, tz)
    fire = last_fire_before(trigger, due_by)
    if fire is None:
        return None
    if last_success is not None and fire <= last_success <= due_by:
        return None
    # No success in time (one after the deadline does not undo being late then).
    return fire, due_by
