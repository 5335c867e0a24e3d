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

Then it checks the daemon recorded no run, stops it with SIGTERM (exit 0 expected),
and runs a probe: a fresh process that goes through `scheduler.py run` up to the
daemon loop (Daemon.run_forever is replaced by a function that starts the daemon,
reports and stops) and prints whether boto3/botocore/rich were imported, the
third-party packages loaded and the import time per package (-X importtime); a
second probe imports the daemon's modules step by step and prints VmRSS after each,
to show which import costs what.

--runner ecs: the same 100 jobs with `runner: ecs` (and `git:`), the daemon pointed at
a moto server started here (`python -m moto.server` on a free loopback port, dummy
credentials, eu-west-1) holding the cluster, a container instance, the task
definition, the log group and the bucket. A 101st job `every: 5 seconds` makes real
ECS runs happen first (moto's state manager stops each task the first time it is
described), so the daemon has built its ECS, CloudWatch Logs and S3 clients: the
steady state of a daemon that has run jobs. Once one run is in history.db, jobs.yaml
is rewritten with that job disabled and the daemon gets SIGHUP; the window starts
after the reload is logged and no run is left. Reported: VmRSS right after start-up
(no client built yet), after the first run, at the start and end of the window; a
probe daemon with the same config (its own state_dir) that runs the warm-up job a
few times and counts the botocore clients alive (gc), and a fresh process that
builds the same objects step by step with VmRSS (and, in a second pass, tracemalloc
by package) after each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    REPO,
    SCHEDULER,
    context_switches,
    cpu_seconds,
    default_python,
    load_note,
    proc_status,
    result_line,
    status_kb,
    table,
)

TARGET_RSS_MB = {"local": 30.0, "ecs": 60.0}
RESULT_NAME = {"local": "idle", "ecs": "idle_ecs"}
TARGET_CPU_S = 0.05
SETTLE_S = 2.0
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Sydney")
CANDIDATES = (
    *(("schedule", f"0 3 1 {month} *") for month in range(1, 13)),
    *(("schedule", f"30 4 15 {month} *") for month in range(1, 13)),
    ("schedule", "0 0 29 2 *"),
    ("every", "1 week"),
    ("every", "4 weeks"),
    ("every", "monday at 09:00"),
    ("every", "sunday at 23:00"),
    ("every", "3 days at 05:00"),
)
REFERENCE = [
    ("Dagster (daemon + webserver, idle)", "~340 MB", "~0.13 of a core"),
    ("Airflow 3 (scheduler + api-server + dag-processor)", "~0.7-0.9 GB", "-"),
]

# Runs `scheduler.py run` up to the loop, then reports instead of looping.
PROBE = r"""
import json, sys
repo, config = sys.argv[1], sys.argv[2]
sys.path.insert(0, repo)
import lib.daemon

def report(self, until=None):
    self.start()
    try:
        names = sorted({m.split(".")[0] for m in sys.modules})
        stdlib = sys.stdlib_module_names
        third = [n for n in names if n not in stdlib and n != "lib" and not n.startswith("_")]
        rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
        print("PROBE " + json.dumps({
            "modules": len(sys.modules),
            "boto3": "boto3" in sys.modules,
            "botocore": "botocore" in sys.modules,
            "rich": "rich" in sys.modules,
            "dbt": "dbt" in sys.modules,
            "third_party": third,
            "vmrss_kb": rss,
        }), flush=True)
    finally:
        self.shutdown()
    return 0

lib.daemon.Daemon.run_forever = report
from lib.cli import main
raise SystemExit(main(["--config", config, "run"]))
"""

# Imports what the daemon imports one step at a time, recording VmRSS after each: a
# package's delta is what it adds on top of the steps before it (shared dependencies
# are charged to the first step that pulls them in).
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
    "lib.app lib.runners.local",
    "lib.cli",
)
PROBE_STEPS = r"""
import importlib, json, sys
repo, config, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, repo)
def rss():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
rows = [("python itself", rss(), len(sys.modules))]
for step in steps:
    for name in step.split():
        importlib.import_module(name)
    rows.append((step, rss(), len(sys.modules)))
from lib.app import build_app
from lib.config import load_config
from lib.daemon import Daemon
app = build_app(load_config(config))
daemon = Daemon(app.config, app.service, app.clock)
daemon.start()
rows.append(("load jobs.yaml, build app, Daemon.start()", rss(), len(sys.modules)))
daemon.shutdown()
print("STEPS " + json.dumps(rows))
"""


def write_config(tmp: Path, jobs: int, window_s: float) -> Path:
    """100 jobs whose first fire time is well after the window (checked with the real triggers)."""
    sys.path.insert(0, str(REPO))
    from zoneinfo import ZoneInfo

    from lib.triggers import parse_cron, parse_every

    project = tmp / "project"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: bench\nprofile: bench\n", encoding="utf-8")
    horizon = datetime.now(UTC) + timedelta(seconds=window_s + 120)
    usable: list[tuple[str, str, str]] = []
    for zone in ZONES:
        for key, value in CANDIDATES:
            trigger = (parse_cron if key == "schedule" else parse_every)(value, ZoneInfo(zone))
            if trigger.next_after(datetime.now(UTC)) > horizon:
                usable.append((key, value, zone))
    lines = [
        f"state_dir: {tmp / 'state'}",
        "defaults:",
        f"  project_dir: {project}",
        "  env:",
        '    DBT_SEND_ANONYMOUS_USAGE_STATS: "false"',
        "jobs:",
    ]
    for i in range(jobs):
        key, value, zone = usable[i % len(usable)]
        quoted = f"'{value}'" if key == "schedule" else value
        lines += [f"  idle_{i:03d}:", f"    {key}: {quoted}", f"    timezone: {zone}"]
        if i % 3 == 0:
            lines += ["    env:", f"      SLICE: '{i}'"]
    path = tmp / "jobs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def snapshot(pid: int) -> dict[str, float]:
    status = proc_status(pid)
    voluntary, involuntary = context_switches(pid)
    return {
        "rss_kb": status_kb(status, "VmRSS"),
        "hwm_kb": status_kb(status, "VmHWM"),
        "threads": int(status.get("Threads", "0")),
        "cpu_s": cpu_seconds(pid),
        "vcs": voluntary,
        "ivcs": involuntary,
    }


def smaps_top(pid: int, count: int = 8) -> list[tuple[str, int]]:
    """Resident kB per mapping name (file, [heap], or anonymous), largest first."""
    per: dict[str, int] = {}
    name = "?"
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping header line
                parts = line.split(None, 5)
                path = parts[5].strip() if len(parts) > 5 else ""
                name = path.rsplit("/", 1)[-1] if path.startswith("/") else (path or "[anonymous]")
            elif first == "Rss:":
                per[name] = per.get(name, 0) + int(line.split()[1])
    return sorted(per.items(), key=lambda kv: -kv[1])[:count]


def wait_started(err_path: Path, daemon: subprocess.Popen, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if daemon.poll() is not None:
            raise SystemExit(f"idle: the daemon exited {daemon.returncode}:\n{err_path.read_text()[-2000:]}")
        if "dbt-scheduler started" in err_path.read_text(encoding="utf-8", errors="replace"):
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit("idle: the daemon did not log 'dbt-scheduler started' within 60 s")


def run_probe(python: str, *command: str) -> tuple[str, str]:
    """(the line the probe printed after its tag, stderr)."""
    result = subprocess.run([python, *command], capture_output=True, text=True, check=False)
    tag = "PROBE " if PROBE in command else "STEPS "
    line = next((x for x in result.stdout.splitlines() if x.startswith(tag)), None)
    if line is None:
        raise SystemExit(f"idle: probe failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return line[len(tag) :], result.stderr


def probe(python: str, config: Path) -> tuple[dict, list[tuple[str, float]], list[list[object]]]:
    """Import facts, import time per top-level package, and VmRSS step by step."""
    line, importtime = run_probe(python, "-X", "importtime", "-c", PROBE, str(REPO), str(config))
    facts = json.loads(line)
    per: dict[str, float] = {}
    for row in importtime.splitlines():
        if not row.startswith("import time:") or "self [us]" in row:
            continue
        _, self_us, _cumulative, name = (part.strip() for part in row.replace("import time:", "|").split("|"))
        top = name.split(".")[0]
        per[top] = per.get(top, 0.0) + int(self_us) / 1000
    ranking = sorted(per.items(), key=lambda kv: -kv[1])
    line, _ = run_probe(python, "-c", PROBE_STEPS, str(REPO), str(config), json.dumps(STEPS))
    steps: list[list[object]] = []
    previous = None
    for name, rss_kb, modules in json.loads(line):
        delta = "" if previous is None else f"{(rss_kb - previous) / 1024:+.2f}"
        steps.append([name, delta, rss_kb / 1024, modules])
        previous = rss_kb
    return facts, ranking, steps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="15 s window instead of 60 s")
    parser.add_argument(
        "--seconds", type=float, default=None, help="window length (default 60, 15 with --quick)"
    )
    parser.add_argument("--jobs", type=int, default=100, help="jobs held by the daemon (default 100)")
    parser.add_argument(
        "--python", default=default_python(), help="interpreter for the daemon (default: .venv)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print its path")
    args = parser.parse_args()
    window = args.seconds or (15.0 if args.quick else 60.0)

    tmp = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    try:
        config = write_config(tmp, args.jobs, window)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_SCHEDULER_")}
        print(
            f"idle: real daemon, {args.jobs} jobs, {window:.0f} s window after {SETTLE_S:.0f} s settle; "
            f"{load_note()}"
        )
        err_path = tmp / "daemon.err"
        with open(tmp / "daemon.out", "wb") as out, open(err_path, "wb") as err:
            launched = time.monotonic()
            daemon = subprocess.Popen(
                [args.python, str(SCHEDULER), "--config", str(config), "run"],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
            try:
                ready_s = wait_started(err_path, daemon)
                time.sleep(SETTLE_S)
                start = snapshot(daemon.pid)
                peak_rss = start["rss_kb"]
                end_at = time.monotonic() + window
                while (left := end_at - time.monotonic()) > 0:
                    time.sleep(min(1.0, left))
                    peak_rss = max(peak_rss, status_kb(proc_status(daemon.pid), "VmRSS"))
                end = snapshot(daemon.pid)
                mappings = smaps_top(daemon.pid)
                elapsed = time.monotonic() - launched
            finally:
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
                try:
                    rc = daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    rc = daemon.wait()

        from lib.history import History

        runs = History(tmp / "state" / "history.db").runs(limit=None)
        cpu = end["cpu_s"] - start["cpu_s"]
        rows = [
            [
                "after start-up",
                start["rss_kb"] / 1024,
                start["hwm_kb"] / 1024,
                start["threads"],
                start["cpu_s"],
                "",
                "",
            ],
            [
                "end of window",
                end["rss_kb"] / 1024,
                end["hwm_kb"] / 1024,
                end["threads"],
                end["cpu_s"],
                int(end["vcs"] - start["vcs"]),
                int(end["ivcs"] - start["ivcs"]),
            ],
        ]
        print()
        print(
            table(["when", "VmRSS_MB", "VmHWM_MB", "threads", "cpu_total_s", "vol_cs_Δ", "invol_cs_Δ"], rows)
        )
        print(
            f"ready after {ready_s:.2f} s; highest VmRSS sampled {peak_rss / 1024:.1f} MB; "
            f"CPU during the {window:.0f} s window {cpu:.3f} s ({100 * cpu / window:.3f}% of a core); "
            f"runs recorded {len(runs)}; daemon exit code after SIGTERM {rc} (process lived {elapsed:.0f} s)"
        )
        print("\nResident memory by mapping (/proc/PID/smaps, end of window):")
        print(table(["mapping", "rss_kB"], mappings))

        facts, ranking, steps = probe(args.python, config)
        print(
            f"\nimports up to the daemon loop: {facts['modules']} modules; boto3={facts['boto3']} "
            f"botocore={facts['botocore']} rich={facts['rich']} dbt={facts['dbt']}; "
            f"probe VmRSS {facts['vmrss_kb'] / 1024:.1f} MB"
        )
        print(f"third-party packages loaded: {', '.join(facts['third_party']) or 'none'}")
        print("import time by top-level package (-X importtime, self time summed), top 8:")
        print(table(["package", "ms"], [[name, round(ms, 1)] for name, ms in ranking[:8]]))
        print("VmRSS import by import, in a fresh process (a step is charged for what it adds):")
        print(table(["step", "ΔMB", "VmRSS_MB", "modules"], steps))
        print("\nReference figures, measured earlier on this machine class (not re-measured here):")
        print(table(["system", "RSS idle", "CPU idle"], REFERENCE))

        rss_mb = end["rss_kb"] / 1024
        line = result_line(
            "idle",
            [
                ("rss_mb", rss_mb, "<=", TARGET_RSS_MB, rss_mb <= TARGET_RSS_MB),
                ("cpu_s", cpu, "<=", TARGET_CPU_S, cpu <= TARGET_CPU_S),
            ],
        )
        sane = rc == 0 and not runs and not facts["boto3"] and not facts["rich"]
        if not sane:
            print(
                "idle: unexpected: a run fired, boto3/rich imported, or the exit code was not 0",
                file=sys.stderr,
            )
            line = line.replace(" PASS", " FAIL")
        print(line)
        return 0 if rc == 0 else 1
    finally:
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
