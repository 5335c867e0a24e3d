"""Who is asking: a bearer token, or the user an SSO proxy vouches for, or no one.

`identify(headers, peer, settings, tokens)` reads one request:

1. `Authorization: Bearer dbts_…` → the token's user, role and job scope, if the token
   is good (lib/web/tokens.py). A bad token makes the request anonymous, with the
   token's reason (`token_expired`, `token_revoked`, …); the proxy headers are then not
   consulted, so a client cannot fall back from a refused token to a forged header.
2. Otherwise, when the peer address is in `web.trusted_proxies`, the proxy's headers
   (`web.proxy_headers`, oauth2-proxy's `X-Forwarded-User`/`-Email`/`-Groups` by
   default): the user, and the highest role any of their groups maps to in
   `web.group_roles`. A user none of whose groups is mapped is identified with no role,
   and `authorize` refuses them everything (403, not 401: they did sign in).
3. Otherwise no one: proxy headers from any other peer are ignored (reason
   `untrusted_proxy`, so the audit log shows the attempt), and a request without
   credentials is anonymous (`no_credentials`).

The identity's `name` is what a run it starts records as `triggered_by`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lib.models import WebSettings
from lib.web.roles import ALL_JOBS, Role
from lib.web.tokens import TokenInfo

SOURCES = ("token", "session", "proxy", "socket", "cli")
_MAX_HEADER = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Identity:
    """Someone the scheduler knows: their name, how they were identified (`source`: token,
    session, proxy, socket, cli), their role (None: signed in but no role) and the jobs
    they reach (globs; `*` for all)."""

    name: str
    source: str
    role: Role | None
    jobs: tuple[str, ...] = ALL_JOBS
    email: str | None = None
    groups: tuple[str, ...] = ()
    token_id: str | None = None

    @property
    def triggered_by(self) -> str:
        """What a run this identity starts records as `triggered_by`."""
        return self.name


@dataclass(frozen=True)
class Resolution:
    """`identity`, or None with the `reason` the request is anonymous: `no_credentials`,
    `untrusted_proxy`, `bad_proxy_header`, `bad_authorization`, or `token_<reason>`
    (`token_malformed`, `token_unknown`, `token_revoked`, `token_expired`)."""

    identity: Identity | None
    reason: str = ""


def from_token(info: TokenInfo, source: str = "token") -> Identity:
    """The identity a good token (or a browser session signed in with one) stands for."""
    return Identity(name=info.user, source=source, role=info.role, jobs=info.jobs, token_id=info.id)


def local_identity(name: str, source: str) -> Identity:
    """Someone on the box itself (`cli`, or the control `socket`): an admin of every job.
    Reaching the socket or history.db at all is guarded by file permissions (state_dir is
    owner + group only), the same guard as reading the jobs' files."""
    return Identity(name=name, source=source, role=Role.ADMIN)


def is_trusted(peer: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether `peer` (an IP address as text; None for a unix socket) is in `networks`.
    An IPv4-mapped IPv6 peer (`::ffff:127.0.0.1`, from a dual-stack listener) counts as
    its IPv4 address."""
    if not peer:
        return False
    try:
        address: Any = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def role_of(groups: Iterable[str], group_roles: Mapping[str, str]) -> Role | None:
    """The highest role any of `groups` maps to; None when none is mapped."""
    roles = [Role(group_roles[group]) for group in groups if group in group_roles]
    return max(roles) if roles else None


def split_groups(value: str) -> tuple[str, ...]:
    """oauth2-proxy's comma-separated groups header as a tuple, blanks dropped."""
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def identify(headers: Mapping[str, str], peer: str | None, settings: WebSettings, tokens: Any) -> Resolution:
    """Who sent a request with `headers` from `peer` (see the module's docstring).
    Header names are matched without regard to case."""
    lower = {name.lower(): value for name, value in headers.items()}
    authorization = lower.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return Resolution(None, "bad_authorization")
        verified = tokens.verify(credentials.strip())
        if not verified.ok:
            return Resolution(None, f"token_{verified.reason}")
        return Resolution(from_token(verified.token))
    names = settings.proxy_headers
    user_header = names.user.lower()
    sent = [name for name in (user_header, names.email.lower(), names.groups.lower()) if name in lower]
    if not sent:
        return Resolution(None, "no_credentials")
    if not is_trusted(peer, settings.trusted_proxies):
        return Resolution(None, "untrusted_proxy")
    user = lower.get(user_header, "").strip()
    if not user:
        return Resolution(None, "no_credentials")
    values = [lower.get(name, "") for name in sent]
    if (
        any(len(value) > _MAX_HEADER * 16 or _CONTROL.search(value) for value in values)
        or len(user) > _MAX_HEADER
    ):
        return Resolution(None, "bad_proxy_header")
    groups = split_groups(lower.get(names.groups.lower(), ""))
    email = lower.get(names.email.lower(), "").strip() or None
    return Resolution(
        Identity(
            name=user, source="proxy", role=role_of(groups, settings.group_roles), email=email, groups=groups
        )
    )
