"""The checks a jobs.yaml value goes through, each turning what YAML read into what the
scheduler uses.

A check is `check(value, field) -> parsed value`: on a bad value it adds one located
issue through `field.bad(message)` and returns None (the parser raises once it has
collected every issue, so what a failed check returns is never used). The key table
(lib/config/keys.py) names the check of each key; cross-key rules (schedule *or*
every, project_dir *or* git, what a runner needs) live in lib/config/parser.py.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lib.command_grammar import CommandSyntaxError, check_command
from lib.durations import parse_duration
from lib.errors import ConfigIssue, quoted
from lib.models import GitSource, Retention, Trigger
from lib.secrets import url_credential

# Matched with fullmatch: `$` also matches before a trailing newline, and a job name
# becomes a folder name and a lock file.
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# C0 controls and DEL: no path, name, image or command has a use for them, and a NUL
# makes every system call that meets it raise ("embedded null byte").
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUL_IN_PATH = "contains a NUL byte, which no path can hold: remove it"


class Issues:
    """Collects problems with their line numbers, each once.

    A bad value in `defaults:` is met once per job that inherits it, at the same
    path with the same message: it is one problem with one fix, so one issue.
    """

    def __init__(self, source: str | None, lines: Mapping[str, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[ConfigIssue] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, path: str, message: str) -> None:
        if (path, message) in self._seen:
            return
        self._seen.add((path, message))
        line = self.lines.get(path)
        probe = path
        while line is None and "." in probe:  # fall back to the nearest enclosing key
            probe = probe.rsplit(".", 1)[0]
            line = self.lines.get(probe)
        self.items.append(ConfigIssue(path, message, line=line, file=self.source))


class Memo:
    """Answers that many jobs share, worked out once per `parse_config` call.

    Ten thousand jobs mostly repeat a few dozen values: one project_dir, a handful of
    zones, durations, commands and schedules. Checking each distinct value once
    (`shlex.split` ~20 µs, path resolution and `is_file()` 10-45 µs, `parse_duration`,
    `ZoneInfo`, trigger parsing, env names) took `parse_config` on the bench file from
    ~1.2 s to ~0.4 s. The memo lives for one call only, so a reload sees files that
    appeared or vanished since. A failure is kept as its message (a `str`) and reported
    again for every job that repeats the value, each at its own path.
    """

    __slots__ = (
        "base_dir",
        "checked",
        "commands",
        "durations",
        "env_names",
        "environ",
        "files",
        "paths",
        "secret_values",
        "triggers",
        "zones",
    )

    def __init__(self, base_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.base_dir = base_dir
        # The scheduler's environment, for `${NAME}` in notification settings; the values
        # brought in from it, to be masked.
        self.environ: Mapping[str, str] = environ if environ is not None else {}
        self.secret_values: set[str] = set()
        self.paths: dict[str, Path] = {}
        self.files: dict[tuple[Path, str], bool] = {}
        self.zones: dict[str, ZoneInfo | str] = {}
        self.triggers: dict[tuple[str, str, ZoneInfo], Trigger | str] = {}
        self.durations: dict[tuple[type, Any], float | str] = {}
        self.commands: dict[str, tuple[str | None, str]] = {}  # (command, "") or (None, message)
        self.env_names: set[str] = set()  # names that matched ENV_NAME
        # (id of the Key, value's type, value) → what its check returned, for values that
        # passed: see parser.read_section.
        self.checked: dict[tuple[int, type, Any], Any] = {}

    def path(self, value: str) -> Path:
        path = self.paths.get(value)
        if path is None:
            path = self.paths[value] = resolve_path(value, self.base_dir)
        return path

    def is_file(self, directory: Path, name: str = "") -> bool:
        """Whether `directory / name` (or `directory` itself when `name` is empty) is a file."""
        key = (directory, name)
        found = self.files.get(key)
        if found is None:
            found = self.files[key] = (directory / name if name else directory).is_file()
        return found


class Field:
    """Where a value is being checked: its dotted path, the issue list, the call's memo,
    and the `retention:` a job's own one is read over.

    A plain slotted class rather than a frozen dataclass: the parser makes one per key
    checked (140,000 for the 10,000-job bench file), and a frozen dataclass's __init__
    costs four times as much.
    """

    __slots__ = ("inherited", "issues", "memo", "path")

    def __init__(self, path: str, issues: Issues, memo: Memo, inherited: Retention | None = None) -> None:
        self.path = path
        self.issues = issues
        self.memo = memo
        self.inherited = inherited if inherited is not None else Retention()

    def bad(self, message: str) -> None:
        self.issues.add(self.path, message)

    def at(self, key: str) -> Field:
        """The field of `key` inside this mapping."""
        return Field(f"{self.path}.{key}" if self.path else key, self.issues, self.memo, self.inherited)


Check = Callable[[Any, Field], Any]


def shown(value: Any) -> str:
    return quoted(value, 60)


def did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f": did you mean '{close[0]}'?" if close else ""


def check_unknown(mapping: dict, known: tuple[str, ...], where: str, issues: Issues) -> None:
    if mapping.keys() <= _key_set(known):  # the usual case, in one set comparison
        return
    for key in mapping:
        if key not in known:
            path = f"{where}.{key}" if where else str(key)
            hint = did_you_mean(str(key), known) or f" (known keys: {', '.join(known)})"
            issues.add(path, f"unknown key{hint}")


@lru_cache(maxsize=32)
def _key_set(known: tuple[str, ...]) -> frozenset[str]:
    return frozenset(known)


def resolve_path(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def read_section(
    section: Any,
    written: Mapping[str, Any],
    field_of: Callable[[str], Field],
    memo: Memo,
) -> dict[str, Any]:
    """Each key of `section` with a check, checked: the written value, else the default.

    `written` holds the keys as merged (null already dropped where it means the
    default); `field_of(name)` says where a key's issues go. Keys without a check are
    left to the caller's cross-key rules.

    A check's answer depends only on the value and the parse call (its memo, base_dir,
    the top-level retention), so a value that passed is not checked again: ten
    thousand jobs repeat a few dozen zones, runners, targets and durations. That took
    `parse_config` on the bench file from 0.69 s to 0.3 s. Failures are checked every
    time: each is reported at its own path.
    """
    values: dict[str, Any] = {}
    checked = memo.checked
    for key in section.keys:
        check = key.check
        if check is None:
            continue
        value = written.get(key.name)
        if value is None:
            value = key.default
            if value is None:
                values[key.name] = None
                continue
        try:
            cache_key: tuple[int, type, Any] | None = (id(key), value.__class__, value)
            found = checked.get(cache_key, _ABSENT)
        except TypeError:  # a mapping or list: checked each time
            cache_key, found = None, _ABSENT
        if found is not _ABSENT:
            values[key.name] = found
            continue
        field = field_of(key.name)
        before = len(field.issues.items)
        result = values[key.name] = check(value, field)
        if cache_key is not None and len(field.issues.items) == before:
            checked[cache_key] = result
    return values


_ABSENT = object()


# --------------------------------------------------------------------------- scalar checks


def path(value: Any, field: Field) -> Path | None:
    """A file or folder path; a relative one resolves against jobs.yaml's folder."""
    if not isinstance(value, str) or not value:
        return field.bad(f"must be a path (string), got {shown(value)}")
    if "\0" in value:
        return field.bad(_NUL_IN_PATH)
    return field.memo.path(value)


def text(value: Any, field: Field) -> str | None:
    """A non-empty string without control characters (a target, an image name)."""
    if not isinstance(value, str) or not value:
        return field.bad(f"must be a non-empty string, got {shown(value)}")
    if CONTROL.search(value):
        return field.bad(f"contains a control character (newline, tab, NUL…): {shown(value)}")
    return value


def printable(value: Any, field: Field) -> str | None:
    """A non-empty string of printable characters (AWS names, ARNs, keys)."""
    if not isinstance(value, str) or not value or CONTROL.search(value):
        return field.bad(f"must be a non-empty string of printable characters, got {shown(value)}")
    return value


def line_of_text(value: Any, field: Field) -> str | None:
    """Free text for people; numbers are read as their text."""
    if not isinstance(value, str | int | float):
        return field.bad(f"must be a line of text, got {value!r}")
    return str(value)


def flag(value: Any, field: Field) -> bool | None:
    if not isinstance(value, bool):
        return field.bad(f"must be true or false, got {value!r}")
    return value


def choice(options: tuple[str, ...], message: str = "") -> Check:
    """One of `options`; `message` ({value!r} and {options} filled in) replaces the usual wording."""

    def check(value: Any, field: Field) -> str | None:
        if value not in options:
            template = message or "{value!r} is not allowed: use one of {options}"
            return field.bad(template.format(value=value, options=", ".join(options)))
        return str(value)

    return check


def whole(minimum: int, maximum: int, message: str = "") -> Check:
    """A whole number from `minimum` to `maximum` (not a bool: `yes` is not 1)."""

    def check(value: Any, field: Field) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            template = message or "must be a whole number from {minimum} to {maximum}, got {value}"
            return field.bad(template.format(minimum=minimum, maximum=maximum, value=shown(value)))
        return value

    return check


def string_list(message: str) -> Check:
    def check(value: Any, field: Field) -> tuple[str, ...] | None:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return field.bad(message)
        return tuple(value)

    return check


def duration(value: Any, field: Field, allow_zero: bool = False) -> float | None:
    """Seconds from "90s", "15m", "1h30m" or a number of seconds (lib/durations.py)."""
    if allow_zero and value in (0, "0"):
        return 0.0
    if isinstance(value, bool):
        return field.bad(f"must be a duration such as 90s, 15m or 2h, got {value!r}")
    # Keyed by type too: 1 and "1" print differently in messages. Floats are not cached:
    # -0.0 == 0.0 as dict keys, yet their messages differ.
    memo = field.memo.durations
    cache_key = (value.__class__, value) if isinstance(value, str | int) else None
    seconds = memo.get(cache_key) if cache_key is not None else None
    if seconds is None:
        try:
            seconds = parse_duration(value)
        except (ValueError, TypeError) as exc:
            seconds = str(exc)
        if cache_key is not None:
            memo[cache_key] = seconds
    if isinstance(seconds, str):
        return field.bad(seconds)
    return seconds


def duration_or_zero(value: Any, field: Field) -> float | None:
    """A duration, or 0 for "none at all" (a shutdown grace, a retry backoff)."""
    return duration(value, field, allow_zero=True)


def timezone(value: Any, field: Field) -> ZoneInfo | None:
    if not isinstance(value, str) or not value:
        return field.bad(f"must be an IANA time zone name such as 'Europe/Paris', got {value!r}")
    zones = field.memo.zones
    zone = zones.get(value)
    if zone is None:
        try:
            zone = ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            zone = f"unknown time zone {value!r}: use an IANA name such as 'UTC' or 'America/New_York'"
        zones[value] = zone
    if isinstance(zone, str):
        return field.bad(zone)
    return zone


def schedule_text(value: Any, field: Field) -> str | None:
    """A cron expression or `every` phrase as text; the trigger is built with the zone
    (parser.py), since one needs the other."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return field.bad(f"must be a string, got {value!r}")
    return str(value)


# --------------------------------------------------------------------------- structured checks


def env(value: Any, field: Field) -> dict[str, str] | None:
    """NAME: value pairs; numbers and booleans become their text (`true`/`false`)."""
    if not isinstance(value, dict):
        return field.bad("must be a mapping of NAME: value")
    known = field.memo.env_names
    result: dict[str, str] = {}
    for name, item in value.items():
        if item.__class__ is str and name in known:  # the usual case, without the regex
            result[name] = item
            continue
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            field.at(str(name)).bad("is not a valid environment variable name")
            continue
        if isinstance(item, dict | list) or item is None:
            field.at(name).bad(f"must be a string or number, got {shown(item)}")
            continue
        if isinstance(item, str) and "\0" in item:  # the OS cannot pass it: execve takes C strings
            field.at(name).bad("contains a NUL byte, which no environment variable can hold")
            continue
        result[name] = ("true" if item else "false") if isinstance(item, bool) else str(item)
        known.add(name)
    return result


COMMAND_KEYS = ("run", "allow_failure")


def commands(value: Any, field: Field) -> tuple[tuple[str, ...], frozenset[int]] | None:
    """The command lines and the indices of those allowed to fail.

    An entry is a string, or a mapping `{run: "dbt …", allow_failure: true}`. Each
    line must be one that docker/run_commands.sh runs (lib/command_grammar.py), so
    `dbt build; rm -rf /` is refused here, not when the run starts.
    """
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return field.bad(f"must be a non-empty list of dbt commands, e.g. ['dbt build'], got {value!r}")
    issues, memo = field.issues, field.memo
    lines: list[str] = []
    allowed: set[int] = set()
    for i, entry in enumerate(value):
        where = f"{field.path}[{i}]"
        command = entry
        if isinstance(entry, dict):
            check_unknown(entry, COMMAND_KEYS, where, issues)
            command = entry.get("run")
            if command is None:
                issues.add(where, "missing `run`: the command, e.g. {run: 'dbt build', allow_failure: true}")
                continue
            allow = entry.get("allow_failure", False)
            if not isinstance(allow, bool):
                issues.add(f"{where}.allow_failure", f"must be true or false, got {allow!r}")
            elif allow:
                allowed.add(i)
            where = f"{where}.run"
        if not isinstance(command, str):
            issues.add(where, f"must be a dbt command (string) or {{run: …}}, got {shown(command)}")
            continue
        if "\0" in command:
            issues.add(where, "contains a NUL byte: no process can take it as an argument")
            continue
        checked = memo.commands.get(command)
        if checked is None:
            try:
                checked = memo.commands[command] = (check_command(command), "")
            except CommandSyntaxError as exc:
                checked = memo.commands[command] = (None, str(exc))
        if checked[0] is None:
            issues.add(where, checked[1])
            continue
        lines.append(checked[0])
    return tuple(lines), frozenset(allowed)


RETENTION_KEYS = ("keep_days", "keep_failed_work")
MAX_KEEP_DAYS = 36_500  # a century
MAX_COUNT = 2**31 - 1  # ECS cpu/memory, log retention days, kept failed runs: an INT32 field


def retention(value: Any, field: Field) -> Retention:
    """`retention:` read over `field.inherited` key by key; null inside it means "no limit"."""
    if not isinstance(value, dict):
        field.bad(f"must be a mapping such as {{keep_days: 90, keep_failed_work: 5}}, got {value!r}")
        return field.inherited
    check_unknown(value, RETENTION_KEYS, field.path, field.issues)
    settings: dict[str, int | None] = {}
    for key, minimum, maximum, meaning in (
        ("keep_days", 1, MAX_KEEP_DAYS, "days, or null to keep runs forever"),
        ("keep_failed_work", 0, MAX_COUNT, "runs, or null to keep every failed run's work/"),
    ):
        if key not in value:
            continue
        number = value[key]
        is_whole = isinstance(number, int) and not isinstance(number, bool)
        if number is not None and (not is_whole or not minimum <= number <= maximum):
            field.at(key).bad(
                f"must be a whole number ≥ {minimum} of {meaning} (at most {maximum}), got {shown(number)}"
            )
            continue
        settings[key] = number
    return replace(field.inherited, **settings)


GIT_KEYS = ("url", "ref", "subdir")


def git(value: Any, field: Field) -> GitSource | None:
    """`{url, ref, subdir}`, or a string read as the url."""
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict):
        return field.bad("must be a mapping: {url: …, ref: main, subdir: …}")
    check_unknown(value, GIT_KEYS, field.path, field.issues)
    url = value.get("url")
    if not isinstance(url, str) or not url:
        return field.at("url").bad("missing: the repository URL (https://…, git@…, or file:///…)")
    for rule in GIT_URL_CHECKS:
        problem = rule(url)
        if problem is not None:
            return field.at("url").bad(problem)
    ref, subdir = value.get("ref"), value.get("subdir")
    for key, item in (("ref", ref), ("subdir", subdir)):
        if item is not None and (not isinstance(item, str | int) or isinstance(item, bool)):
            field.at(key).bad(f"must be a string, got {item!r}")
    return GitSource(
        url=url,
        ref=str(ref) if ref is not None else None,
        subdir=str(subdir) if subdir is not None else None,
    )


# Schemes git fetches over that a scheduled job can use (`git clone` also takes ext::,
# which runs a command, and fd::, neither of which belongs in a config file).
GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCP_LIKE = re.compile(r"(?:[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/:].*|/.+)")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>[^/]*)(?P<path>/.*)?")


def git_url_shape(url: str) -> str | None:
    """Why `url` is not a repository URL git can fetch, or None.

    Accepted: `https|http|ssh|git://host/path` (host and path non-empty), `file:///path`,
    and scp-like `[user@]host:path` (git@github.com:org/repo.git). No whitespace or
    control characters anywhere: git would read them as the end of the URL or refuse.
    """
    hint = "use https://host/org/repo.git, ssh://git@host/org/repo.git, git@host:org/repo.git or file:///path"
    if CONTROL.search(url) or any(c.isspace() for c in url):
        return f"contains whitespace or a control character: {shown(url)}; {hint}"
    match = _URL.fullmatch(url)
    if match is not None:
        scheme = match["scheme"].lower()
        if scheme not in GIT_SCHEMES:
            return f"scheme {scheme!r} is not one git fetches here ({', '.join(GIT_SCHEMES)}); {hint}"
        if scheme != "file" and not match["host"].rsplit("@", 1)[-1]:
            return f"{shown(url)} names no host; {hint}"
        if scheme == "file" and match["host"]:
            return f"{shown(url)}: a file URL has three slashes, file:///absolute/path"
        if not (match["path"] or "/").strip("/"):
            return f"{shown(url)} names no repository path; {hint}"
        return None
    if "://" not in url and _SCP_LIKE.fullmatch(url):
        return None
    return f"{shown(url)} is not a git URL; {hint}"


def git_url_credential(url: str) -> str | None:
    """A token or password in the URL (lib/secrets.py's one definition) would be printed by
    git, stored in .git/config and shown in `ps`: refused for every runner."""
    if url_credential(url) is not None:
        return (
            "contains a token or password in its userinfo (`https://TOKEN@…`, `user:pw@`): "
            "remove it and pass the token as env DBT_ENV_SECRET_GIT_TOKEN"
        )
    return None


# Each check takes the URL and returns why it is refused, or None; the first refusal is
# reported. The hook for rules about what a URL may carry (credentials, hosts). The
# credential check goes first: the others quote the URL in their message.
GIT_URL_CHECKS: tuple[Callable[[str], str | None], ...] = (git_url_credential, git_url_shape)
