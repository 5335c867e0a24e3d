"""Fuzzing jobs.yaml: mutants of the repo's own file load or are refused, never crash or hang.

Hypothesis (derandomized: the same cases every run, no example database) mutates the
shipped jobs.yaml line by line: deletes and duplicates lines, swaps values for odd types,
huge numbers, control characters, anchors, aliases and tags, and shifts indentation.
Each mutant goes through `load_config` in process (many cases), and a handful through
the real `scheduler.py validate`: a Config or a ConfigError (exit 0 or 2), one line per
issue, no traceback, each case within hypothesis's deadline.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lib import yaml_limits
from lib.config import Config, load_config
from lib.errors import ConfigError
from tests.test_config_hostile import BILLION_LAUGHS

REPO = Path(__file__).resolve().parents[1]
# Absolute project paths, so the unmutated file is valid wherever the mutant is written.
BASE = (REPO / "jobs.yaml").read_text(encoding="utf-8").replace(": example\n", f": {REPO / 'example'}\n")
LINES = BASE.splitlines()

ODD_VALUES = [
    "",
    "~",
    "[]",
    "{}",
    "[1, [2, {a: b}]]",
    "yes",
    "no",
    "-1",
    "0",
    "0.0",
    "-0.0",
    "1e400",
    ".inf",
    ".nan",
    "9" * 40,
    "9" * 400,
    "1" * 5000,
    '"99999999999999 weeks"',
    '"10 fortnights"',
    '"\\0"',
    '"a\\nb"',
    '"\\x1b[31m"',
    '"\\u202e"',
    "&x [1, 2]",
    "*x",
    "!!binary aGk=",
    "!!python/object:os.system x",
    "!!int abc",
    "2026-13-45",
    "!!set {a}",
    "'''",
    '"unterminated',
    "{a: 1, a: 2}",
    "[*x, *x]",
    "|\n  block",
    "- item",
    "? complex",
    "@reserved",
    "`tick`",
    "%percent",
]
# A commented-out key line (`# aws:`, `#   region: eu-west-1`), not a line of prose.
_UNCOMMENT = re.compile(r"^(\s*)# ?(\s*[A-Za-z_]\w*:(?: |$))")
INSERTS = [
    "\t",
    "\x00",
    "\x7f",
    "\u2028",
    "\ufeff",
    ": ",
    "- ",
    "&a ",
    "*a",
    "<<: *a",
    "#",
    "'",
    '"',
    "{",
    "]",
]


def mutate(lines: list[str], operations: list[tuple[int, int, int]]) -> str:
    """`lines` after each (kind, index, choice) operation, as a file."""
    out = list(lines)
    for kind, index, choice in operations:
        if not out:
            out = [""]
        i = index % len(out)
        line = out[i]
        if kind == 0:
            del out[i]
        elif kind == 1:
            out.insert(i, line)
        elif kind == 2 and ":" in line:  # a value swapped for an odd one
            key = line.split(":", 1)[0]
            out[i] = f"{key}: {ODD_VALUES[choice % len(ODD_VALUES)]}"
        elif kind == 3:  # a character inserted anywhere in the line
            at = choice % (len(line) + 1)
            out[i] = line[:at] + INSERTS[choice % len(INSERTS)] + line[at:]
        elif kind == 4:
            out[i] = " " * (choice % 5) + line.lstrip(" ") if choice % 2 else "  " + line
        elif kind == 6:  # the commented-out aws:, docker: and ECS job sections come alive
            out = [_UNCOMMENT.sub(r"\1\2", item) if j >= i else item for j, item in enumerate(out)]
        else:
            out.insert(i, f"{'x' * (choice % 3)}anchor: &a {ODD_VALUES[choice % len(ODD_VALUES)]}")
    return "\n".join(out) + "\n"


OPERATIONS = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, len(LINES) * 2), st.integers(0, 10_000)),
    min_size=1,
    max_size=6,
)
WORK = Path(tempfile.mkdtemp(prefix="fuzz-jobs-"))


def assert_loads_or_is_refused(text: str) -> None:
    path = WORK / "jobs.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        assert isinstance(load_config(path), Config)
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert "\n" not in str(issue) and str(issue).startswith(str(path)), str(issue)


@settings(
    max_examples=2000,
    deadline=timedelta(seconds=2),  # the bound per case; a hang or an expanded alias bomb fails here
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(OPERATIONS)
@example([(5, 0, 0)])
def test_mutants_of_jobs_yaml_load_or_are_config_errors(operations: list[tuple[int, int, int]]) -> None:
    assert_loads_or_is_refused(mutate(LINES, operations))


@settings(max_examples=300, deadline=timedelta(seconds=2), derandomize=True, database=None)
@given(st.text(max_size=200), st.integers(0, len(BASE)))
@example("\nwhen: 2026-13-45\n", len(BASE))  # int()/datetime() errors PyYAML lets through
def test_arbitrary_text_spliced_into_jobs_yaml(noise: str, at: int) -> None:
    assert_loads_or_is_refused(BASE[:at] + noise + BASE[at:])


@settings(max_examples=200, deadline=timedelta(seconds=2), derandomize=True, database=None)
@given(st.binary(max_size=300), st.integers(0, len(BASE)))
@example(b"\xff", 100)
def test_arbitrary_bytes_spliced_into_jobs_yaml(noise: bytes, at: int) -> None:
    path = WORK / "jobs.yaml"
    data = BASE.encode()
    mutant = data[:at] + noise + data[at:]
    path.write_bytes(mutant)
    try:
        load_config(path)
    except ConfigError as exc:
        assert all("\n" not in str(issue) for issue in exc.issues)
        try:
            mutant.decode("utf-8")
        except UnicodeDecodeError:  # located by line and column, the one issue
            [issue] = exc.issues
            assert re.fullmatch(rf"{re.escape(str(path))}:\d+:\d+: not valid UTF-8 .*", str(issue)), str(
                issue
            )


@settings(max_examples=12, deadline=timedelta(seconds=30), derandomize=True, database=None)
@given(OPERATIONS)
@example([(0, 0, 0)]).via("a bomb, below")
def test_mutants_through_the_real_validate_exit_0_or_2_without_a_traceback(
    operations: list[tuple[int, int, int]],
) -> None:
    base = WORK / "base.yaml"
    base.write_text(BASE, encoding="utf-8")
    assert set(load_config(base).jobs) == {"example", "example_from_git"}  # mutants of a valid file
    text = mutate(LINES, operations)
    if operations == [(0, 0, 0)]:
        text = BILLION_LAUGHS + text
    path = WORK / "validate.yaml"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(path), "validate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard; the bound is the deadline above
    )
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr
    if done.returncode == 2:
        assert done.stderr.startswith("error: ") and all(
            line.startswith("error: ") for line in done.stderr.splitlines()
        ), done.stderr


@settings(max_examples=40, deadline=timedelta(seconds=1), derandomize=True, database=None)
@given(st.integers(2, 12), st.integers(2, 12))
def test_alias_bombs_of_any_shape_are_answered_within_a_second(levels: int, width: int) -> None:
    """Refused past the budget, read (and refused as unknown keys) below it; never expanded."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    path = WORK / "bomb.yaml"
    path.write_text("\n".join(lines) + "\njobs: {}\n", encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        sizes = [1 + width]  # l0: a list of `width` scalars
        for _ in range(1, levels):
            sizes.append(1 + width * sizes[-1])
        expanded = 1 + sum(1 + size for size in sizes) + 3  # the root, each key and list, `jobs: {}`
        refused = any("alias/size budget exceeded" in str(issue) for issue in exc.issues)
        assert refused == (expanded > yaml_limits.MAX_NODES), (levels, width, expanded, exc.issues)
