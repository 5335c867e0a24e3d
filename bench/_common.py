"""The benchmarks' harness: paths, arguments, environments, programs, statistics, the RESULT line.

Stdlib only, so a benchmark runs with the scheduler's venv and nothing more. Its
siblings: `_proc.py` (process figures from /proc), `_daemon.py` (the real daemon as a
subprocess), `_moto.py` (a moto server), `_idle.py` (what both idle benchmarks share).
Programs a benchmark runs in a subprocess live in `bench/programs/`, run by path.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
SCHEDULER = REPO / "scheduler.py"
PROGRAMS = Path(__file__).resolve().parent / "programs"
T = TypeVar("T")


def default_python() -> str:
    """The repo's venv interpreter (it has dbt, PyYAML, rich…), else the one running us."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose --help is the script's docstring, with the options every bench has:
    --python (the interpreter for the scheduler, dbt and programs) and --keep (keep the temp dir)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--python", default=default_python(), help="interpreter for the scheduler (default: .venv)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print its path")
    return parser


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed arguments, --python made absolute: the daemon runs in the temp dir, and a venv's
    interpreter must keep its symlink path (resolving it would leave the venv)."""
    args = parser.parse_args()
    if os.sep in args.python:
        args.python = os.path.abspath(args.python)
    return args


def clean_env(*prefixes: str, **extra: str) -> dict[str, str]:
    """The caller's environment without the variables that start with `prefixes`, plus `extra`:
    a benchmark must not inherit the caller's scheduler or dbt settings."""
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith(prefixes)} if prefixes else dict(os.environ)
    )
    env.update(extra)
    return env


def stub_project(folder: Path, name: str = "bench") -> Path:
    """A minimal dbt project folder (dbt_project.yml only): enough for config validation and for
    runs that a stand-in script replaces."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dbt_project.yml").write_text(f"name: {name}\nprofile: {name}\n", encoding="utf-8")
    return folder


def run_program(
    python: str,
    tag: str,
    program: str,
    *args: str,
    env: dict[str, str] | None = None,
    flags: Sequence[str] = (),
) -> tuple[str, str]:
    """Runs `bench/programs/<program>` with `python`; (what it printed after `TAG `, its stderr).
    Exits with the program's stderr tail when it printed no such line."""
    command = [python, *flags, str(PROGRAMS / program), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    line = next((x for x in result.stdout.splitlines() if x.startswith(tag + " ")), None)
    if line is None:
        raise SystemExit(
            f"{program} printed no {tag} line (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    return line[len(tag) + 1 :], result.stderr


def interleave(
    pairs: int, first: Callable[[int], T], second: Callable[[int], T]
) -> Iterator[tuple[int, T, T]]:
    """`pairs` runs of A then B, alternating (A B A B …): (pair number from 1, A's result, B's).
    A slow minute on a shared machine hits both sides of a pair, so per-pair ratios cancel drift."""
    for i in range(1, pairs + 1):
        a = first(i)
        yield i, a, second(i)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def load_note() -> str:
    """The 1-minute load average, with a warning when other work competes for the CPUs."""
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus:
        return f"load average {load:.2f} on {cpus} CPUs: BUSY, expect noisy figures (re-run when quiet)"
    return f"load average {load:.2f} on {cpus} CPUs"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain left/right-aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def result_line(name: str, checks: Sequence[tuple[str, float, str, float, bool]]) -> str:
    """`RESULT name key=value target<=T … PASS|FAIL`; each check is (key, value, op, target, ok)."""
    parts = [f"RESULT {name}"]
    for key, value, op, target, _ok in checks:
        parts.append(f"{key}={_num(value)} target{op}{_num(target)}")
    parts.append("PASS" if all(check[4] for check in checks) else "FAIL")
    return " ".join(parts)


def gated(line: str, sane: bool, why: str, name: str) -> str:
    """The RESULT line, turned into FAIL when the measurement itself went wrong (`why` goes to stderr):
    a figure taken from a run that misbehaved must not read as a pass."""
    if sane:
        return line
    print(f"{name}: unexpected: {why}", file=sys.stderr)
    return line.replace(" PASS", " FAIL")


def _num(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value == int(value) and abs(value) >= 10:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


@contextmanager
def workspace(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A fresh temp dir for one benchmark, removed afterwards unless `keep` (then its path is printed)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
