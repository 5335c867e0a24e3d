"""The audit log: every mutation and every refused request, in history.db.

One row per event (table `audit`, lib/history.py migration 6): when (`at`, UTC), who
(`user`, None when anonymous), how they were identified (`source`: token, session,
proxy, socket, cli, or anonymous), from where (`peer`, the client address; None for the
CLI), what (`action`: an Action of lib/web/roles.py, or a finer name such as
`token_create`), on which `job` and `run_id`, the `result` (`allowed`, `denied:<reason>`
or `error`) and a free-text `detail`. The free text (`user`, `detail`) goes through the
masker before it is stored, and anything shaped like an API token is cut to its id, so
a token pasted into the wrong place does not live on in the log.

Shown by `scheduler.py audit` and (next) the web UI's audit page, for admins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from lib.clock import Clock

AUDIT_SOURCES = ("token", "session", "proxy", "socket", "cli", "anonymous")
_ACTION = re.compile(r"[a-z][a-z_]{0,39}")
_RESULT = re.compile(r"allowed|error|denied:[a-z_]{1,40}")
# dbts_<8 hex>_<secret> (lib/web/tokens.py): keep the id, which names the token, drop the rest.
_TOKEN = re.compile(r"\b(dbts_[0-9a-f]{8})_[A-Za-z0-9_-]+")
_MAX_TEXT = 500


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    user: str | None
    source: str
    action: str
    result: str
    peer: str | None = None
    job: str | None = None
    run_id: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.astimezone(UTC).isoformat()}


class AuditLog:
    """Writes and reads the audit table; `mask` is the SecretMasker (or any str → str)."""

    def __init__(self, history: Any, clock: Clock, mask: Callable[[str], str] = lambda text: text) -> None:
        self.history = history
        self.clock = clock
        self.mask = mask

    def record(
        self,
        *,
        user: str | None,
        source: str,
        action: str,
        result: str,
        peer: str | None = None,
        job: str | None = None,
        run_id: str | None = None,
        detail: str | None = None,
    ) -> AuditEntry:
        """Append one entry, stamped now. Raises ValueError for a source, action or result
        outside the forms above (a programming error: the caller names them)."""
        if source not in AUDIT_SOURCES:
            raise ValueError(f"audit source {source!r} is not one of {', '.join(AUDIT_SOURCES)}")
        if not _ACTION.fullmatch(action):
            raise ValueError(f"audit action {action!r} is not a lower-case name")
        if not _RESULT.fullmatch(result):
            raise ValueError(f"audit result {result!r} is not allowed, error or denied:<reason>")
        entry = AuditEntry(
            at=self.clock.now(),
            user=self._clean(user),
            source=source,
            action=action,
            result=result,
            peer=peer[:_MAX_TEXT] if peer else None,
            job=job,
            run_id=run_id,
            detail=self._clean(detail),
        )
        with self.history.transaction() as conn:
            conn.execute(
                "INSERT INTO audit (at, user, source, peer, action, job, run_id, result, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.at.astimezone(UTC).isoformat(),
                    entry.user,
                    entry.source,
                    entry.peer,
                    entry.action,
                    entry.job,
                    entry.run_id,
                    entry.result,
                    entry.detail,
                ),
            )
        return entry

    def query(
        self,
        limit: int = 50,
        user: str | None = None,
        job: str | None = None,
        action: str | None = None,
        denied: bool = False,
        since: datetime | None = None,
    ) -> list[AuditEntry]:
        """Entries newest first, at most `limit`, filtered by exact user, job and action;
        `denied`: only refusals; `since`: only from that instant on."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("user", user), ("job", job), ("action", action)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if denied:
            where.append("result LIKE 'denied:%'")
        if since is not None:
            where.append("at >= ?")
            params.append(since.astimezone(UTC).isoformat())
        sql = "SELECT at, user, source, peer, action, job, run_id, result, detail FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        params.append(max(0, limit))
        with self.history.transaction() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [AuditEntry(**{**dict(row), "at": datetime.fromisoformat(row["at"])}) for row in rows]

    def prune(self, before: datetime, dry_run: bool = False) -> int:
        return prune_audit(self.history, before, dry_run)

    def _clean(self, text: str | None) -> str | None:
        if text is None:
            return None
        text = _TOKEN.sub(r"\1_*****", self.mask(text))
        return text[:_MAX_TEXT]


def prune_audit(history: Any, before: datetime, dry_run: bool = False) -> int:
    """Delete the audit entries older than `before` (counted only, with `dry_run`); returns
    how many. Retention calls it daily with `web.audit_days`."""
    at = before.astimezone(UTC).isoformat()
    with history.transaction() as conn:
        if dry_run:
            return int(conn.execute("SELECT count(*) FROM audit WHERE at < ?", (at,)).fetchone()[0])
        return int(conn.execute("DELETE FROM audit WHERE at < ?", (at,)).rowcount)
