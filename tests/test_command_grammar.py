"""lib/command_grammar.py against the real docker/run_commands.sh: one grammar, two languages.

The bash side is the script's own code: `split_words` is cut out of the script with
sed and run by bash on the same lines, and `load_commands` is exercised by running
the whole script with DBT_COMMANDS set and no dbt on PATH (exit 10: the commands
were refused; 127: they were accepted and the script went on to look for dbt).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from lib.command_grammar import CommandSyntaxError, check_command, parse_commands, split_words

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "docker" / "run_commands.sh"

# Reads NUL-terminated lines; for each prints OK, the word count and the words, or ERR
# and PARSE_ERROR, every field NUL-terminated. `set -uo pipefail` as in the script.
HARNESS = r"""
set -uo pipefail
source <(sed -n '/^split_words()/,/^}/p' "$1")
declare -F split_words >/dev/null || { echo "split_words not found in $1" >&2; exit 3; }
while IFS= read -r -d '' line; do
  if split_words "$line"; then
    printf '%s\0' OK "${#WORDS[@]}" ${WORDS[@]+"${WORDS[@]}"}
  else
    printf '%s\0' ERR "$PARSE_ERROR"
  fi
done
"""

Answer = tuple[str, list[str] | str]  # ("OK", words) or ("ERR", message)


def bash_split(lines: list[str]) -> list[Answer]:
    """What the script's own split_words says about each line (one bash process for all)."""
    done = subprocess.run(
        ["bash", "-c", HARNESS, "harness", str(SCRIPT)],
        input="".join(f"{line}\0" for line in lines).encode(),
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"},
    )
    fields = done.stdout.decode().split("\0")
    answers: list[Answer] = []
    i = 0
    while len(answers) < len(lines):
        if fields[i] == "OK":
            count = int(fields[i + 1])
            answers.append(("OK", fields[i + 2 : i + 2 + count]))
            i += 2 + count
        else:
            answers.append(("ERR", fields[i + 1]))
            i += 2
    return answers


def python_split(line: str) -> Answer:
    try:
        return ("OK", split_words(line))
    except CommandSyntaxError as exc:
        return ("ERR", str(exc))


def assert_same(lines: list[str]) -> None:
    for line, expected in zip(lines, bash_split(lines), strict=True):
        assert python_split(line) == expected, f"line {line!r}"


CORPUS = [
    "dbt build",
    "dbt",
    "",
    "   ",
    "dbt  build\t--select   tag:nightly",
    "dbt build --select 'tag:a tag:b'",
    'dbt build --vars "{key: value}"',
    "dbt run --vars '{\"a\": 1}'",
    "dbt build; rm -rf /",
    "dbt build && dbt test",
    "dbt build || true",
    "dbt ls | head",
    "dbt build > out.txt",
    "dbt build < in",
    "dbt build &",
    "dbt $(whoami)",
    "dbt `whoami`",
    "dbt build --target $TARGET",
    'dbt build --target "$TARGET"',
    'dbt build --target "`x`"',
    "dbt build --target '$TARGET'",
    "dbt build --select (a)",
    "dbt build --select '(a)'",
    "dbt 'unterminated",
    'dbt "unterminated',
    "dbt build \\",
    "dbt build \\;",
    "dbt build a\\ b",
    'dbt "a\\"b" "c\\\\d" "e\\$f" "g\\`h" "i\\nj"',
    "dbt '' \"\" x",
    "dbt build # a comment; with | operators",
    "dbt build#not-a-comment",
    "dbt 'x'#still-the-word",
    "# a comment line",
    "dbt build --select state:modified+ --defer --state ./prod",
    "dbt build --select tag:a,tag:b --exclude 'path:models/x y'",
    "dbt run-operation m --args '{a: [1, 2]}'",
    "dbt build --select @orders 1+orders+2 *",
    "dbt build ~ {a,b} *.sql",
    "dbt build --select é_ü",
    "dbt\tbuild",
    "dbt build\r",
    "dbt build\v",
    "dbtx build",
    "'dbt' build",
    "d'b't build",
    "DBT build",
    "ls -la",
]


def test_split_words_agrees_with_the_script_on_the_corpus() -> None:
    assert_same(CORPUS)


def test_split_words_agrees_with_the_script_on_random_lines() -> None:
    """Seeded, so a disagreement reproduces; the alphabet is every character the grammar treats apart."""
    alphabet = [*" \t'\"\\#$`;&|<>()ab-=:é{}*~\v\f", "dbt ", "dbt build ", '"', "'"]
    rng = random.Random(6)
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(3000)]
    assert_same(lines)


def test_split_words_agrees_with_the_script_on_generated_lines() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = hypothesis.strategies

    # No NUL or newline (the script gets one line at a time; bash strings hold no NUL),
    # and characters bash's locale classifies like Python's: the printable ASCII range,
    # the two separators and a few letters beyond ASCII.
    chars = strategies.sampled_from(list(" \t'\"\\#$`;&|<>()") + list("abdt-=:é{}*~\v"))
    line = strategies.one_of(
        strategies.text(chars, max_size=20),
        strategies.text(chars, max_size=20).map(lambda rest: f"dbt {rest}"),
        strategies.text(strategies.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    )

    @hypothesis.settings(max_examples=60, deadline=None, database=None)
    @hypothesis.given(strategies.lists(line, min_size=1, max_size=40))
    def agree(lines: list[str]) -> None:
        assert_same(lines)

    agree()


def run_script(commands: str, tmp_path: Path) -> tuple[int, str]:
    """The real script's verdict on DBT_COMMANDS: exit 10 refused, 127 accepted.

    PATH holds only what the script uses before it looks for dbt (dirname), so no dbt is
    found even on a machine that has one installed.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "dirname").exists():
        (bin_dir / "dirname").symlink_to(shutil.which("dirname") or "/usr/bin/dirname")
    done = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT)],
        env={"PATH": str(bin_dir), "DBT_COMMANDS": commands, "LC_ALL": "C.UTF-8"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode in (10, 127), done.stdout + done.stderr
    return done.returncode, done.stdout


@pytest.mark.parametrize(
    "commands",
    [
        "dbt build",
        "dbt seed\ndbt build --select 'tag:a b'",
        "# only a comment",
        "\n  \n",
        "dbt build\n# comment\n\n   dbt test   \r\n",
        "dbt build; rm -rf /",
        "dbt seed\ndbt build && dbt test",
        "dbt seed\nls",
        "dbt | x\ndbt seed",
        "dbt 'open",
        "  # indented comment\ndbt ls",
        "dbt\tbuild\t",
    ],
)
def test_parse_commands_agrees_with_the_whole_script(commands: str, tmp_path: Path) -> None:
    code, output = run_script(commands, tmp_path)
    try:
        parse_commands(commands)
    except CommandSyntaxError as exc:
        assert code == 10, f"the script ran {commands!r}, Python refused it: {exc}"
        return
    assert code == 127, f"the script refused {commands!r}, Python accepted it:\n{output}"
    assert "dbt is not on PATH" in output  # it got past load_commands, to the dbt check


def test_check_command_returns_the_line_the_script_runs() -> None:
    assert check_command("  dbt build --select x  ") == "dbt build --select x"
    assert check_command("dbt build # nightly") == "dbt build # nightly"
    for bad, reason in (
        ("dbt build; rm -rf /", "shell syntax ';'"),
        ("dbt build && dbt test", "shell syntax '&'"),
        ("dbt ls | wc -l", "shell syntax '|'"),
        ("ls -la", "is not a dbt command"),
        ("dbt build\ndbt test", "must fit on one line"),
        ("   ", "is empty"),
        ("# dbt build", "is a comment"),
        ('dbt build --target "$T"', "inside double quotes"),
    ):
        with pytest.raises(CommandSyntaxError, match=reason.replace("|", r"\|").replace("$", r"\$")):
            check_command(bad)
