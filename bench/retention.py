"""Retention: a year of a 5-minute job, with and without `retention:`.

Two state_dirs are filled with the same simulated year (105,120 runs of one job
`every: 5 minutes`, 1 run in 50 failed): each run goes through the real History API
(`start` then `finish`, as RunService does) and gets a small run folder like the
runners leave (run.log ~2 KB, report.json ~1.5 KB, report.md ~0.5 KB; a failed run
also keeps work/ with a compiled model and run_results.json, ~12 KB).

- "no retention": `retention: {keep_days: null, keep_failed_work: null}`, nothing is
  ever deleted (what every state_dir did before retention existed);
- "retention": the defaults (`keep_days: 90, keep_failed_work: 5`), applied once per
  simulated day by `lib.retention.prune_state`, as the daemon does.

Then, for each: the disk usage of the state_dir (st_blocks, what `du` shows), its
file count and history.db size; `scheduler.py status` and `scheduler.py history
--limit 20` as subprocesses (median of --repeat; interpreter start-up included) and
the history queries they make in-process (`last_runs()`, `runs(limit=20)`, median of
20); the time of each daily prune. Last, retention is switched on for the state_dir
that had none (`scheduler.py prune`): how long the first prune of a year takes.

The target: with retention, the state_dir is at most 30% of the one without
(keeping 90 days of 365 gives ~25%), and `status` takes at most 1 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    REPO,
    SCHEDULER,
    load_note,
    median,
    parse_args,
    parser_for,
    result_line,
    stub_project,
    table,
    workspace,
)

sys.path.insert(0, str(REPO))

from lib.config import load_config
from lib.execution import new_run_id
from lib.history import History
from lib.models import RunOutcome, RunRecord, RunRequest, RunStatus, TriggerKind
from lib.retention import prune_state

SIZE_RATIO_TARGET = 0.30
STATUS_TARGET_S = 1.0
EVERY = timedelta(minutes=5)
LOG = "[run_commands] STEP command 1/1: dbt build\n" + "12:00:00  1 of 9 OK created sql table model x\n" * 40
REPORT_JSON = '{"job": "five_minutes", "outcome": "succeeded", "nodes": []}\n' + " " * 1400 + "\n"
REPORT_MD = "# five_minutes succeeded\n" + "| node | status |\n" * 25
COMPILED = "select * from raw.orders where amount > 0\n" * 150
RUN_RESULTS = '{"results": []}\n' + " " * 5000 + "\n"


def write_config(folder: Path, retention: str) -> Path:
    stub_project(folder / "project", "p")
    path = folder / "jobs.yaml"
    path.write_text(
        f"state_dir: state\nretention: {retention}\n"
        "jobs:\n  five_minutes: {every: 5 minutes, project_dir: project}\n"
    )
    return path


def simulate(config_path: Path, start: datetime, days: int, prune_daily: bool) -> tuple[float, list[float]]:
    """Fill the state_dir with `days` of runs from `start`; returns (seconds, each daily prune's seconds)."""
    config = load_config(config_path)
    job = config.jobs["five_minutes"]
    history = History(config.state_dir / "history.db")
    runs = config.state_dir / "runs" / job.name
    runs.mkdir(parents=True, exist_ok=True)
    prunes: list[float] = []
    began = time.perf_counter()
    moment, end, n = start, start + timedelta(days=days), 0
    next_prune = start + timedelta(days=1)
    while moment < end:
        n += 1
        run_id = new_run_id(moment)
        run_dir = runs / run_id
        run_dir.mkdir()
        request = RunRequest(job=job, run_id=run_id, trigger=TriggerKind.SCHEDULE, scheduled_for=moment)
        history.start(request, moment, run_dir)
        failed = n % 50 == 0
        (run_dir / "run.log").write_text(LOG)
        if failed:
            (run_dir / "work" / "target" / "compiled").mkdir(parents=True)
            (run_dir / "work" / "target" / "compiled" / "orders.sql").write_text(COMPILED)
            (run_dir / "work" / "target" / "run_results.json").write_text(RUN_RESULTS)
        (run_dir / "report.json").write_text(REPORT_JSON)
        (run_dir / "report.md").write_text(REPORT_MD)
        status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        history.finish(
            RunRecord(
                job=job.name,
                run_id=run_id,
                trigger=TriggerKind.SCHEDULE,
                outcome=RunOutcome(status, exit_code=int(failed), log_path=run_dir / "run.log"),
                started_at=moment,
                finished_at=moment + timedelta(seconds=40),
                scheduled_for=moment,
                run_dir=run_dir,
            )
        )
        moment += EVERY
        if prune_daily and moment >= next_prune:
            t0 = time.perf_counter()
            prune_state(config, history, moment)
            prunes.append(time.perf_counter() - t0)
            next_prune += timedelta(days=1)
    history.close()
    return time.perf_counter() - began, prunes


def disk_usage(folder: Path) -> tuple[int, int]:
    """(bytes on disk, number of files) under `folder`."""
    size, files = 0, 0
    for root, dirs, names in os.walk(folder):
        for name in (*dirs, *names):
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            size += stat.st_blocks * 512
            files += name in names
    return size, files


def db_size(state_dir: Path) -> int:
    return sum(
        os.path.getsize(state_dir / name)
        for name in ("history.db", "history.db-wal")
        if (state_dir / name).exists()
    )


def time_cli(python: str, config_path: Path, args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run(
            [python, str(SCHEDULER), "--config", str(config_path), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "160"},
        )
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"scheduler.py {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return median(times)


def time_queries(state_dir: Path) -> tuple[float, float, int]:
    history = History(state_dir / "history.db")
    history.runs(limit=1)  # open + migrate outside the timing
    last, recent = [], []
    for _ in range(20):
        t0 = time.perf_counter()
        history.last_runs()
        last.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        history.runs("five_minutes", limit=20)
        recent.append(time.perf_counter() - t0)
    rows = len(history.runs(limit=None))
    history.close()
    return median(last), median(recent), rows


def main() -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="90 simulated days instead of 365")
    parser.add_argument("--days", type=int, help="simulated days (default 365, 90 with --quick)")
    parser.add_argument("--repeat", type=int, default=5, help="CLI timings per command (default 5)")
    args = parse_args(parser)
    days = args.days or (90 if args.quick else 365)
    repeat = 3 if args.quick and args.repeat == 5 else args.repeat
    print(f"retention: {days} simulated days of a 5-minute job ({days * 288:,} runs); {load_note()}")

    # The year ends now, so that `status` and `prune` (on the wall clock) see it as just past.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=days, minutes=now.minute % 5)
    rows_out, figures = [], {}
    with workspace("bench-retention-", keep=args.keep) as tmp:
        scenarios = (
            ("no retention", "{keep_days: null, keep_failed_work: null}", False),
            ("retention 90 d / 5", "{keep_days: 90, keep_failed_work: 5}", True),
        )
        for label, retention, prune_daily in scenarios:
            folder = tmp / label.split()[0]
            config_path = write_config(folder, retention)
            took, prunes = simulate(config_path, start, days, prune_daily)
            state_dir = folder / "state"
            size, files = disk_usage(state_dir)
            last_s, recent_s, rows = time_queries(state_dir)
            status_s = time_cli(args.python, config_path, ["status"], repeat)
            history_s = time_cli(args.python, config_path, ["history", "--limit", "20"], repeat)
            figures[label] = {"size": size, "status": status_s, "history": history_s, "config": config_path}
            prune_note = (
                f"median {median(prunes) * 1000:.0f} ms, max {max(prunes) * 1000:.0f} ms" if prunes else "-"
            )
            print(f"  {label}: filled in {took:.0f} s; daily prune {prune_note}")
            rows_out.append(
                (
                    label,
                    rows,
                    files,
                    size / 1e6,
                    db_size(state_dir) / 1e6,
                    status_s,
                    history_s,
                    last_s * 1000,
                    recent_s * 1000,
                )
            )

        print()
        headers = (
            "state_dir after the year",
            "history rows",
            "files",
            "disk MB",
            "history.db MB",
            "status s",
            "history s",
            "last_runs ms",
            "runs(20) ms",
        )
        print(table(headers, rows_out))
        without, with_ = figures["no retention"], figures["retention 90 d / 5"]
        size_ratio = with_["size"] / without["size"]
        status_ratio = with_["status"] / without["status"]
        history_ratio = with_["history"] / without["history"]
        print(
            f"\nratios with/without: disk {size_ratio:.2f}, status {status_ratio:.2f}, "
            f"history {history_ratio:.2f}"
        )

        # Switching retention on for the state_dir that had none: the first prune does a year at once.
        config_path = without["config"]
        config_path.write_text(
            config_path.read_text().replace("{keep_days: null, keep_failed_work: null}", "{}")
        )
        t0 = time.perf_counter()
        done = subprocess.run(
            [args.python, str(SCHEDULER), "--config", str(config_path), "prune"],
            capture_output=True,
            text=True,
        )
        first = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"scheduler.py prune exited {done.returncode}: {done.stderr}")
        summary = done.stdout.strip().splitlines()[-1]
        print(
            f"first prune of the state_dir without retention (scheduler.py prune): {first:.1f} s — {summary}"
        )
        after, _ = disk_usage(config_path.parent / "state")
        print(f"  its disk usage after: {after / 1e6:.0f} MB (history.db keeps its pages until VACUUM)")

    print(
        result_line(
            "retention",
            [
                ("size_ratio", size_ratio, "<=", SIZE_RATIO_TARGET, size_ratio <= SIZE_RATIO_TARGET),
                ("status_s", with_["status"], "<=", STATUS_TARGET_S, with_["status"] <= STATUS_TARGET_S),
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
