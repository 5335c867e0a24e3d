"""What the probe programs read about their own process.

Imports nothing: the probes count the modules a daemon loads, so this helper must
not add any (it is one module itself, named with `_` so it is not taken for a package).
"""


def vmrss_kb() -> int:
    """This process's VmRSS in kB, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
