"""The scheduler's small exception hierarchy.

Only problems a person must fix raise: a bad jobs.yaml, an unknown job, a lock
held by another process. A dbt run that fails is not an exception: it is a
`RunOutcome` with status `failed` (see models.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SchedulerError(Exception):
    """Base class: every error the CLI turns into a one-line message and exit 2."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in jobs.yaml, located so the user can jump to it."""

    path: str  # dotted key path, e.g. "jobs.nightly.schedule"
    message: str
    line: int | None = None  # 1-based line in the file, when known
    file: str | None = None
    column: int | None = None  # 1-based, where a line alone does not find it (a bad byte)

    def __str__(self) -> str:
        where = self.file or "jobs.yaml"
        if self.line is not None:
            where = f"{where}:{self.line}"
            if self.column is not None:
                where = f"{where}:{self.column}"
        text = f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        # One issue, one line: a key or value with a newline or NUL in it is shown escaped.
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class ConfigError(SchedulerError):
    """jobs.yaml is invalid; carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class UnknownJobError(SchedulerError):
    """A command named a job that jobs.yaml does not define."""


class LockedError(SchedulerError):
    """Another process holds a lock (the daemon on a state_dir, or a job's run lock)."""


class RunDetached(Exception):
    """A runner stopped following a remote run that goes on (daemon shutdown).

    The run stays `running` in history with its external id; the next daemon
    re-attaches to it. Raised by runners whose runs survive the scheduler (ECS).
    """


class RunnerError(SchedulerError):
    """A runner could not be built or used (bad runner settings, missing engine)."""


def quoted(value: object, limit: int = 60) -> str:
    """`value` as an error message quotes it (its repr), cut to `limit` characters: a
    document may hold megabytes and a number 400 digits, neither worth echoing whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
