"""The gate every web and API request goes through: identify, authorize, audit.

`Gate.check(headers, peer, action, job)` finds who is asking (lib/web/identity.py: a
bearer token, else the browser session's token, else the SSO proxy's headers from a
trusted peer), decides with `authorize` (lib/web/roles.py, `web.read_only` applied) and
records every refusal in the audit log at once. An allowed mutation is recorded by
`Gate.done` once it was carried out, with its run id (run now) or its error, so the log
says what happened, not only what was tried. Reading (VIEW, READ_AUDIT) that is allowed
is not recorded: the log is of changes and refusals.

An anonymous request is refused as `denied:unauthenticated`, or with the reason its
credentials were refused when it sent some (`denied:token_expired`,
`denied:token_revoked`, `denied:untrusted_proxy`, …), so a spoofing attempt or a leaked,
revoked token shows in the log as what it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lib.models import WebSettings
from lib.web.audit import AuditLog
from lib.web.identity import Identity, Resolution, from_token, identify
from lib.web.roles import MUTATIONS, Action, Decision, authorize
from lib.web.tokens import TokenStore


@dataclass(frozen=True)
class Checked:
    """What `Gate.check` found: the identity (None: anonymous), the decision, and why the
    request is anonymous when it is (`no_credentials`, `token_expired`, …)."""

    identity: Identity | None
    decision: Decision
    anonymous_reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def http_status(self) -> int:
        return self.decision.http_status


class Gate:
    def __init__(self, settings: WebSettings, tokens: TokenStore, audit: AuditLog) -> None:
        self.settings = settings
        self.tokens = tokens
        self.audit = audit

    def identify(
        self,
        headers: Mapping[str, str],
        peer: str | None,
        session_token: str | None = None,
        local: Identity | None = None,
    ) -> Resolution:
        """Who is asking: someone the kernel named (`local`: a control-socket caller, see
        lib/web/socket_api.py), else a bearer token, then the token a browser session was
        signed in with (`session_token`, its id, from the signed cookie), then proxy headers."""
        if local is not None:
            return Resolution(local)
        has_bearer = any(name.lower() == "authorization" for name in headers)
        if session_token is not None and not has_bearer:
            verified = self.tokens.check_id(session_token)
            if verified.ok and verified.token is not None:
                return Resolution(from_token(verified.token, source="session"))
            return Resolution(None, f"token_{verified.reason}")
        return identify(headers, peer, self.settings, self.tokens)

    def check(
        self,
        headers: Mapping[str, str],
        peer: str | None,
        action: Action,
        job: str | None = None,
        run_id: str | None = None,
        session_token: str | None = None,
        local: Identity | None = None,
    ) -> Checked:
        """Identify and authorize one request; a refusal is audited before this returns."""
        resolution = self.identify(headers, peer, session_token, local)
        decision = authorize(resolution.identity, action, job, read_only=self.settings.read_only)
        checked = Checked(resolution.identity, decision, resolution.reason)
        if not decision.allowed:
            result = decision.audit_result
            if decision.reason == "unauthenticated" and resolution.reason not in ("", "no_credentials"):
                result = f"denied:{resolution.reason}"
            self._record(checked, peer, action, job, run_id, result, decision.detail)
        return checked

    def done(
        self,
        checked: Checked,
        peer: str | None,
        action: Action | str,
        job: str | None = None,
        run_id: str | None = None,
        error: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record an allowed mutation once carried out: `allowed`, or `error` with what went
        wrong. `action` may be finer than the checked one (`token_create` under
        MANAGE_TOKENS). Reading is not recorded."""
        if isinstance(action, Action) and action not in MUTATIONS:
            return
        self._record(checked, peer, action, job, run_id, "error" if error else "allowed", error or detail)

    def _record(
        self,
        checked: Checked,
        peer: str | None,
        action: Action | str,
        job: str | None,
        run_id: str | None,
        result: str,
        detail: str | None,
    ) -> Any:
        who = checked.identity
        return self.audit.record(
            user=who.name if who is not None else None,
            source=who.source if who is not None else "anonymous",
            action=str(action),
            result=result,
            peer=peer,
            job=job,
            run_id=run_id,
            detail=detail,
        )
