"""The progress markers docker/run_commands.sh prints, parsed in one place.

The script prints lines such as `[run_commands] STEP deps: dbt deps` or
`[run_commands] GIT_SHA 1a2b…`; runners read the SHA and the last ERROR from them,
the console shows the current step. Pure and rich-free, so the daemon can use it.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MARKER = re.compile(r"^\s*\[run_commands\]\s+(STEP|GIT_SHA|ERROR|EXIT)(?:[ \t]+(.*?))?\s*$")


def parse_marker(line: str) -> tuple[str, str] | None:
    """The (kind, text) of a run_commands.sh marker line, else None.

    `[run_commands] STEP deps: dbt deps` → ("STEP", "deps: dbt deps");
    `[run_commands] GIT_SHA 1a2b3c` → ("GIT_SHA", "1a2b3c"); `[run_commands] EXIT 1`
    → ("EXIT", "1"). Colour codes and surrounding whitespace are ignored; the text
    is "" when the marker has none.
    """
    match = _MARKER.match(_ANSI.sub("", line))
    if match is None:
        return None
    return match.group(1), match.group(2) or ""
