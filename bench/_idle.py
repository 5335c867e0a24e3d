"""What the two idle benchmarks share (idle.py: local jobs, idle_ecs.py: ECS jobs on moto).

The jobs that cannot fire during the window, the arguments, the start-up import facts
and the RESULT line with its targets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import REPO, gated, parse_args, parser_for, result_line, run_program, table

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


def arguments(doc: str | None, extra: Sequence[tuple[tuple[str, ...], dict]] = ()) -> argparse.Namespace:
    """--quick, --seconds, --jobs (and `extra` options); args.window is the window in seconds."""
    parser = parser_for(doc)
    parser.add_argument("--quick", action="store_true", help="15 s window instead of 60 s")
    parser.add_argument(
        "--seconds", type=float, default=None, help="window length (default 60, 15 with --quick)"
    )
    parser.add_argument("--jobs", type=int, default=100, help="jobs held by the daemon (default 100)")
    for flags, options in extra:
        parser.add_argument(*flags, **options)
    args = parse_args(parser)
    args.window = args.seconds or (15.0 if args.quick else 60.0)
    return args


def idle_jobs(jobs: int, window_s: float) -> list[str]:
    """The `jobs:` entries: first fire time well after the window (checked with the real triggers)."""
    sys.path.insert(0, str(REPO))
    from zoneinfo import ZoneInfo

    from lib.triggers import parse_cron, parse_every

    horizon = datetime.now(UTC) + timedelta(seconds=window_s + 120)
    usable: list[tuple[str, str, str]] = []
    for zone in ZONES:
        for key, value in CANDIDATES:
            trigger = (parse_cron if key == "schedule" else parse_every)(value, ZoneInfo(zone))
            if trigger.next_after(datetime.now(UTC)) > horizon:
                usable.append((key, value, zone))
    lines = []
    for i in range(jobs):
        key, value, zone = usable[i % len(usable)]
        quoted = f"'{value}'" if key == "schedule" else value
        lines += [f"  idle_{i:03d}:", f"    {key}: {quoted}", f"    timezone: {zone}"]
        if i % 3 == 0:
            lines += ["    env:", f"      SLICE: '{i}'"]
    return lines


def probe_facts(
    python: str, config: Path, env: dict[str, str] | None = None
) -> tuple[dict, list[tuple[str, float]]]:
    """Import facts once the daemon has started (programs/idle_probe.py), and import time per
    top-level package from its `-X importtime` output."""
    line, importtime = run_program(
        python, "PROBE", "idle_probe.py", str(REPO), str(config), env=env, flags=["-X", "importtime"]
    )
    facts = json.loads(line)
    per: dict[str, float] = {}
    for row in importtime.splitlines():
        if not row.startswith("import time:") or "self [us]" in row:
            continue
        _, self_us, _cumulative, name = (part.strip() for part in row.replace("import time:", "|").split("|"))
        top = name.split(".")[0]
        per[top] = per.get(top, 0.0) + int(self_us) / 1000
    return facts, sorted(per.items(), key=lambda kv: -kv[1])


def print_imports(facts: dict, ranking: list[tuple[str, float]]) -> None:
    print(
        f"\nimports up to the daemon loop: {facts['modules']} modules; boto3={facts['boto3']} "
        f"botocore={facts['botocore']} rich={facts['rich']} dbt={facts['dbt']}; "
        f"probe VmRSS {facts['vmrss_kb'] / 1024:.1f} MB"
    )
    print(f"third-party packages loaded: {', '.join(facts['third_party']) or 'none'}")
    print("import time by top-level package (-X importtime, self time summed), top 8:")
    print(table(["package", "ms"], [[name, round(ms, 1)] for name, ms in ranking[:8]]))


def rss_steps(rows: list[list[object]]) -> list[list[object]]:
    """[name, ΔMB, VmRSS_MB, modules] from the programs' [name, VmRSS kB, modules] rows."""
    steps: list[list[object]] = []
    previous = None
    for name, rss_kb, modules in rows:
        delta = "" if previous is None else f"{(rss_kb - previous) / 1024:+.2f}"
        steps.append([name, delta, rss_kb / 1024, modules])
        previous = rss_kb
    return steps


def window_note(cpu: float, window: float, peak_kb: int) -> str:
    return (
        f"highest VmRSS sampled {peak_kb / 1024:.1f} MB; CPU during the {window:.0f} s window "
        f"{cpu:.3f} s ({100 * cpu / window:.3f}% of a core)"
    )


def gate(name: str, rss_mb: float, target_mb: float, cpu: float, sane: bool, why: str) -> str:
    """`RESULT <name> rss_mb=… target<=… cpu_s=… target<=0.05 PASS|FAIL`, FAIL when not `sane`."""
    line = result_line(
        name,
        [
            ("rss_mb", rss_mb, "<=", target_mb, rss_mb <= target_mb),
            ("cpu_s", cpu, "<=", TARGET_CPU_S, cpu <= TARGET_CPU_S),
        ],
    )
    return gated(line, sane, why, "idle")
