"""Scheduler overhead: `scheduler.py run-now example` versus `dbt build` run directly.

A = the scheduler: `python scheduler.py --config <tmp>/jobs.yaml run-now example`, the
    job pointing at the repo's example project (project_dir + profiles_dir), state_dir
    in the temp dir. Everything it does counts: Python start-up, config, history,
    docker/run_commands.sh, dbt, artifacts copy, reports, the summary.
B = dbt by hand: `cd <tmp>/direct-project && DBT_PROFILES_DIR=. dbt build` with the
    venv's dbt, on a copy of the example project so neither side pollutes the other.

Runs are interleaved (A B A B …) after one warm-up of each, so a slow minute on a
shared machine hits both sides. The gate is the median of the per-pair ratios A/B.

Fairness with respect to dbt's partial parse (`--mode`):
  cold (default): both parse from scratch every time. The scheduler's per-job cache
      (<state_dir>/cache/example/partial_parse) is deleted before each A run, and
      target/partial_parse.msgpack before each B run. The example profile puts the
      DuckDB file under DBT_RUN_DIR, which the scheduler sets to a fresh folder per run;
      B gets a fresh DBT_RUN_DIR per run too, so both build into a new database.
  warm: both keep their partial-parse state between runs. Both use a profile whose
      DuckDB path is fixed (one file per side), because dbt hashes the connection
      values into partial_parse.msgpack and a per-run path forces a full parse.
Both sides use the same profile settings (threads included), the same dbt and the
same environment (DBT_* variables of the caller removed), and write output to a file.

--daemon: A goes through the control plane. The real daemon (`scheduler.py run`) runs
on the same jobs.yaml for the whole benchmark, so each `run-now` submits the run to it
over <state_dir>/control.sock and follows it (lines, then the summary from the daemon's
record) instead of running it in its own process; B is unchanged. The ratio is then
run-now-through-the-daemon vs dbt by hand, against the same target.

One extra, instrumented A run at the end (not timed in the table) wraps
run_commands.sh with bench/programs/timestamp_run_commands.sh, which timestamps every
output line, to show where the scheduler's time goes.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _common import (
    PROGRAMS,
    REPO,
    SCHEDULER,
    interleave,
    load_note,
    median,
    parse_args,
    parser_for,
    result_line,
    table,
    workspace,
)
from _daemon import RealDaemon

TARGET_RATIO = 1.05
JOB = "example"
RUN_COMMANDS = REPO / "docker" / "run_commands.sh"

# Runs the real run_commands.sh, timestamping each output line into $BENCH_TIMES_FILE.
WRAPPER = PROGRAMS / "timestamp_run_commands.sh"
PAIR_HEADERS = ["pair", "sched_s", "parse", "direct_s", "parse", "extra_s", "ratio"]
PAIR_HEADERS += ["sched_cpu_s", "direct_cpu_s", "cpu_ratio"]


@dataclass
class Timed:
    seconds: float
    cpu_s: float  # user + system CPU of the whole process tree (python, bash, dbt)
    parse: str  # "full", "partial" or "?" (read from dbt's output)
    log: Path


def pair_row(label: object, a: Timed, b: Timed) -> list[object]:
    """A row under PAIR_HEADERS: both sides' wall time and parse kind, extra, ratio, CPU and its ratio."""
    wall = [a.seconds, a.parse, b.seconds, b.parse, a.seconds - b.seconds, a.seconds / b.seconds]
    return [label, *wall, a.cpu_s, b.cpu_s, a.cpu_s / b.cpu_s]


class RunFailed(RuntimeError):
    pass


def parse_kind(text: str) -> str:
    """Did dbt parse from scratch? dbt says so ("Unable to do partial parsing…"); silence means partial."""
    if "Unable to do partial parsing" in text or "Starting full parse" in text:
        return "full"
    return "partial" if "Running with dbt" in text else "?"


def fixed_path_profile(text: str, duckdb_path: Path) -> str:
    """The example's profiles.yml with the first target's `path:` replaced by a fixed file."""
    new, count = re.subn(r"^(\s*path:\s*).*$", rf"\g<1>'{duckdb_path}'", text, count=1, flags=re.M)
    if count != 1:
        raise SystemExit("overhead: no `path:` line in the example's profiles.yml; cannot build --mode warm")
    return new


class Bench:
    def __init__(self, tmp: Path, python: str, project: Path, mode: str) -> None:
        self.tmp = tmp
        self.python = python
        self.project = project
        self.mode = mode
        self.dbt = str(Path(python).parent / "dbt")
        self.copy = tmp / "direct-project"
        self.state = tmp / "state"
        self.logs = tmp / "logs"
        self.config = tmp / "jobs.yaml"
        self.logs.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
        env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
        env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
        self.env = env

        skip = {"target", "logs", "dbt_packages", "package-lock.yml"}
        shutil.copytree(
            project, self.copy, ignore=lambda _d, names: [n for n in names if n in skip or ".duckdb" in n]
        )
        profiles_dir = project
        if mode == "warm":
            original = (project / "profiles.yml").read_text(encoding="utf-8")
            profiles_dir = tmp / "scheduler-profiles"
            profiles_dir.mkdir()
            (profiles_dir / "profiles.yml").write_text(fixed_path_profile(original, tmp / "scheduler.duckdb"))
            (self.copy / "profiles.yml").write_text(fixed_path_profile(original, tmp / "direct.duckdb"))
        self.config.write_text(
            f"state_dir: {self.state}\n"
            "jobs:\n"
            f"  {JOB}:\n"
            "    schedule: '0 3 1 1 *'\n"
            f"    project_dir: {project}\n"
            f"    profiles_dir: {profiles_dir}\n"
            "    target: dev\n"
            "    commands: [dbt build]\n",
            encoding="utf-8",
        )

    def scheduler(self, tag: str, extra_env: dict[str, str] | None = None) -> Timed:
        if self.mode == "cold":
            shutil.rmtree(self.state / "cache", ignore_errors=True)
        command = [self.python, str(SCHEDULER), "--config", str(self.config), "run-now", JOB]
        return self._timed(tag, command, self.tmp, {**self.env, **(extra_env or {})})

    def direct_env(self, tag: str) -> tuple[dict[str, str], Path]:
        """The environment of a direct run, and its run dir (remove it afterwards)."""
        env = {**self.env, "DBT_PROFILES_DIR": "."}
        run_dir = self.tmp / "direct-runs" / tag
        if self.mode == "cold":
            (self.copy / "target" / "partial_parse.msgpack").unlink(missing_ok=True)
            run_dir.mkdir(parents=True)
            env["DBT_RUN_DIR"] = str(run_dir)  # a new DuckDB file, as the scheduler's run gets
        return env, run_dir

    def direct(self, tag: str) -> Timed:
        env, run_dir = self.direct_env(tag)
        try:
            return self._timed(tag, [self.dbt, "build"], self.copy, env)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def direct_timeline(self) -> tuple[float, float, float, float]:
        """A direct run read line by line: (to first line, first → last line, last line → exit, total)."""
        env, run_dir = self.direct_env("timeline")
        first = last = None
        started = time.time()
        try:
            process = subprocess.Popen(
                [self.dbt, "build"],
                cwd=self.copy,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            assert process.stdout is not None
            for _line in process.stdout:
                last = time.time()
                first = first or last
            rc = process.wait()
            ended = time.time()
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        if rc != 0 or first is None or last is None:
            raise RunFailed(f"direct timeline run exited {rc}")
        return first - started, last - first, ended - last, ended - started

    def _timed(self, tag: str, command: list[str], cwd: Path, env: dict[str, str]) -> Timed:
        log = self.logs / f"{tag}.log"
        with open(log, "wb") as out:
            # RUSAGE_CHILDREN sums every waited-for descendant: run-now's bash and dbt too.
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            rc = subprocess.run(
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            ).returncode
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        text = log.read_text(encoding="utf-8", errors="replace")
        if rc != 0:
            tail = "\n".join(text.splitlines()[-25:])
            raise RunFailed(f"{tag}: `{' '.join(command)}` exited {rc}; last lines:\n{tail}")
        return Timed(seconds, cpu, parse_kind(text), log)


# ------------------------------------------------------------------------------ breakdown


def breakdown(bench: Bench, direct_median: float) -> None:
    """One instrumented scheduler run: where does its time go?"""
    times = bench.tmp / "times.txt"
    extra = {
        "DBT_SCHEDULER_RUN_COMMANDS": str(WRAPPER),
        "BENCH_REAL_SCRIPT": str(RUN_COMMANDS),
        "BENCH_TIMES_FILE": str(times),
    }
    t_start = time.time()
    run = bench.scheduler("breakdown", extra)
    t_end = t_start + run.seconds

    spawn = exit_ = None
    lines: list[tuple[float, str]] = []
    for raw in times.read_text(encoding="utf-8", errors="replace").splitlines():
        kind, _, rest = raw.partition(" ")
        if kind == "spawn":
            spawn = float(rest)
        elif kind == "exit":
            exit_ = float(rest)
        elif kind == "line":
            stamp, _, text = rest.partition(" ")
            lines.append((float(stamp), text))
    if spawn is None or exit_ is None or not lines:
        print(
            "breakdown: the timestamping wrapper recorded nothing (was DBT_SCHEDULER_RUN_COMMANDS honoured?)"
        )
        return

    def first(pred: Callable[[str], bool], start: int = 0) -> int | None:
        return next((i for i in range(start, len(lines)) if pred(lines[i][1])), None)

    def marker(word: str) -> Callable[[str], bool]:
        return lambda text: f"[run_commands] {word}" in text

    i_fetch, i_deps = first(marker("STEP fetch")), first(marker("STEP deps"))
    i_cmd = first(marker("STEP command"))
    i_art = first(marker("STEP artifacts"))
    i_exit = first(marker("EXIT"))
    if None in (i_fetch, i_deps, i_cmd, i_art, i_exit):
        print("breakdown: run_commands.sh printed an unexpected sequence of markers; skipped")
        return
    assert i_fetch is not None and i_deps is not None and i_cmd is not None
    assert i_art is not None and i_exit is not None
    i_dbt_first = first(lambda text: "[run_commands]" not in text, i_cmd + 1)
    i_dbt_last = max(
        (i for i in range(i_cmd + 1, i_art) if "[run_commands]" not in lines[i][1]), default=i_cmd
    )
    t = [stamp for stamp, _ in lines]
    dbt_first = t[i_dbt_first] if i_dbt_first is not None and i_dbt_first < i_art else t[i_cmd]
    deps_text = lines[i_deps][1].split("STEP deps:", 1)[-1].strip()
    phases = [
        ("scheduler: python start-up, imports, config, lock, history row → bash", spawn - t_start),
        ("run_commands.sh: start → STEP fetch (parse DBT_COMMANDS, find dbt)", t[i_fetch] - spawn),
        ("run_commands.sh: fetch (local project check, git rev-parse)", t[i_deps] - t[i_fetch]),
        (f"run_commands.sh: deps ({deps_text}) + partial-parse restore", t[i_cmd] - t[i_deps]),
        ("dbt: start-up until its first line (imports)", dbt_first - t[i_cmd]),
        ("dbt: first line → last line (parse + build)", t[i_dbt_last] - dbt_first),
        ("dbt: exit + save partial_parse.msgpack", t[i_art] - t[i_dbt_last]),
        ("run_commands.sh: artifacts copy → EXIT", t[i_exit] - t[i_art]),
        ("run_commands.sh: EXIT → bash gone", exit_ - t[i_exit]),
        ("scheduler: node results, reports, history, summary, python exit", t_end - exit_),
    ]
    total = t_end - t_start
    print(f"\nWhere the scheduler's time goes (one instrumented run, {run.parse} parse, {total:.2f} s):")
    rows: list[list[object]] = [
        [name, round(sec * 1000), f"{100 * sec / total:.1f}%"] for name, sec in phases
    ]
    rows.append(["total", round(total * 1000), "100.0%"])
    print(table(["phase", "ms", "share"], rows))
    dbt_inside = t[i_art] - t[i_cmd]
    outside = total - dbt_inside
    print(
        f"dbt inside the scheduler (STEP command → STEP artifacts) {dbt_inside:.2f} s vs direct median "
        f"{direct_median:.2f} s; everything else {outside * 1000:.0f} ms, i.e. a ratio of "
        f"{(direct_median + outside) / direct_median:.3f} on this direct median (less noisy than the "
        f"pairs: it does not depend on two dbt runs taking the same time)"
    )
    until_first, body, exiting, whole = bench.direct_timeline()
    print(
        f"  a direct run read line by line, for comparison: start-up until first line "
        f"{until_first * 1000:.0f} ms, first → last line {body * 1000:.0f} ms, "
        f"last line → exit {exiting * 1000:.0f} ms, total {whole:.2f} s"
    )
    startup(bench)


def startup(bench: Bench) -> None:
    """Splits the first phase: bare interpreter vs the imports `run-now` does."""

    def best(command: list[str]) -> float:
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, env=bench.env, check=True, stdout=subprocess.DEVNULL)
            samples.append(time.perf_counter() - started)
        return min(samples)

    bare = best([bench.python, "-c", "pass"])
    with_imports = best([bench.python, str(PROGRAMS / "run_now_imports.py"), str(REPO)])
    print(
        f"  of which: bare interpreter {bare * 1000:.0f} ms, + run-now's imports (lib + rich) "
        f"{(with_imports - bare) * 1000:.0f} ms (best of 3 each)"
    )


# ------------------------------------------------------------------------------ main


def main() -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="3 pairs instead of 5")
    parser.add_argument(
        "-n", "--runs", type=int, default=None, help="timed pairs (default 5, 3 with --quick)"
    )
    parser.add_argument("--mode", choices=("cold", "warm"), default="cold", help="partial-parse state")
    parser.add_argument("--project", type=Path, default=REPO / "example", help="dbt project to run")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the instrumented extra run")
    parser.add_argument(
        "--daemon", action="store_true", help="run-now through a running daemon's control socket"
    )
    args = parse_args(parser)
    pairs = args.runs or (3 if args.quick else 5)

    with workspace("bench-overhead-", keep=args.keep) as tmp, contextlib.ExitStack() as stack:
        bench = Bench(tmp, args.python, args.project.resolve(), args.mode)
        if args.daemon:
            daemon = stack.enter_context(RealDaemon(args.python, bench.config, tmp, bench.env))
            daemon.wait_started()
            args.no_breakdown = True  # the wrapper's timestamps would be the daemon's, not run-now's
        print(
            f"overhead: scheduler run-now{' through the daemon' if args.daemon else ''} vs direct dbt build, "
            f"{pairs} interleaved pairs after 1 warm-up each, mode={args.mode}, project={args.project}; "
            f"{load_note()}"
        )
        try:
            warm_a, warm_b = bench.scheduler("warmup-scheduler"), bench.direct("warmup-direct")
            print(
                f"warm-up: scheduler {warm_a.seconds:.2f} s ({warm_a.parse}), direct {warm_b.seconds:.2f} s "
                f"({warm_b.parse})"
            )
            results: list[tuple[Timed, Timed]] = []
            sides = (lambda i: bench.scheduler(f"scheduler-{i}"), lambda i: bench.direct(f"direct-{i}"))
            for i, a, b in interleave(pairs, *sides):
                results.append((a, b))
                print(f"  pair {i}: scheduler {a.seconds:.2f} s, direct {b.seconds:.2f} s", flush=True)
        except RunFailed as exc:
            print(f"overhead: a run failed, no figures. {exc}", file=sys.stderr)
            print("(docker/run_commands.sh may be mid-edit: retry in a while)", file=sys.stderr)
            return 1

        ratios = [a.seconds / b.seconds for a, b in results]
        cpu_ratios = [a.cpu_s / b.cpu_s for a, b in results]
        rows = [pair_row(i, a, b) for i, (a, b) in enumerate(results, 1)]
        a_med = median([a.seconds for a, _ in results])
        b_med = median([b.seconds for _, b in results])
        extra = median([a.seconds - b.seconds for a, b in results])
        a_cpu, b_cpu = median([a.cpu_s for a, _ in results]), median([b.cpu_s for _, b in results])
        rows.append(["median", a_med, "", b_med, "", extra, median(ratios), a_cpu, b_cpu, median(cpu_ratios)])
        print()
        print(table(PAIR_HEADERS, rows))
        print(
            "(wall seconds gate the target; cpu = user+system of the whole process tree, much less "
            "sensitive to other load on the machine)"
        )
        expected = "full" if args.mode == "cold" else "partial"
        odd = [f"{r.log.name}:{r.parse}" for pair in results for r in pair if r.parse != expected]
        if odd:
            print(
                f"warning: expected {expected} parses on both sides, got {', '.join(odd)}: not like for like"
            )
        print(
            f"medians: scheduler {a_med:.3f} s, direct {b_med:.3f} s, ratio of medians {a_med / b_med:.3f}, "
            f"median of pair ratios {median(ratios):.3f}, median extra {extra * 1000:.0f} ms"
        )
        if not args.no_breakdown:
            try:
                breakdown(bench, b_med)
            except RunFailed as exc:
                print(f"breakdown run failed: {exc}", file=sys.stderr)
        ratio = median(ratios)
        print(f"finished; {load_note()}")
        if args.daemon:
            submitted = sum("submitted to the daemon" in a.log.read_text() for a, _ in results)
            print(f"runs submitted to the daemon: {submitted} of {len(results)}")
        print(result_line("overhead", [("median_ratio", ratio, "<=", TARGET_RATIO, ratio <= TARGET_RATIO)]))
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
