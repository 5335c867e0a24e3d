"""The checks of the `web:` section (issue 11): where the web UI listens, which proxies
are believed, which groups get which role, where metrics go.

Each is a key-table check (`check(value, field) -> value`, lib/config/checks.py); the
section itself is read by `web` in lib/config/keys.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Any

from lib.config.checks import CONTROL, Field, did_you_mean, shown
from lib.web.roles import ROLE_NAMES

# A header name is an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HOST_NAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_BASE_URL = re.compile(r"https?://[^\s/?#@]+(?:/[^\s?#]*)?", re.IGNORECASE)
_LISTEN_HINT = 'write host:port, e.g. "127.0.0.1:8080", "0.0.0.0:8080" or "[::1]:8080"'


def listen(value: Any, field: Field) -> str | None:
    """`host:port`: an IPv4 address, a host name, or an IPv6 address in brackets, and a
    port from 1 to 65535. Returned as written (an IPv6 host in its compressed form)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return field.bad(f"must be host:port, got {shown(value)}; {_LISTEN_HINT}")
    text = str(value).strip()
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        return field.bad(f"{shown(value)} has no port from 1 to 65535; {_LISTEN_HINT}")
    if host.startswith("[") and host.endswith("]"):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return field.bad(f"{shown(host)} is not an IPv6 address; {_LISTEN_HINT}")
        return f"[{address.compressed}]:{int(port)}"
    if ":" in host:
        return field.bad(f"{shown(value)}: put an IPv6 address in brackets; {_LISTEN_HINT}")
    if not host or not _HOST_NAME.fullmatch(host):
        return field.bad(f"{shown(host or value)} is not a host name or address; {_LISTEN_HINT}")
    return f"{host}:{int(port)}"


def base_url(value: Any, field: Field) -> str | None:
    """An http(s) URL without query or fragment; a trailing `/` is dropped (run links are
    `<base_url>/runs/<run id>`)."""
    if not isinstance(value, str) or not _BASE_URL.fullmatch(value) or CONTROL.search(value):
        return field.bad(
            f"must be the http(s) URL people open the web UI at, e.g. https://dbt.example.com, "
            f"got {shown(value)}"
        )
    return value.rstrip("/")


def networks(value: Any, field: Field) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """IP addresses and CIDR networks (`127.0.0.1`, `10.0.0.0/8`, `::1`)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return field.bad(
            f"must be a list of IP addresses or networks, e.g. [127.0.0.1, 10.0.0.0/8], got {shown(value)}"
        )
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for i, item in enumerate(value):
        where = f"{field.path}[{i}]"
        if not isinstance(item, str):
            field.issues.add(where, f"must be an IP address or network, got {shown(item)}")
            continue
        try:
            found.append(ipaddress.ip_network(item.strip()))
        except ValueError as exc:
            hint = ""
            with contextlib.suppress(ValueError):  # 10.1.2.3/8: host bits set; name the network meant
                hint = f": did you mean {ipaddress.ip_network(item.strip(), strict=False)}?"
            field.issues.add(where, f"{shown(item)} is not an IP address or network ({exc}){hint}")
    return tuple(dict.fromkeys(found))


def header_name(value: Any, field: Field) -> str | None:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        return field.bad(f"must be an HTTP header name such as X-Forwarded-User, got {shown(value)}")
    return value


def group_roles(value: Any, field: Field) -> dict[str, str] | None:
    """Group name → role (viewer, operator, admin)."""
    if not isinstance(value, dict):
        return field.bad(
            f"must be a mapping of group → role, e.g. {{data-eng: operator}}, got {shown(value)}"
        )
    result: dict[str, str] = {}
    for group, role in value.items():
        where = field.at(str(group))
        if not isinstance(group, str) or not group or CONTROL.search(group) or "," in group:
            where.bad("is not a group name (text without commas or control characters)")
            continue
        if role not in ROLE_NAMES:
            hint = did_you_mean(str(role), ROLE_NAMES) or ""
            where.bad(f"{shown(role)} is not a role{hint} (roles: {', '.join(ROLE_NAMES)})")
            continue
        result[group] = role
    return result


def textfile(value: Any, field: Field) -> Any:
    """A path ending in `.prom`: node_exporter's textfile collector reads only those."""
    from lib.config.checks import path

    if isinstance(value, str) and not value.endswith(".prom"):
        return field.bad(
            f"{shown(value)} does not end in .prom: node_exporter's textfile collector reads only "
            "*.prom files, e.g. /var/lib/node_exporter/textfile/dbt_scheduler.prom"
        )
    return path(value, field)
