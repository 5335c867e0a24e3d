"""API tokens: created once, shown once, kept only as a hash.

A token reads `dbts_<id>_<secret>`: the `dbts_` prefix makes a leaked token easy to find
with grep or a secret scanner; `<id>` (8 hex digits) names it in `token list`, `token
revoke` and the audit log; `<secret>` is 32 random bytes (`secrets.token_urlsafe`).
history.db keeps the SHA-256 of the whole token, never the token: with 256 bits of
randomness a fast hash is enough (nothing to brute-force, unlike a password), and a
copy of history.db lets no one in.

`verify` looks the id up and compares hashes in constant time (`hmac.compare_digest`),
then refuses a revoked or expired token with its own reason, so the audit log says
why. A token's last use is written at most once a minute (`last_used_every`): a
browser page calling the API several times a second does not write every time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lib.clock import Clock
from lib.durations import format_duration, parse_duration
from lib.web.roles import ALL_JOBS, Role

PREFIX = "dbts_"
DEFAULT_EXPIRY = "90d"
NEVER = "never"
_ID_HEX = 8
_FORM = re.compile(rf"{PREFIX}(?P<id>[0-9a-f]{{{_ID_HEX}}})_(?P<secret>[A-Za-z0-9_-]{{43}})")
_MAX_USER = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_expiry(text: str) -> float | None:
    """Seconds until a new token expires, from `90d`, `12h`, `1w` (lib/durations.py, at
    most 366 days), or None for `never`. Raises ValueError naming the accepted forms."""
    if text.strip().lower() == NEVER:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"--expires: {exc}, or `never`") from None


@dataclass(frozen=True)
class TokenInfo:
    """What is known of a token: everything but the token and its hash."""

    id: str
    user: str
    role: Role
    jobs: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """`revoked`, `expired` or `active`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "role": self.role.value,
            "jobs": list(self.jobs),
            "state": self.state(now),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
        }

    def describe(self, now: datetime) -> str:
        """One line: `a1b2c3d4 for alice (operator, jobs: *), expires in 90d`."""
        if self.expires_at is None:
            until = "never expires"
        elif now >= self.expires_at:
            until = f"expired {_iso(self.expires_at)}"
        else:
            until = f"expires in {format_duration((self.expires_at - now).total_seconds())}"
        return f"{self.id} for {self.user} ({self.role.value}, jobs: {', '.join(self.jobs)}), {until}"


@dataclass(frozen=True)
class Verification:
    """The answer of `verify`: the token's info when it is good (`reason` empty), else
    why not: `malformed`, `unknown` (no such token, or a wrong secret), `revoked`, `expired`."""

    token: TokenInfo | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


class TokenStore:
    """API tokens in history.db (table `api_tokens`, lib/history.py migration 6)."""

    def __init__(self, history: Any, clock: Clock, last_used_every: float = 60.0) -> None:
        self.history = history
        self.clock = clock
        self.last_used_every = last_used_every

    def create(
        self,
        user: str,
        role: Role,
        jobs: Sequence[str] = ALL_JOBS,
        expires_in: float | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new token for `user` with `role`, reaching the jobs matching `jobs` (globs),
        expiring `expires_in` seconds from now (None: never). Returns the token — the only
        time it exists outside the caller — and its info. Raises ValueError for a bad user
        name or glob."""
        user = _checked_user(user)
        jobs = _checked_globs(jobs)
        now = self.clock.now()
        expires_at = now + timedelta(seconds=expires_in) if expires_in is not None else None
        with self.history.transaction() as conn:
            while True:  # 2^32 ids: a clash is rare, and then another id is drawn
                token_id = secrets.token_hex(_ID_HEX // 2)
                if conn.execute("SELECT 1 FROM api_tokens WHERE id = ?", (token_id,)).fetchone() is None:
                    break
            token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
            conn.execute(
                "INSERT INTO api_tokens (id, user, role, jobs, hash, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token_id,
                    user,
                    role.value,
                    json.dumps(list(jobs)),
                    token_hash(token),
                    _iso(now),
                    _iso(expires_at),
                ),
            )
        return token, TokenInfo(token_id, user, role, jobs, now, expires_at)

    def verify(self, token: str) -> Verification:
        """Who `token` belongs to, if it is good now; a good token's last use is recorded."""
        match = _FORM.fullmatch(token.strip()) if len(token) < 200 else None
        if match is None:
            return Verification(None, "malformed")
        row = self._row(match["id"])
        if row is None or not hmac.compare_digest(row["hash"], token_hash(token.strip())):
            return Verification(None, "unknown")
        return self._good(row, use=True)

    def check_id(self, token_id: str) -> Verification:
        """Whether the token `token_id` is still good (a browser session signed in with it
        ends when the token is revoked or expires); its last use is recorded."""
        row = self._row(token_id)
        if row is None:
            return Verification(None, "unknown")
        return self._good(row, use=True)

    def get(self, token_id: str) -> TokenInfo | None:
        row = self._row(token_id)
        return _info(row) if row is not None else None

    def list(self) -> list[TokenInfo]:
        """Every token, newest first, revoked and expired ones included."""
        with self.history.transaction() as conn:
            rows = conn.execute("SELECT * FROM api_tokens ORDER BY created_at DESC, id").fetchall()
        return [_info(row) for row in rows]

    def revoke(self, token_id: str) -> TokenInfo | None:
        """Revoke the token now (a revoked one keeps its first revocation time); None when
        there is no such token."""
        with self.history.transaction() as conn:
            conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_iso(self.clock.now()), token_id),
            )
        return self.get(token_id)

    def _row(self, token_id: str) -> Any:
        with self.history.transaction() as conn:
            return conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()

    def _good(self, row: Any, use: bool) -> Verification:
        info = _info(row)
        now = self.clock.now()
        state = info.state(now)
        if state != "active":
            return Verification(info, state)
        last = info.last_used_at
        if use and (last is None or (now - last).total_seconds() >= self.last_used_every):
            with self.history.transaction() as conn:
                conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (_iso(now), info.id))
            info = replace(info, last_used_at=now)
        return Verification(info)


def _checked_user(user: str) -> str:
    user = user.strip()
    if not user or len(user) > _MAX_USER or _CONTROL.search(user):
        raise ValueError(f"--user must be a name of 1 to {_MAX_USER} printable characters, got {user!r}")
    return user


def _checked_globs(jobs: Sequence[str]) -> tuple[str, ...]:
    globs = tuple(dict.fromkeys(job.strip() for job in jobs)) or ALL_JOBS
    for glob in globs:
        if not glob or _CONTROL.search(glob):
            raise ValueError(f"--jobs takes job names or globs such as 'sales_*', got {glob!r}")
    return ALL_JOBS if "*" in globs else globs


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        user=row["user"],
        role=Role(row["role"]),
        jobs=tuple(json.loads(row["jobs"])),
        created_at=_time(row["created_at"]),
        expires_at=_time(row["expires_at"]) if row["expires_at"] else None,
        last_used_at=_time(row["last_used_at"]) if row["last_used_at"] else None,
        revoked_at=_time(row["revoked_at"]) if row["revoked_at"] else None,
    )


def _iso(moment: datetime | None) -> str | None:
    # UTC, so that text order is time order (as lib/history.py stores runs).
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
