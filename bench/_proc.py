"""Process figures of a running process, straight from /proc (psutil is not installed).

`snapshot` takes RSS, threads, CPU and context switches at once; `watch` samples a
window; `smaps_top` says where the resident memory sits.
"""

from __future__ import annotations

import os
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
SNAPSHOT_HEADERS = ["when", "VmRSS_MB", "VmHWM_MB", "threads", "cpu_total_s", "vol_cs_Δ", "invol_cs_Δ"]


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


def rss_mb(pid: int) -> float:
    """VmRSS of the process in MB."""
    return status_kb(proc_status(pid), "VmRSS") / 1024


def snapshot(pid: int) -> dict[str, float]:
    """VmRSS/VmHWM (kB), threads, CPU seconds so far and context switches, read together."""
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


def snapshot_row(label: str, snap: dict[str, float], before: dict[str, float] | None = None) -> list[object]:
    """A row under SNAPSHOT_HEADERS; the context switches are counted since `before` when given."""
    switches: list[object] = ["", ""]
    if before is not None:
        switches = [int(snap["vcs"] - before["vcs"]), int(snap["ivcs"] - before["ivcs"])]
    return [label, snap["rss_kb"] / 1024, snap["hwm_kb"] / 1024, snap["threads"], snap["cpu_s"], *switches]


def watch(pid: int, window: float) -> tuple[dict[str, float], dict[str, float], int]:
    """Watches the process for `window` seconds: (snapshot at the start, at the end, highest
    VmRSS kB sampled each second)."""
    start = snapshot(pid)
    peak_rss = start["rss_kb"]
    end_at = time.monotonic() + window
    while (left := end_at - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        peak_rss = max(peak_rss, status_kb(proc_status(pid), "VmRSS"))
    return start, snapshot(pid), int(peak_rss)


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
