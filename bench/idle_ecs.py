"""Idle cost of the real daemon holding 100 ECS jobs, after it has run ECS jobs (moto server).

The same 100 jobs as bench/idle.py with `runner: ecs` (and `git:`), the daemon pointed
at a moto server started here (`python -m moto.server` on a free loopback port, dummy
credentials, eu-west-1); programs/ecs_setup.py creates the cluster, a container
instance, the task definition, the log group and the bucket. A 101st job `every: 5
seconds` makes real ECS runs happen first (moto's state manager stops each task the
first time it is described), so the daemon has built its ECS, CloudWatch Logs and S3
clients: the steady state of a daemon that has run jobs. Once one run is in
history.db, jobs.yaml is rewritten with that job disabled and the daemon gets SIGHUP;
the window starts after the reload is logged and no run is left.

Reported: VmRSS right after start-up (no client built yet), after the first run, at
the start and end of the window; programs/ecs_probe_daemon.py (same config, its own
state_dir) runs the warm-up job a few times and counts the botocore clients alive
(gc); programs/ecs_steps.py builds the same objects step by step with VmRSS (and, in a
second pass when the target is missed or with --diagnose, tracemalloc by package)
after each step; programs/ecs_bare.py is Python + boto3 + one ECS client alone.
Also run as `bench/idle.py --runner ecs`. RESULT idle_ecs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

from _common import REPO, load_note, run_program, table, workspace
from _daemon import RealDaemon, read_runs, wait_runs
from _idle import SETTLE_S, arguments, gate, idle_jobs, print_imports, probe_facts, rss_steps, window_note
from _moto import REGION, aws_env, moto_server
from _proc import SNAPSHOT_HEADERS, smaps_top, snapshot, snapshot_row, watch

TARGET_RSS_MB = 60.0
WARMUP_JOB = "warmup"
WARMUP_EVERY = "5 seconds"  # the daemon's warm-up job
WARMUP_PERIOD_S = 5  # its fire times sit on a 5-second grid of the epoch
PROBE_WARMUP_EVERY = "2 seconds"  # the probe daemon's: a few runs in PROBE_RUN_S
PROBE_RUN_S = 7.0
AWS_NAMES = {
    "region": REGION,
    "cluster": "bench-idle",
    "bucket": "bench-idle-artifacts",
    "task_family": "bench-idle",
    "container_name": "dbt",
    "log_group": "/ecs/bench-idle",
}
COMPARISON = "Python + boto3 + one ECS client alone ≈ 48 MB here; Dagster ≈ 340 MB idle"


def config_text(state_dir: Path, endpoint: str, body: list[str], warmup: str, enabled: bool) -> str:
    """A jobs.yaml with an `aws:` section, the ECS jobs in `body` and the warm-up job."""
    lines = [
        f"state_dir: {state_dir}",
        "aws:",
        *(f"  {key}: {value}" for key, value in AWS_NAMES.items()),
        f"  endpoint_url: {endpoint}",
        "  poll_interval: 1s",
        "  start_retries: 0",  # a warm-up run that cannot start fails at once, not after 30 s
        "defaults:",
        "  runner: ecs",
        "  git: {url: https://example.invalid/x.git}",
        "  env:",
        '    DBT_SEND_ANONYMOUS_USAGE_STATS: "false"',
        "jobs:",
        *body,
        f"  {WARMUP_JOB}:",
        f"    every: {warmup}",
        f"    enabled: {'true' if enabled else 'false'}",
    ]
    return "\n".join(lines) + "\n"


def finished(runs: list[dict[str, object]]) -> bool:
    return any(r["outcome"] != "running" for r in runs)


def settled(runs: list[dict[str, object]]) -> bool:
    return all(r["outcome"] != "running" for r in runs)


def diagnose(python: str, config: Path, env: dict[str, str]) -> None:
    """Where the ECS daemon's memory goes: tracemalloc over the same steps (ecs_steps.py, TRACE=1)."""
    print("\ndiagnosis (tracemalloc, same steps again; ~20 s):")
    line, _ = run_program(python, "AWS", "ecs_steps.py", str(REPO), str(config), "1", env=env)
    traced = json.loads(line)
    print(
        f"still allocated at the end, from the step after the scheduler's modules: "
        f"{traced['traced_kb'] / 1024:.1f} MB; by package (innermost frame outside the stdlib):"
    )
    print(table(["package", "kB"], [[name, size // 1024] for name, size in traced["packages"]]))
    print("by line:")
    print(table(["where", "kB"], [[name, size // 1024] for name, size in traced["lines"]]))
    print("botocore data files loaded (what each load left allocated; botocore caches them for good):")
    print(table(["file", "kB"], [[name, size // 1024] for name, size in traced["files"]]))


def measure(args: argparse.Namespace, tmp: Path, env: dict[str, str], endpoint: str) -> int:
    window = args.window
    line, _ = run_program(args.python, "SETUP", "ecs_setup.py", endpoint, json.dumps(AWS_NAMES), env=env)
    setup = json.loads(line)
    print(
        f"moto server {endpoint}: cluster {AWS_NAMES['cluster']}, container instance {setup['instance']} "
        f"(AMI {setup['image']}), task definition {AWS_NAMES['task_family']}:{setup['revision']}, "
        f"log group, bucket ({setup['seconds']:.1f} s); state manager ecs::task = {setup['transition']}, "
        f"check task: {setup['check_task']} exit {setup['check_exit']} on its first DescribeTasks"
    )
    # The first fire times must clear the warm-up and reload too: count a minute for them.
    body = idle_jobs(args.jobs, window + 60)
    config, probe_config = tmp / "jobs.yaml", tmp / "probe-jobs.yaml"
    config.write_text(config_text(tmp / "state", endpoint, body, WARMUP_EVERY, True), encoding="utf-8")
    probe_text = config_text(tmp / "probe-state", endpoint, body, PROBE_WARMUP_EVERY, True)
    probe_config.write_text(probe_text, encoding="utf-8")
    db = tmp / "state" / "history.db"
    # Start just after a point of the warm-up job's grid, so its first run comes ~5 s
    # later: well after the start-up figure is taken.
    time.sleep((-time.time()) % WARMUP_PERIOD_S + 0.1)
    with RealDaemon(args.python, config, tmp, env) as daemon:
        ready_s = daemon.wait_started()
        ready_at = time.monotonic()
        time.sleep(0.5)
        fresh = snapshot(daemon.pid)
        early = bool(read_runs(db)) or "starting run" in daemon.log()
        wait_runs(db, daemon, finished, "finished ECS run")
        first_s = time.monotonic() - ready_at
        time.sleep(1.0)  # the run's summary is printed after its history row is written
        warm = snapshot(daemon.pid)
        # The warm-up job off, the 100 jobs unchanged: rewrite jobs.yaml, SIGHUP.
        staged = tmp / "jobs.yaml.new"
        staged.write_text(config_text(tmp / "state", endpoint, body, WARMUP_EVERY, False), encoding="utf-8")
        os.replace(staged, config)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_log("reloaded ", timeout=30)
        wait_runs(db, daemon, settled, "end of the last warm-up run", timeout=60)
        time.sleep(SETTLE_S)
        before = read_runs(db)
        start, end, peak_rss = watch(daemon.pid, window)
        after = read_runs(db)
        mappings = smaps_top(daemon.pid)
        elapsed = time.monotonic() - daemon.launched
    rc = daemon.rc

    in_window = len(after) - len(before)
    warmups = [r for r in before if r["job"] == WARMUP_JOB]
    cpu = end["cpu_s"] - start["cpu_s"]
    print()
    rows = [
        snapshot_row("after start-up (no ECS run, no client yet)", fresh),
        snapshot_row("after the first ECS run", warm, fresh),
        snapshot_row("window start (warm-up off by SIGHUP)", start, warm),
        snapshot_row("end of window", end, start),
    ]
    print(table(SNAPSHOT_HEADERS, rows))
    print(
        f"ready after {ready_s:.2f} s; first ECS run recorded {first_s:.1f} s after the started line; "
        f"in the window: {window_note(cpu, window, peak_rss)}; runs during the window {in_window}; "
        f"daemon exit code after SIGTERM {rc} (process lived {elapsed:.0f} s)"
    )
    if early:
        print("note: a run had already started when the start-up figure was taken")
    for run in warmups:
        print(
            f"warm-up run {run['run_id']}: {run['outcome']}, {run['duration_s']} s, "
            f"task {str(run['external_id'] or '-').rsplit('/', 1)[-1]}: {run['reason'] or ''}"
        )
    print("\nResident memory by mapping (/proc/PID/smaps, end of window):")
    print(table(["mapping", "rss_kB"], mappings))

    facts, ranking = probe_facts(args.python, config, env=env)
    print_imports(facts, ranking)
    line, _ = run_program(
        args.python, "PROBE", "ecs_probe_daemon.py", str(REPO), str(probe_config), str(PROBE_RUN_S), env=env
    )
    ran = json.loads(line)
    print(
        f"probe daemon (same ECS config, warm-up every {PROBE_WARMUP_EVERY}, {PROBE_RUN_S:.0f} s): "
        f"{ran['runs']} ECS run(s) {'/'.join(ran['outcomes'])}; botocore clients alive (gc): "
        f"{len(ran['clients_alive'])} {ran['clients_alive']}; held by AwsClients: {ran['clients_cached']}; "
        f"ecs clients: {ran['clients_alive'].count('ecs')}; boto3={ran['boto3']} rich={ran['rich']}; "
        f"{ran['modules']} modules; VmRSS {ran['vmrss_kb'] / 1024:.1f} MB"
    )
    line, _ = run_program(args.python, "BARE", "ecs_bare.py", endpoint, REGION, env=env)
    bare_mb = int(line) / 1024
    line, _ = run_program(args.python, "AWS", "ecs_steps.py", str(REPO), str(config), "0", env=env)
    print("VmRSS step by step, building what the ECS daemon holds in a fresh process:")
    print(table(["step", "ΔMB", "VmRSS_MB", "modules"], rss_steps(json.loads(line)["rows"])))
    rss_mb = end["rss_kb"] / 1024
    if args.diagnose or rss_mb > TARGET_RSS_MB:
        diagnose(args.python, config, env)
    print(f"\nmeasured now: Python + boto3 + one ECS client alone, fresh process: {bare_mb:.1f} MB")
    print(COMPARISON)

    ecs_runs = [r for r in warmups if r["external_id"]]
    reasons = [f"the daemon exited {rc}"] if rc != 0 else []
    reasons += [] if ecs_runs else ["no warm-up run got an ECS task"]
    reasons += [f"{in_window} run(s) during the window"] if in_window else []
    print(gate("idle_ecs", rss_mb, TARGET_RSS_MB, cpu, not reasons, "; ".join(reasons)))
    return 0 if rc == 0 and ecs_runs else 1


def run(args: argparse.Namespace) -> int:
    """The benchmark in a fresh workspace with its own moto server (also `idle.py --runner ecs`)."""
    with workspace("bench-idle-ecs-", keep=args.keep) as tmp:
        env = aws_env(tmp)
        print(
            f"idle (ECS): real daemon, {args.jobs} ECS jobs + 1 warm-up job on a moto server, "
            f"{args.window:.0f} s window after {SETTLE_S:.0f} s settle; {load_note()}"
        )
        with moto_server(args.python, tmp, env) as endpoint:
            return measure(args, tmp, env, endpoint)


def main() -> int:
    diagnose_flag = {
        "action": "store_true",
        "help": "trace where the memory goes even when the RSS target is met (it always is when missed)",
    }
    return run(arguments(__doc__, [(("--diagnose",), diagnose_flag)]))


if __name__ == "__main__":
    raise SystemExit(main())
