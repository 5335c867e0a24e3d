"""Web UI and API latency with a big history, and the daemon's RSS with the web UI on and off.

The real daemon (`scheduler.py run`) holds 100 idle jobs with 100,000 runs in history.db
(programs/web_history.py: spread over a year, written through lib/history.py so the schema
and its indexes are the daemon's; a few runs have a run folder with report.json and
run.log). First its RSS idle without `web:` (web off), then with `web.listen` (web on,
before any request). Then, route by route, 20 client threads on loopback (urllib, a bearer
token, a new connection per request) ask that route at once; then all routes mixed (each
client going round them). Latency is from send to the last byte.
`/metrics` is measured apart, one client (a Prometheus scrape, not 20 people).

Targets: p99 ≤ 50 ms for the jobs page and a run page; idle RSS ≤ 50 MB with the web UI on,
≤ 30 MB off. The client threads share this process's GIL, so the figures include their
own overhead (an upper bound for the server).

RESULT web jobs_page_p99_ms=… run_page_p99_ms=… rss_on_mb=… rss_off_mb=…
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

from _common import (
    REPO,
    clean_env,
    gated,
    load_note,
    parse_args,
    parser_for,
    percentile,
    result_line,
    run_program,
    stub_project,
    table,
    workspace,
)
from _daemon import RealDaemon
from _idle import idle_jobs
from _proc import rss_mb

TARGET_P99_MS = 50.0
TARGET_RSS_ON_MB = 50.0
TARGET_RSS_OFF_MB = 30.0
SETTLE_S = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(tmp: Path, jobs: int, listen: str | None) -> Path:
    lines = [
        f"state_dir: {tmp / 'state'}",
        *([f'web: {{listen: "{listen}"}}'] if listen else []),
        "defaults:",
        f"  project_dir: {stub_project(tmp / 'project')}",
        "jobs:",
        *idle_jobs(jobs, 600),
    ]
    path = tmp / ("jobs-web.yaml" if listen else "jobs.yaml")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def job_names(config: Path) -> list[str]:
    return [
        line.strip().rstrip(":") for line in config.read_text().splitlines() if line.startswith("  idle_")
    ]


def load(
    base: str, token: str, routes: list[tuple[str, str]], clients: int, per_route: int
) -> dict[str, list[float]]:
    """`clients` threads, each asking every route `per_route` / `clients` times, interleaved."""
    timings: dict[str, list[float]] = {name: [] for name, _ in routes}
    errors: list[str] = []
    lock = threading.Lock()
    rounds = max(1, per_route // clients)

    def client(index: int) -> None:
        for _round in range(rounds):
            for name, path in routes[index % len(routes) :] + routes[: index % len(routes)]:
                request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        answer.read()
                        status = answer.status
                except OSError as exc:
                    with lock:
                        errors.append(f"{path}: {exc}")
                    continue
                took = (time.perf_counter() - started) * 1000
                with lock:
                    if status == 200:
                        timings[name].append(took)
                    else:
                        errors.append(f"{path}: HTTP {status}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        print(f"{len(errors)} request(s) failed, e.g. {errors[:3]}")
    return timings


def measure(args: argparse.Namespace, tmp: Path) -> int:
    port = free_port()
    off_config = write_config(tmp, args.jobs, None)
    on_config = write_config(tmp, args.jobs, f"127.0.0.1:{port}")
    names = job_names(on_config)
    print(f"web: real daemon, {args.jobs} jobs, {args.runs:,} runs in history, {args.clients} clients")
    print(load_note())
    started = time.monotonic()
    line, _ = run_program(
        args.python, "WEB", "web_history.py", str(REPO), str(tmp / "state"), json.dumps(names), str(args.runs)
    )
    facts = json.loads(line)
    size_mb = (tmp / "state" / "history.db").stat().st_size / 1e6
    print(f"history filled in {time.monotonic() - started:.1f} s ({size_mb:.1f} MB)")
    env = clean_env("DBT_SCHEDULER_")
    with RealDaemon(args.python, off_config, tmp, env) as daemon:
        daemon.wait_started()
        time.sleep(SETTLE_S)
        rss_off = rss_mb(daemon.pid)
    rc_off = daemon.rc
    with RealDaemon(args.python, on_config, tmp, env) as daemon:
        daemon.wait_started()
        daemon.wait_log("web UI and API on")
        time.sleep(SETTLE_S)
        rss_on = rss_mb(daemon.pid)
        base = f"http://127.0.0.1:{port}"
        run_id, job = facts["run_ids"][0], names[0]
        routes = [
            ("jobs page /", "/"),
            ("run page /runs/ID", f"/runs/{run_id}"),
            ("job page /jobs/JOB", f"/jobs/{job}"),
            ("timeline 24h", "/timeline"),
            ("GET /api/jobs", "/api/jobs"),
            ("GET /api/jobs/JOB/runs", f"/api/jobs/{job}/runs"),
            ("GET /api/runs/ID", f"/api/runs/{run_id}"),
            ("GET /api/runs/ID/log", f"/api/runs/{run_id}/log"),
        ]
        load(base, facts["token"], routes, args.clients, args.clients)  # warm-up
        # Each route under its own load: 20 clients asking it at once (the target's reading);
        # then every route mixed, the slowest pages slowing the others.
        timings: dict[str, list[float]] = {}
        for route in routes:
            timings.update(load(base, facts["token"], [route], args.clients, args.requests))
        mixed = load(base, facts["token"], routes, args.clients, args.requests // 2)
        # /metrics is scraped every 15-60 s by one Prometheus, not by 20 people: alone.
        scrapes = load(base, facts["token"], [("GET /metrics (1 client)", "/metrics")], 1, 30)
        rss_after = rss_mb(daemon.pid)
    rc_on = daemon.rc
    rows = []
    timings.update(scrapes)
    timings.update({f"mixed: {name}": values for name, values in mixed.items()})
    for name in timings:
        values = timings[name]
        if values:
            rows.append([name, len(values), percentile(values, 50), percentile(values, 99), max(values)])
        else:
            rows.append([name, 0, float("nan"), float("nan"), float("nan")])
    print()
    print(table(["route", "requests", "p50_ms", "p99_ms", "max_ms"], rows))
    print(
        f"\nidle RSS: web off {rss_off:.1f} MB, web on {rss_on:.1f} MB (before any request), "
        f"{rss_after:.1f} MB after the load; daemon exit codes {rc_off}, {rc_on}"
    )
    p99 = {name: percentile(v, 99) if v else float("inf") for name, v in timings.items()}
    checks = [
        ("jobs_page_p99_ms", p99["jobs page /"], "<=", TARGET_P99_MS, p99["jobs page /"] <= TARGET_P99_MS),
        (
            "run_page_p99_ms",
            p99["run page /runs/ID"],
            "<=",
            TARGET_P99_MS,
            p99["run page /runs/ID"] <= TARGET_P99_MS,
        ),
        ("rss_on_mb", rss_on, "<=", TARGET_RSS_ON_MB, rss_on <= TARGET_RSS_ON_MB),
        ("rss_off_mb", rss_off, "<=", TARGET_RSS_OFF_MB, rss_off <= TARGET_RSS_OFF_MB),
    ]
    sane = rc_off == 0 and rc_on == 0 and all(timings.values())
    timings = {name: values for name, values in timings.items() if not name.startswith("mixed")}
    print(
        gated(result_line("web", checks), sane, "a daemon did not exit 0, or a route answered nothing", "web")
    )
    return 0 if sane else 1


def main() -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests per route (200 instead of 1000)")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--requests", type=int, default=0, help="requests per route (default 1000, --quick 200)"
    )
    args = parse_args(parser)
    args.requests = args.requests or (200 if args.quick else 1000)
    with workspace("bench-web-", args.keep) as tmp:
        return measure(args, tmp)


if __name__ == "__main__":
    raise SystemExit(main())
