"""The README's jobs.yaml reference tables, rendered from the key table.

Each table sits between two markers in README.md:

    <!-- BEGIN generated: Job keys (lib/config/keys.py; `make docs`) -->
    | key | default | since | meaning |
    …
    <!-- END generated: Job keys -->

`make docs` (python -m lib.config.reference --write) rewrites what is between them;
tests/test_config_keys.py fails when README.md differs from what the table renders, so
the reference cannot drift from the parser.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from lib.config.keys import SECTIONS, Key, Section

# The tables README.md carries, in the order they appear there: every section of the table.
TABLES: tuple[Section, ...] = SECTIONS
_BLOCK = re.compile(
    r"<!-- BEGIN generated: (?P<title>[^(]+?) \([^)]*\) -->\n"
    r"(?P<body>.*?)"
    r"(?P<end><!-- END generated: (?P=title) -->)",
    re.DOTALL,
)


def shown_default(key: Key) -> str:
    """The default column: the value as a user would write it, or the table's wording."""
    if key.shown_default is not None:
        return key.shown_default
    if key.required:
        return "(required)"
    if key.default is None:
        return "—"
    return f"`{_inline_yaml(key.default)}`"


def _inline_yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value) if value else ("[]" if isinstance(value, list) else "{}")
    return str(value)


def table(section: Section) -> str:
    rows = ["| key | default | since | meaning |", "|---|---|---|---|"]
    for key in section.keys:
        doc = key.doc.replace("|", "\\|")
        rows.append(f"| `{key.name}` | {shown_default(key)} | {key.since} | {doc} |")
    return "\n".join(rows) + "\n"


def begin_marker(section: Section) -> str:
    return f"<!-- BEGIN generated: {section.title} (lib/config/keys.py; `make docs`) -->"


def update(readme: str) -> str:
    """`readme` with every generated table rendered afresh; raises if a table's markers are missing."""
    titles = {section.title: section for section in TABLES}
    found: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        title = match["title"]
        if title not in titles:
            raise ValueError(
                f"README.md: a generated block names {title!r}, which is no section of the key table"
            )
        found.add(title)
        return f"{begin_marker(titles[title])}\n{table(titles[title])}{match['end']}"

    result = _BLOCK.sub(replace, readme)
    missing = [title for title in titles if title not in found]
    if missing:
        raise ValueError(f"README.md: no generated block for {', '.join(missing)}: add its BEGIN/END markers")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the jobs.yaml reference tables into README.md.")
    parser.add_argument(
        "--write", action="store_true", help="rewrite README.md (default: say whether it is current)"
    )
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[2] / "README.md")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    rendered = update(text)
    if args.write:
        if rendered != text:
            args.readme.write_text(rendered, encoding="utf-8")
        return 0
    if rendered != text:
        print(f"{args.readme}: the jobs.yaml tables are out of date: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
