"""bench/: every script answers --help, is run by run_all.sh, and embeds no program.

Benchmarks are not run here (they time things; see bench/README.md). What is checked is
their shape: a program a benchmark runs in a subprocess lives in its own file under
bench/programs/ and is run by path, never as a string handed to `python -c` or written
out as a script at run time.
"""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
SOURCES = sorted(p for p in BENCH.glob("*.py"))

# A line that reads as a statement of Python or of a shell script.
PROGRAM_LINE = re.compile(
    r"^\s*(import \w|from [\w.]+ import |def \w+\(|class \w+|raise |print\(|for \w+ in |while |#!/)"
    r"|^\s*(date|echo|printf|sleep|bash|exit|set|cd)\s|\$\{?\w+"
)


def embedded_programs(source: str) -> list[str]:
    """The string literals in `source` (docstrings aside) that hold a program of two or more lines,
    and the `-c` arguments that are not a single word."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            lines = [line for line in node.value.splitlines() if line.strip()]
            if len(lines) >= 2 and any(PROGRAM_LINE.search(line) for line in lines):
                found.append(f"line {node.lineno}: {lines[0][:60]!r}…")
        if isinstance(node, ast.List | ast.Tuple | ast.Call):
            items = node.args if isinstance(node, ast.Call) else node.elts
            for flag, value in itertools.pairwise(items):
                one_word = isinstance(value, ast.Constant) and re.fullmatch(r"\w+", str(value.value))
                if isinstance(flag, ast.Constant) and flag.value == "-c" and not one_word:
                    found.append(f"line {flag.lineno}: `-c` with a program")
    return found


def test_the_check_finds_an_embedded_program() -> None:
    source = 'PROBE = r"""\nimport sys\nprint(sys.argv)\n"""\nrun([python, "-c", PROBE])\n'
    assert len(embedded_programs(source)) == 2
    script = 'RUN = """date +%s.%N >"$OUT"\necho done\n"""\n'
    assert embedded_programs(script)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_bench_file_embeds_a_program(path: Path) -> None:
    assert embedded_programs(path.read_text(encoding="utf-8")) == [], (
        f"{path.name}: move the program to bench/programs/ and run it by path"
    )


def test_no_shell_file_in_bench_holds_a_heredoc() -> None:
    for path in BENCH.rglob("*.sh"):
        assert "<<" not in path.read_text(encoding="utf-8").replace("<<<", ""), path


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_bench_script_answers_help(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout[:200]
    assert "--python" in result.stdout and "--keep" in result.stdout


def test_run_all_runs_every_bench_script() -> None:
    run_all = (BENCH / "run_all.sh").read_text(encoding="utf-8")
    listed = re.search(r"^benches=\((.*)\)$", run_all, re.M)
    assert listed is not None
    names = {word for word in listed.group(1).replace('"', " ").split() if not word.startswith("-")}
    assert names == {path.stem for path in SCRIPTS}
