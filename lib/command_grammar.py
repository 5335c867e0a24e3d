"""The grammar of a `commands:` line: the one docker/run_commands.sh runs, in Python.

`validate` must accept exactly what the script runs, so this module is a port of
the script's `split_words` and of the per-line rules of its `load_commands`, kept
in step by tests/test_command_grammar.py, which feeds the same lines (a corpus and
generated ones) to the real bash functions and compares accept/reject and words.

A line is split into words the way a shell quotes ('…', "…", a backslash escapes
the next character) but nothing is expanded or executed: no $VAR, no $(…), no
globs, braces or ~. Shell operators (`;`, `&`, `|`, `<`, `>`, `(`, `)`, `$`,
backticks) are refused outside quotes rather than silently handed to dbt as
words, and `$` or a backtick inside double quotes is refused too, since a reader
expects it to expand. A `#` that starts a word starts a comment.
"""

from __future__ import annotations

# What bash's `[[:space:]]` trims around a line in `load_commands` (C and UTF-8
# locales agree on these six; str.strip() would take more, e.g. U+00A0).
LINE_BLANKS = " \t\n\v\f\r"
_OPERATORS = frozenset("$`;&|<>()")
_ESCAPED_IN_DOUBLE_QUOTES = frozenset('"\\$`')


class CommandSyntaxError(ValueError):
    """A line the script would refuse; the message is the script's PARSE_ERROR."""


def split_words(line: str) -> list[str]:
    """The words of one line, as run_commands.sh's `split_words` makes them.

    Raises CommandSyntaxError with the script's own wording on shell syntax,
    `$`/backtick inside double quotes, an unterminated quote or a trailing
    backslash.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                word.append(c)
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c == "\\":
                following = line[i + 1 : i + 2]
                if following in _ESCAPED_IN_DOUBLE_QUOTES:
                    word.append(following)
                    i += 1
                else:
                    word.append(c)
            elif c in "$`":
                raise CommandSyntaxError(
                    f"'{c}' inside double quotes: nothing is expanded here; use single quotes for a "
                    f"literal '{c}', or env_var() in dbt to read the environment"
                )
            else:
                word.append(c)
        elif c in " \t":
            if in_word:
                words.append("".join(word))
                word = []
                in_word = False
        elif c in "'\"":
            quote = c
            in_word = True
        elif c == "\\":
            if i + 1 >= n:
                raise CommandSyntaxError("trailing backslash")
            word.append(line[i + 1])
            i += 1
            in_word = True
        elif c == "#" and not in_word:
            break  # a comment, as in a shell, when it starts a word
        elif c in _OPERATORS:
            raise CommandSyntaxError(
                f"shell syntax '{c}' is not supported (one dbt command per line, nothing expanded): "
                "quote it if it is part of an argument"
            )
        else:
            word.append(c)
            in_word = True
        i += 1
    if quote:
        raise CommandSyntaxError(f"unterminated {quote} quote")
    if in_word:
        words.append("".join(word))
    return words


def trim_line(line: str) -> str:
    """A line as `load_commands` reads it: one trailing CR dropped, blanks trimmed."""
    if line.endswith("\r"):
        line = line[:-1]
    return line.strip(LINE_BLANKS)


def is_skipped(line: str) -> bool:
    """Whether `load_commands` skips this (trimmed) line: blank, or a comment line."""
    return not line or line.startswith("#")


def check_command(command: str) -> str:
    """The one dbt command a `commands:` entry is, as the script will run it (trimmed).

    Stricter than the script on one point only, so indices stay aligned: an entry
    must be exactly one command line, since the script would drop a blank or
    comment entry and split one holding a newline, and `allow_failure` counts
    commands. Raises CommandSyntaxError with a message that says what to fix.
    """
    if "\n" in command:
        raise CommandSyntaxError("must fit on one line: write each command as its own list entry")
    line = trim_line(command)
    if not line:
        raise CommandSyntaxError("is empty: write a dbt command such as 'dbt build', or remove the entry")
    if line.startswith("#"):
        raise CommandSyntaxError(f"{line!r} is a comment, not a command: remove the entry")
    try:
        words = split_words(line)
    except CommandSyntaxError as exc:
        raise CommandSyntaxError(f"{line!r} cannot be parsed ({exc})") from None
    if not words or words[0] != "dbt":
        raise CommandSyntaxError(
            f"{line!r} is not a dbt command: each entry must be one dbt command, "
            "e.g. 'dbt build --select tag:nightly'"
        )
    return line


def parse_commands(text: str) -> list[list[str]]:
    """The words of each command in a DBT_COMMANDS value, as `load_commands` accepts them.

    Blank and comment lines are skipped; raises CommandSyntaxError naming the
    1-based line for a line the script would refuse.
    """
    commands: list[list[str]] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = trim_line(raw)
        if is_skipped(line):
            continue
        try:
            words = split_words(line)
        except CommandSyntaxError as exc:
            raise CommandSyntaxError(f"line {lineno} cannot be parsed ({exc}): {line}") from None
        if not words or words[0] != "dbt":
            raise CommandSyntaxError(f"line {lineno} does not start with 'dbt': {line}")
        commands.append(words)
    if not commands:
        raise CommandSyntaxError("no command (only blank or comment lines)")
    return commands
