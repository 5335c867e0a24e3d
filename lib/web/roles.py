"""Roles, the actions they allow, and the one decision: `authorize(identity, action, job)`.

Three roles, each allowing what the one below allows and more:

| role | may |
|---|---|
| `viewer` | see jobs, runs and logs (secrets are masked for everyone, always) |
| `operator` | + run a job now, cancel a run, pause or resume a job |
| `admin` | + manage API tokens, read the audit log |

An identity may be scoped to jobs by name globs (a token created with `--jobs 'sales_*'`):
its job actions reach only those jobs, and it may not take the actions that are about
no job (tokens, audit), since those would reach beyond its scope. `web.read_only`
refuses every mutation, whoever asks. Pure: no I/O, no clock.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import Enum, StrEnum
from functools import total_ordering
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lib.web.identity import Identity


@total_ordering
class Role(Enum):
    """A role; `Role.VIEWER < Role.OPERATOR < Role.ADMIN`."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank < other.rank

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named `text`; raises ValueError naming the roles (and a close one)."""
        try:
            return cls(text)
        except ValueError:
            import difflib

            close = difflib.get_close_matches(str(text), ROLE_NAMES, n=1, cutoff=0.6)
            hint = f": did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"{text!r} is not a role{hint} (roles: {', '.join(ROLE_NAMES)})") from None


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
ROLE_NAMES: tuple[str, ...] = tuple(role.value for role in Role)


class Action(StrEnum):
    """What a request does; the audit log records it by this name."""

    VIEW = "view"  # jobs, runs, logs, metrics
    RUN = "run"  # run a job now
    CANCEL = "cancel"  # cancel a queued or running run
    PAUSE = "pause"  # pause or resume a job's schedule
    MANAGE_TOKENS = "manage_tokens"  # create, list, revoke API tokens
    READ_AUDIT = "read_audit"


# The least role each action needs: the whole permission model, in one table.
MINIMUM_ROLE: dict[Action, Role] = {
    Action.VIEW: Role.VIEWER,
    Action.RUN: Role.OPERATOR,
    Action.CANCEL: Role.OPERATOR,
    Action.PAUSE: Role.OPERATOR,
    Action.MANAGE_TOKENS: Role.ADMIN,
    Action.READ_AUDIT: Role.ADMIN,
}
# Actions that change something: refused under `web.read_only`, and always audited.
MUTATIONS = frozenset({Action.RUN, Action.CANCEL, Action.PAUSE, Action.MANAGE_TOKENS})
# Actions on one job: they name it, and a scoped identity reaches only its jobs.
JOB_ACTIONS = frozenset({Action.RUN, Action.CANCEL, Action.PAUSE})
# Actions about no job, which a scoped identity may not take (they reach every job).
GLOBAL_ACTIONS = frozenset({Action.MANAGE_TOKENS, Action.READ_AUDIT})

ALL_JOBS: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class Decision:
    """The answer: `allowed`, and when not, a short `reason` code (recorded in the audit
    log as `denied:<reason>`) and a sentence for the person (`detail`).

    Reasons: `unauthenticated` (HTTP 401), `no_role`, `role`, `out_of_scope`, `read_only`
    (HTTP 403)."""

    allowed: bool
    reason: str = ""
    detail: str = ""

    @property
    def http_status(self) -> int:
        if self.allowed:
            return 200
        return 401 if self.reason == "unauthenticated" else 403

    @property
    def audit_result(self) -> str:
        return "allowed" if self.allowed else f"denied:{self.reason}"


ALLOWED = Decision(True)


def in_scope(jobs: tuple[str, ...], job: str) -> bool:
    """Whether `job` matches one of the globs `jobs` (case-sensitive, as job names are)."""
    return any(fnmatch.fnmatchcase(job, pattern) for pattern in jobs)


def is_scoped(jobs: tuple[str, ...]) -> bool:
    return "*" not in jobs


def authorize(
    identity: Identity | None, action: Action, job: str | None = None, read_only: bool = False
) -> Decision:
    """May `identity` take `action` (on `job`)?

    In this order: no identity → `unauthenticated`; an identity without a role (a proxy
    user none of whose groups is in `web.group_roles`) → `no_role`; a mutation under
    `read_only` → `read_only`; a role below the action's `MINIMUM_ROLE` → `role`; a
    scoped identity acting on a job outside its globs, or taking an action about no
    job → `out_of_scope`. `VIEW` without a job (the job list) is allowed to every role:
    the caller shows a scoped identity only the jobs `in_scope`.
    """
    if action in JOB_ACTIONS and job is None:
        raise ValueError(f"{action.value} is an action on one job: pass the job")
    if identity is None:
        return Decision(False, "unauthenticated", "sign in: a bearer token, a session, or the SSO proxy")
    role = identity.role
    if role is None:
        return Decision(
            False,
            "no_role",
            f"{identity.name} has no role: none of their groups is mapped in web.group_roles",
        )
    if read_only and action in MUTATIONS:
        return Decision(False, "read_only", "web.read_only is set: nothing can be changed here")
    needed = MINIMUM_ROLE[action]
    if role < needed:
        return Decision(
            False, "role", f"{action.value} needs the {needed.value} role; {identity.name} is {role.value}"
        )
    if is_scoped(identity.jobs):
        if action in GLOBAL_ACTIONS:
            return Decision(
                False,
                "out_of_scope",
                f"{action.value} reaches every job; {identity.name} is scoped to {_globs(identity.jobs)}",
            )
        if job is not None and not in_scope(identity.jobs, job):
            return Decision(
                False, "out_of_scope", f"{identity.name} is scoped to {_globs(identity.jobs)}, not {job}"
            )
    return ALLOWED


def _globs(jobs: tuple[str, ...]) -> str:
    return ", ".join(jobs)
