"""Scheduling policies as pure functions: what to do with a fire time that is due.

- A fire time is *on time* when the daemon sees it at most `MISFIRE_TOLERANCE`
  after it was due; it is run with trigger `schedule`.
- Later than that it was *missed* (the host slept, the daemon was down). With
  `catchup: none` a missed fire time is not run (cron's behaviour) and is recorded
  as skipped; with `catchup: latest` the most recent missed fire time is run once,
  with trigger `catch-up`, if it is at most `catchup_grace` old.
- Several fire times due at once are coalesced into one run of the latest.
- Overlap: with `overlap: skip` (the default) a run due while the job's previous
  run is still going is skipped and recorded as skipped; `allow` runs both. Only runs
  that actually run count: one waiting in the daemon's queue for a slot does not.
- A run that waited for a slot until its fire time is older than `MISFIRE_TOLERANCE`
  follows the catch-up policy, as if the daemon had seen it late (`decide_queued`); a
  run-now waits for its slot however long it takes.

Every datetime here is an instant in UTC (triggers return UTC, the clock reads UTC):
the `<`, `<=` and `>` below compare instants, never wall times of a zone, which
Python would compare ignoring `fold` on fall-back night.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from lib.models import Job, TriggerKind

MISFIRE_TOLERANCE = 60.0  # seconds
# Bounds the walk over missed fire times of a job that fires every second after a long outage.
_MAX_WALK = 100_000
# How many folded fire times get a row each: a day of a 1-minute job. Past that (a job that
# fires every second, a month of suspend) one row more says how many were left out, so a
# resume does not write a hundred thousand rows in one go.
MAX_FOLDED_ROWS = 1440
_TINY = timedelta(microseconds=1)


@dataclass(frozen=True)
class Decision:
    """What to do about one job's due fire time; `trigger` None means record it as skipped."""

    job: Job
    scheduled_for: datetime
    trigger: TriggerKind | None
    reason: str = ""
    coalesced: int = 0  # how many earlier due fire times this one stands for
    # Those earlier fire times themselves, oldest first (at most `MAX_FOLDED_ROWS`): each is
    # recorded as its own skipped row, so every fire time the daemon passed ends as one row.
    folded: tuple[datetime, ...] = ()
    folded_more: int = 0  # fire times beyond MAX_FOLDED_ROWS, counted in the last row's reason


def decide_due(job: Job, next_fire: datetime, now: datetime) -> tuple[Decision, datetime]:
    """Decide about a job whose pending fire time `next_fire` is ≤ `now`; also return its next fire time."""
    horizon = MISFIRE_TOLERANCE if job.catchup == "none" else max(MISFIRE_TOLERANCE, job.catchup_grace)
    window_start = now - timedelta(seconds=horizon)
    latest, skipped_over = next_fire, 0
    if next_fire < window_start:
        # Jump over fire times too old to matter instead of walking through them.
        first_in_window = job.trigger.next_after(window_start - _TINY)
        if first_in_window <= now:
            latest, skipped_over = first_in_window, 1
    for _ in range(_MAX_WALK):
        following = job.trigger.next_after(latest)
        if following > now:
            break
        latest, skipped_over = following, skipped_over + 1
    following_fire = job.trigger.next_after(now)

    lateness = (now - latest).total_seconds()
    if lateness <= MISFIRE_TOLERANCE:
        decision = Decision(job, latest, TriggerKind.SCHEDULE, coalesced=skipped_over)
    elif job.catchup == "latest" and lateness <= job.catchup_grace:
        decision = Decision(
            job,
            latest,
            TriggerKind.CATCHUP,
            reason=f"catch-up of a fire time missed by {lateness:.0f}s",
            coalesced=skipped_over,
        )
    else:
        if job.catchup == "latest":
            why = f"more than the catch-up grace of {job.catchup_grace:.0f}s ago"
        else:
            why = "catchup: none"
        decision = Decision(
            job,
            latest,
            None,
            reason=f"missed: due {lateness:.0f}s before the scheduler could run it ({why})",
            coalesced=skipped_over,
        )
    if skipped_over:
        folded, more = folded_fire_times(job, next_fire, latest)
        decision = replace(decision, folded=folded, folded_more=more)
    return decision, following_fire


def folded_fire_times(job: Job, first: datetime, latest: datetime) -> tuple[tuple[datetime, ...], int]:
    """The fire times from `first` (included) up to `latest` (excluded), oldest first: those a
    decision coalesces. At most MAX_FOLDED_ROWS; the second value counts the rest (walked up
    to _MAX_WALK, then estimated from the interval between the last two)."""
    times: list[datetime] = []
    moment, more = first, 0
    for _ in range(_MAX_WALK):
        if moment >= latest:
            break
        if len(times) < MAX_FOLDED_ROWS:
            times.append(moment)
        else:
            more += 1
        moment = job.trigger.next_after(moment)
    else:
        if len(times) >= 2:
            step = (times[-1] - times[-2]).total_seconds() or 1.0
            more += int((latest - moment).total_seconds() / step)
    return tuple(times), more


def initial_next_fire(job: Job, now: datetime, last_scheduled_for: datetime | None) -> datetime:
    """Where a job's schedule starts when the daemon starts.

    With `catchup: latest` and a recorded previous fire time, the first fire time
    after it — possibly in the past, so `decide_due` catches it up. Otherwise the
    first fire time after now: what was missed while the daemon was down is not run.
    """
    if job.catchup == "latest" and last_scheduled_for is not None:
        return job.trigger.next_after(last_scheduled_for)
    return job.trigger.next_after(now)


def overlap_blocks(job: Job, active_runs: int) -> bool:
    """True when a new run must be skipped because one is already going."""
    return job.overlap == "skip" and active_runs > 0


def decide_queued(
    job: Job, decision: Decision, now: datetime, waited_s: float, max_parallel: int
) -> Decision:
    """What to do with a run that waited in the daemon's queue, now that a slot is free.

    A fire time still within `MISFIRE_TOLERANCE` runs as decided. One that has become
    older than that while it waited was missed, like a fire time the daemon saw late,
    and the job's catch-up policy decides: `catchup: latest` runs it as a catch-up if it
    is at most `catchup_grace` old; otherwise it is recorded as skipped (cron's
    behaviour), and the job's next fire time runs as usual. A run started 75 s late
    because other jobs held the slots would be the surprise cron users do not expect.
    A run-now (trigger `manual`) has no fire time to miss: it waits as long as it takes.
    """
    if decision.trigger is TriggerKind.MANUAL:
        return decision
    lateness = (now - decision.scheduled_for).total_seconds()
    if lateness <= MISFIRE_TOLERANCE:
        return decision
    waited = f"waited {waited_s:.0f}s for a free slot (max_parallel {max_parallel})"
    if job.catchup == "latest" and lateness <= job.catchup_grace:
        return replace(
            decision,
            trigger=TriggerKind.CATCHUP,
            reason=f"catch-up of a fire time {lateness:.0f}s old: {waited}",
        )
    if job.catchup == "latest":
        why = f"more than the catch-up grace of {job.catchup_grace:.0f}s"
    else:
        why = f"more than the misfire limit of {MISFIRE_TOLERANCE:.0f}s; catchup: none"
    return replace(decision, trigger=None, reason=f"missed: due {lateness:.0f}s ago, {waited} ({why})")
