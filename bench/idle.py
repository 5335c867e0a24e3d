"""Idle cost of the real daemon holding 100 jobs that do not fire during the window.

Starts `scheduler.py --config <tmp>/jobs.yaml run` with 100 local jobs (cron
`0 3 1 M *`-style yearly dates, `every: 1 week`, `4 weeks`, weekday phrases, in a
few time zones; each one checked not to fire within the window), waits for its
"started" log line, lets it settle for 2 s, then watches it for 60 s (15 s with
--quick) from outside, through /proc/PID:

- VmRSS / VmHWM after start-up and at the end (and the highest VmRSS sampled each second),
- CPU seconds used during the window: utime + stime from /proc/PID/stat over SC_CLK_TCK,
- context switches during the window, summed over the process's threads,
- where the resident memory sits, from /proc/PID/smaps (libpython, shared libraries, heap).

The control socket (<state_dir>/control.sock) is served throughout, as in production.
Then it checks the daemon recorded no run, stops it with SIGTERM (exit 0 expected),
and runs two probes (bench/programs/): idle_probe.py goes through `scheduler.py run`
up to the daemon loop and prints whether boto3/botocore/rich were imported, the
third-party packages loaded and the import time per package (-X importtime);
idle_steps.py imports the daemon's modules step by step and prints VmRSS after each.

--runner ecs runs bench/idle_ecs.py instead: the same daemon holding 100 ECS jobs on a
moto server (RESULT idle_ecs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import REPO, clean_env, load_note, run_program, stub_project, table, workspace
from _daemon import RealDaemon, read_runs
from _idle import SETTLE_S, arguments, gate, idle_jobs, print_imports, probe_facts, rss_steps, window_note
from _proc import SNAPSHOT_HEADERS, smaps_top, snapshot_row, watch

TARGET_RSS_MB = 30.0
REFERENCE = [
    ("Dagster (daemon + webserver, idle)", "~340 MB", "~0.13 of a core"),
    ("Airflow 3 (scheduler + api-server + dag-processor)", "~0.7-0.9 GB", "-"),
]
# What the daemon imports, one step at a time (programs/idle_steps.py).
STEPS = (
    "logging argparse json threading signal",
    "dataclasses pathlib datetime enum typing",
    "concurrent.futures",
    "sqlite3",
    "zoneinfo",
    "yaml",
    "schedule",
    "dotenv",
    "secrets",
    "tempfile shutil traceback",
    "lib.models lib.triggers lib.durations",
    "lib.config",
    "lib.history lib.locks",
    "lib.execution lib.report",
    "lib.daemon",
    "lib.control_socket",
    "lib.app lib.runners.local",
    "lib.cli",
)


def write_config(tmp: Path, jobs: int, window_s: float) -> Path:
    """100 local jobs whose first fire time is well after the window."""
    lines = [
        f"state_dir: {tmp / 'state'}",
        "defaults:",
        f"  project_dir: {stub_project(tmp / 'project')}",
        "  env:",
        '    DBT_SEND_ANONYMOUS_USAGE_STATS: "false"',
        "jobs:",
        *idle_jobs(jobs, window_s),
    ]
    path = tmp / "jobs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure(args: argparse.Namespace, tmp: Path) -> int:
    window = args.window
    config = write_config(tmp, args.jobs, window)
    print(
        f"idle: real daemon, {args.jobs} jobs, {window:.0f} s window after {SETTLE_S:.0f} s settle; "
        f"{load_note()}"
    )
    with RealDaemon(args.python, config, tmp, clean_env("DBT_SCHEDULER_")) as daemon:
        ready_s = daemon.wait_started()
        time.sleep(SETTLE_S)
        start, end, peak_rss = watch(daemon.pid, window)
        socket_on = (tmp / "state" / "control.sock").is_socket()
        mappings = smaps_top(daemon.pid)
        elapsed = time.monotonic() - daemon.launched
    rc = daemon.rc

    runs = read_runs(tmp / "state" / "history.db")
    cpu = end["cpu_s"] - start["cpu_s"]
    print()
    rows = [snapshot_row("after start-up", start), snapshot_row("end of window", end, start)]
    print(table(SNAPSHOT_HEADERS, rows))
    print(
        f"ready after {ready_s:.2f} s; {window_note(cpu, window, peak_rss)}; runs recorded {len(runs)}; "
        f"daemon exit code after SIGTERM {rc} (process lived {elapsed:.0f} s)"
    )
    print("\nResident memory by mapping (/proc/PID/smaps, end of window):")
    print(table(["mapping", "rss_kB"], mappings))

    facts, ranking = probe_facts(args.python, config)
    line, _ = run_program(args.python, "STEPS", "idle_steps.py", str(REPO), str(config), json.dumps(STEPS))
    print_imports(facts, ranking)
    print("VmRSS import by import, in a fresh process (a step is charged for what it adds):")
    print(table(["step", "ΔMB", "VmRSS_MB", "modules"], rss_steps(json.loads(line))))
    print("\nReference figures, measured earlier on this machine class (not re-measured here):")
    print(table(["system", "RSS idle", "CPU idle"], REFERENCE))

    print(f"control socket served during the window: {socket_on}")
    sane = rc == 0 and not runs and not facts["boto3"] and not facts["rich"] and socket_on
    why = "a run fired, boto3/rich imported, no control socket, or the exit code was not 0"
    print(gate("idle", end["rss_kb"] / 1024, TARGET_RSS_MB, cpu, sane, why))
    return 0 if rc == 0 else 1


def main() -> int:
    args = arguments(
        __doc__,
        [
            (("--runner",), {"choices": ("local", "ecs"), "default": "local", "help": "ecs: idle_ecs.py"}),
            (("--diagnose",), {"action": "store_true", "help": "ecs: see idle_ecs.py --help"}),
        ],
    )
    if args.runner == "ecs":
        import idle_ecs

        return idle_ecs.run(args)
    with workspace("bench-idle-local-", keep=args.keep) as tmp:
        return measure(args, tmp)


if __name__ == "__main__":
    raise SystemExit(main())
