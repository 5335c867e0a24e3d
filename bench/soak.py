"""Soak: 200 jobs `every: 1 minute` on the real daemon for 10 minutes; every fire time one row?

The daemon (`scheduler.py --config <tmp>/jobs.yaml run`) runs 200 jobs that all fire at
each whole minute, with DBT_SCHEDULER_RUN_COMMANDS pointing at bench/programs/soak_run.sh (sleeps
0.5 s, reports success) instead of dbt, and `max_parallel` 20: at every fire time 180
runs wait in the daemon's queue. After the last fire time has drained the daemon gets
SIGTERM and must exit 0. Then <state_dir>/history.db is read:

- fire times expected (jobs x whole minutes in the window) vs history rows for them:
  missing (no row), doubled (more than one row), skipped (a row, but not run);
- dispatch lag = the row's started_at - its fire time (covers the wait for a slot);
- the daemon's RSS once started, after the first fire time, and at the end;
- the longest queue seen in <state_dir>/queue.json (what `status` shows).

PASS needs every fire time exactly one row, none skipped, and p99 lag ≤ 30 s: half the
misfire limit (60 s), the margin before a slower box would start recording queued fire
times as missed. The whole-queue drain is ~200/20 x 0.5 s = 5 s of ideal work.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    PROGRAMS,
    REPO,
    clean_env,
    load_note,
    parse_args,
    parser_for,
    percentile,
    result_line,
    stub_project,
    table,
    workspace,
)
from _daemon import RealDaemon
from _proc import rss_mb

TARGET_P99_LAG_S = 30.0
STAND_IN = PROGRAMS / "soak_run.sh"
SETTLE_S = 40  # after the last fire time: the queue drains, then SIGTERM (before the next minute)
FIRST_FIRE_MARGIN_S = 3  # a fire time this close after start may or may not be the daemon's first


def write_config(tmp: Path, jobs: int, max_parallel: int) -> Path:
    project = stub_project(tmp / "project", "soak")
    lines = [
        f"state_dir: {tmp / 'state'}",
        f"max_parallel: {max_parallel}",
        "shutdown_grace: 30s",
        "defaults:",
        "  every: 1 minute",
        f"  project_dir: {project}",
        "jobs:",
    ]
    lines += [f"  soak{i:03d}: {{}}" for i in range(jobs)]
    path = tmp / "jobs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def queue_length(state: Path) -> int:
    try:
        return len(json.loads((state / "queue.json").read_text(encoding="utf-8"))["queued"])
    except (OSError, ValueError, KeyError):
        return 0


def whole_minute_after(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


def main() -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="2 minutes instead of 10")
    parser.add_argument("--minutes", type=int, default=None, help="fire times to soak through (default 10)")
    parser.add_argument("--jobs", type=int, default=200, help="jobs, all `every: 1 minute` (default 200)")
    parser.add_argument("--max-parallel", type=int, default=20, help="the daemon's max_parallel (default 20)")
    parser.add_argument("--run-seconds", type=float, default=0.5, help="how long each stand-in run sleeps")
    args = parse_args(parser)
    minutes = args.minutes or (2 if args.quick else 10)

    print(
        f"soak: real daemon, {args.jobs} jobs `every: 1 minute`, max_parallel {args.max_parallel}, "
        f"stand-in run of {args.run_seconds} s, {minutes} fire time(s); {load_note()}",
        flush=True,
    )
    with workspace("bench-soak-", keep=args.keep) as tmp:
        config = write_config(tmp, args.jobs, args.max_parallel)
        state = tmp / "state"
        env = clean_env(
            "DBT_SCHEDULER_",
            "SOAK_",
            DBT_SCHEDULER_RUN_COMMANDS=str(STAND_IN),
            SOAK_RUN_SECONDS=str(args.run_seconds),
        )
        peak_queue = 0
        with RealDaemon(args.python, config, tmp, env, grace=60) as daemon:
            daemon.wait_started()
            started = datetime.now(UTC)
            rss_start = rss_mb(daemon.pid)
            first = whole_minute_after(started + timedelta(seconds=FIRST_FIRE_MARGIN_S))
            last = first + timedelta(minutes=minutes - 1)
            stop_at = last + timedelta(seconds=SETTLE_S)
            print(
                f"  started {started:%H:%M:%S} UTC; fire times {first:%H:%M}…{last:%H:%M}; "
                f"SIGTERM at {stop_at:%H:%M:%S}",
                flush=True,
            )
            rss_by_minute: list[float] = []  # SETTLE_S after each fire time, once its runs drained
            while datetime.now(UTC) < stop_at and daemon.alive():
                peak_queue = max(peak_queue, queue_length(state))
                sample_at = first + timedelta(minutes=len(rss_by_minute), seconds=SETTLE_S)
                if len(rss_by_minute) < minutes and datetime.now(UTC) > sample_at:
                    rss_by_minute.append(rss_mb(daemon.pid))
                time.sleep(0.5)
            rss_first = rss_by_minute[0] if rss_by_minute else float("nan")
            rss_end = rss_mb(daemon.pid) if daemon.alive() else float("nan")
            load_end = load_note()
        rc = daemon.rc

        sys.path.insert(0, str(REPO))
        from lib.history import History

        rows = History(state / "history.db").runs(limit=None)
        expected = {
            (f"soak{i:03d}", first + timedelta(minutes=m)) for i in range(args.jobs) for m in range(minutes)
        }
        per_fire: Counter[tuple[str, datetime]] = Counter()
        outside, skipped, lags = 0, Counter(), []
        outcomes = Counter(row["outcome"] for row in rows)
        for row in rows:
            fire = datetime.fromisoformat(row["scheduled_for"]) if row["scheduled_for"] else None
            key = (row["job"], fire)
            if key not in expected:
                outside += 1
                continue
            per_fire[key] += 1
            if row["outcome"] == "skipped":
                skipped[row["reason"].split(":")[0]] += 1
            elif row["outcome"] == "succeeded":
                lags.append((datetime.fromisoformat(row["started_at"]) - fire).total_seconds())
        missing = sum(1 for key in expected if per_fire[key] == 0)
        doubled = sum(1 for key in expected if per_fire[key] > 1)
        in_window = sum(per_fire.values())

        print()
        print(
            table(
                [
                    "fire times",
                    "rows",
                    "missing",
                    "doubled",
                    "skipped",
                    "lag_p50_s",
                    "lag_p99_s",
                    "lag_max_s",
                    "peak_queue",
                ],
                [
                    [
                        len(expected),
                        in_window,
                        missing,
                        doubled,
                        sum(skipped.values()),
                        percentile(lags, 50),
                        percentile(lags, 99),
                        max(lags, default=float("nan")),
                        peak_queue,
                    ]
                ],
            )
        )
        print()
        print(
            table(
                ["RSS_MB start", "after 1st fire", "end", "growth"],
                [[rss_start, rss_first, rss_end, rss_end - rss_start]],
            )
        )
        print("RSS_MB after each fire time: " + " ".join(f"{v:.1f}" for v in rss_by_minute))
        print(f"outcomes of all rows: {dict(outcomes)}; rows outside the window (before it): {outside}")
        if skipped:
            print(f"skipped, by reason: {dict(skipped)}")
        print(f"daemon exit code after SIGTERM: {rc}; at the end: {load_end}")
        p99 = percentile(lags, 99)
        one_row_each = missing == 0 and doubled == 0 and in_window == len(expected)
        line = result_line(
            "soak",
            [
                ("rows", float(in_window), "==", float(len(expected)), one_row_each),
                ("skipped", float(sum(skipped.values())), "<=", 0.0, not skipped),
                ("lag_p99_s", p99, "<=", TARGET_P99_LAG_S, p99 <= TARGET_P99_LAG_S),
            ],
        )
        print(line)
        return 0 if rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
