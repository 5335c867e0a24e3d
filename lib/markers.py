"""The progress markers docker/run_commands.sh prints, parsed in one place.

The script prints lines such as `[run_commands] STEP deps: dbt deps` or
`[run_commands] GIT_SHA 1a2b…`; runners read the SHA and the last ERROR from them,
the console shows the current step. Pure and rich-free, so the daemon can use it.
"""

from __future__ import annotations

PREFIX = "[run_commands] "
KINDS = ("STEP", "GIT_SHA", "ERROR", "EXIT")


def parse_marker(line: str) -> tuple[str, str] | None:
    """(`STEP`|`GIT_SHA`|`ERROR`|`EXIT`, the rest of the line) for a marker line, else None."""
    if not line.startswith(PREFIX):
        return None
    kind, _, rest = line[len(PREFIX) :].rstrip("\r\n").partition(" ")
    return (kind, rest.strip()) if kind in KINDS else None
