"""Helpers shared by the benchmarks: paths, statistics, /proc readers, the RESULT line.

Stdlib only, so a benchmark runs with the scheduler's venv and nothing more
(psutil is not installed: process figures come straight from /proc).
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEDULER = REPO / "scheduler.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def default_python() -> str:
    """The repo's venv interpreter (it has dbt, PyYAML, rich…), else the one running us."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


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


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict of raw strings ("VmRSS" → "25780 kB")."""
    return proc_status_path(f"/proc/{pid}/status")


def status_kb(status: dict[str, str], key: str) -> int:
    """A `NNN kB` field of /proc/PID/status in kB (0 when absent)."""
    value = status.get(key, "0 kB").split()
    return int(value[0]) if value else 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        text = handle.read()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    rest = text[text.rindex(")") + 2 :].split()
    utime, stime = int(rest[11]), int(rest[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches summed over every thread of the process."""
    voluntary = involuntary = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            status = proc_status_path(f"/proc/{pid}/task/{task}/status")
        except FileNotFoundError:  # the thread ended between listdir and open
            continue
        voluntary += int(status.get("voluntary_ctxt_switches", "0"))
        involuntary += int(status.get("nonvoluntary_ctxt_switches", "0"))
    return voluntary, involuntary


def proc_status_path(path: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(path, encoding="ascii", errors="replace") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


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
