"""Alerts: how soon after a run ends does the webhook hear of it, and does a dead endpoint
slow the daemon down?

The real daemon runs a job `every: 1 second` with bench/programs/dispatch_run.sh in place
of docker/run_commands.sh (it writes its start time, then exits 0), and a rule sending
`succeeded` to a webhook: a local HTTP receiver in this process that notes when each
delivery arrives. Latency = arrival minus the run's `finished_at` in history.db: the
Notify step, the router thread, the webhook's sender thread, signing and the POST.

Two variants. `live`: the webhook alone. `blackholed`: the same rule also sends to a
second webhook whose port accepts connections and never answers (each attempt waits its
10 s timeout, then retries): dispatch latency (fire time → the run script's first line)
must stay as without alerts, and the live webhook's latency too, since every channel
sends on its own thread. The daemon's RSS is read at the end of each variant.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _common import (
    PROGRAMS,
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
from _daemon import RealDaemon, read_runs
from _proc import rss_mb

TARGET_DELIVERY_P99_MS = 500.0
TARGET_DISPATCH_P99_MS = 50.0
WARMUP = 3  # the first runs import the alert and HTTP modules
RUN_SCRIPT = PROGRAMS / "dispatch_run.sh"


class Receiver:
    """A webhook receiver on 127.0.0.1: run id → arrival time (wall clock, like history's)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                run_id = json.loads(body).get("run_id")
                if run_id:
                    receiver.arrivals.setdefault(run_id, arrived)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def blackhole() -> tuple[socket.socket, str]:
    """A port that takes connections (the kernel's backlog) and never answers one."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/dead"


def write_config(tmp: Path, live: str, dead: str | None) -> Path:
    project = stub_project(tmp / "project")
    channels = f"    live: {{type: webhook, url: '{live}'}}\n"
    to = "[live]"
    if dead:
        channels += f"    dead: {{type: webhook, url: '{dead}'}}\n"
        to = "[live, dead]"
    path = tmp / "jobs.yaml"
    path.write_text(
        f"state_dir: {tmp / 'state'}\n"
        "max_parallel: 4\n"
        "shutdown_grace: 5s\n"
        "notifications:\n"
        "  channels:\n" + channels + "  rules:\n"
        f"    - {{on: [succeeded], to: {to}}}\n"
        "jobs:\n"
        f"  tick: {{every: 1 second, project_dir: {project}, overlap: skip}}\n",
        encoding="utf-8",
    )
    return path


def run_variant(name: str, samples: int, python: str, root: Path, dead: str | None) -> dict[str, float]:
    tmp = root / name
    tmp.mkdir()
    receiver = Receiver()
    config = write_config(tmp, receiver.url, dead)
    starts = tmp / "starts"
    starts.mkdir()
    env = clean_env(
        "DBT_SCHEDULER_", "BENCH_", DBT_SCHEDULER_RUN_COMMANDS=str(RUN_SCRIPT), BENCH_STARTS=str(starts)
    )
    deadline = time.monotonic() + samples + WARMUP + 60
    with RealDaemon(python, config, tmp, env, grace=40) as daemon:
        daemon.wait_started()
        while len(receiver.arrivals) < samples + WARMUP and time.monotonic() < deadline and daemon.alive():
            time.sleep(0.2)
        rss = rss_mb(daemon.pid)
    runs = sorted(read_runs(tmp / "state" / "history.db"), key=lambda r: str(r["started_at"]))
    delivery, dispatch = [], []
    for run in runs[WARMUP:]:
        run_id = str(run["run_id"])
        if run_id in receiver.arrivals and run["finished_at"]:
            finished = datetime.fromisoformat(str(run["finished_at"])).timestamp()
            delivery.append((receiver.arrivals[run_id] - finished) * 1000)
        start_file = starts / run_id
        if run["scheduled_for"] and start_file.exists() and start_file.read_text().strip():
            scheduled = datetime.fromisoformat(str(run["scheduled_for"])).timestamp()
            dispatch.append((float(start_file.read_text()) - scheduled) * 1000)
    receiver.server.shutdown()
    if daemon.rc != 0:
        print(f"{name}: daemon exited {daemon.rc}:\n{daemon.tail()}", file=sys.stderr)
    return {
        "n": len(delivery),
        "delivery_p50": percentile(delivery, 50) if delivery else math.nan,
        "delivery_p99": percentile(delivery, 99) if delivery else math.nan,
        "dispatch_p50": percentile(dispatch, 50) if dispatch else math.nan,
        "dispatch_p99": percentile(dispatch, 99) if dispatch else math.nan,
        "rss_mb": rss,
        "rc": float(daemon.rc or 0),
    }


def main() -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="40 samples per variant instead of 100")
    args = parse_args(parser)
    samples = 40 if args.quick else 100
    print(f"alerts: real daemon, a job every second, a `succeeded` rule to a local webhook; {load_note()}")
    results = {}
    with workspace("bench-alerts-", keep=args.keep) as root:
        dead_socket, dead_url = blackhole()
        try:
            for name, dead in (("live", None), ("blackholed", dead_url)):
                print(f"  {name}: collecting {samples} deliveries …", flush=True)
                results[name] = run_variant(name, samples, args.python, root, dead)
        finally:
            dead_socket.close()
    rows = [
        [
            name,
            r["n"],
            r["delivery_p50"],
            r["delivery_p99"],
            r["dispatch_p50"],
            r["dispatch_p99"],
            r["rss_mb"],
        ]
        for name, r in results.items()
    ]
    print()
    print(
        table(
            [
                "variant",
                "n",
                "delivery_p50_ms",
                "delivery_p99_ms",
                "dispatch_p50_ms",
                "dispatch_p99_ms",
                "rss_mb",
            ],
            rows,
        )
    )
    print(
        "delivery = the run's finished_at → the webhook's arrival;"
        " dispatch = fire time → the run script's first line"
    )
    worst_delivery = max(r["delivery_p99"] for r in results.values())
    dispatch_dead = results["blackholed"]["dispatch_p99"]
    sane = all(r["n"] >= samples * 0.9 and r["rc"] == 0 for r in results.values())
    line = result_line(
        "alerts",
        [
            (
                "delivery_p99_ms",
                worst_delivery,
                "<=",
                TARGET_DELIVERY_P99_MS,
                worst_delivery <= TARGET_DELIVERY_P99_MS,
            ),
            (
                "dispatch_p99_ms_blackholed",
                dispatch_dead,
                "<=",
                TARGET_DISPATCH_P99_MS,
                dispatch_dead <= TARGET_DISPATCH_P99_MS,
            ),
        ],
    )
    print(line if sane else line.replace(" PASS", " FAIL"))
    return 0 if sane and " FAIL" not in line else 1


if __name__ == "__main__":
    raise SystemExit(main())
