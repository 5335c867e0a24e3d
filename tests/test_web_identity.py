"""Who is asking: bearer tokens, SSO proxy headers from trusted peers only, groups → roles."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lib.history import History
from lib.models import ProxyHeaders, WebSettings
from lib.web.identity import identify, is_trusted, role_of, split_groups
from lib.web.roles import Action, Role, authorize
from lib.web.tokens import TokenStore
from tests.fakes import FakeClock

SETTINGS = WebSettings(
    trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.8.0.0/16")),
    group_roles={"data-eng": "operator", "analysts": "viewer", "platform": "admin"},
)
PROXY = {
    "X-Forwarded-User": "alice",
    "X-Forwarded-Email": "alice@example.com",
    "X-Forwarded-Groups": "analysts",
}


@pytest.fixture
def tokens(tmp_path: Path) -> TokenStore:
    return TokenStore(History(tmp_path / "history.db"), FakeClock(datetime(2026, 3, 1, tzinfo=UTC)))


def test_proxy_headers_from_a_trusted_peer_name_the_user(tokens: TokenStore) -> None:
    found = identify(PROXY, "127.0.0.1", SETTINGS, tokens)
    assert found.identity is not None
    who = found.identity
    assert (who.name, who.source, who.role, who.email, who.groups) == (
        "alice",
        "proxy",
        Role.VIEWER,
        "alice@example.com",
        ("analysts",),
    )
    assert who.triggered_by == "alice"
    assert identify(PROXY, "10.8.3.4", SETTINGS, tokens).identity is not None  # inside the CIDR


@pytest.mark.parametrize("peer", ["192.168.1.5", "10.9.0.1", "127.0.0.2", None, "", "not-an-ip"])
def test_spoofed_proxy_headers_from_an_untrusted_peer_are_ignored(
    tokens: TokenStore, peer: str | None
) -> None:
    spoofed = {**PROXY, "X-Forwarded-User": "admin", "X-Forwarded-Groups": "platform"}
    found = identify(spoofed, peer, SETTINGS, tokens)
    assert (found.identity, found.reason) == (None, "untrusted_proxy")
    assert authorize(found.identity, Action.MANAGE_TOKENS).http_status == 401


def test_no_trusted_proxies_means_no_proxy_is_believed(tokens: TokenStore) -> None:
    assert identify(PROXY, "127.0.0.1", WebSettings(), tokens).reason == "untrusted_proxy"


def test_header_names_are_matched_without_case_and_can_be_configured(tokens: TokenStore) -> None:
    lower = {name.lower(): value for name, value in PROXY.items()}
    assert identify(lower, "127.0.0.1", SETTINGS, tokens).identity is not None
    custom = WebSettings(
        trusted_proxies=SETTINGS.trusted_proxies,
        group_roles=SETTINGS.group_roles,
        proxy_headers=ProxyHeaders(user="X-Auth-Request-User", groups="X-Auth-Request-Groups"),
    )
    sent = {"X-Auth-Request-User": "dora", "X-Auth-Request-Groups": "data-eng"}
    who = identify(sent, "127.0.0.1", custom, tokens).identity
    assert who is not None and (who.name, who.role) == ("dora", Role.OPERATOR)
    # The default names mean nothing once others are configured.
    assert identify(PROXY, "127.0.0.1", custom, tokens).reason == "no_credentials"


def test_several_groups_give_the_highest_role_and_unmapped_groups_none(tokens: TokenStore) -> None:
    def role(groups: str) -> Role | None:
        found = identify({**PROXY, "X-Forwarded-Groups": groups}, "127.0.0.1", SETTINGS, tokens)
        assert found.identity is not None
        return found.identity.role

    assert role("analysts, data-eng") is Role.OPERATOR
    assert role("data-eng,platform,analysts") is Role.ADMIN
    assert role("sales,analysts") is Role.VIEWER
    assert role("sales,marketing") is None
    assert role("") is None
    no_role = identify({"X-Forwarded-User": "eve"}, "127.0.0.1", SETTINGS, tokens).identity
    assert no_role is not None and no_role.role is None
    assert authorize(no_role, Action.VIEW).http_status == 403  # signed in, so 403, not 401


def test_a_trusted_peer_without_a_user_header_is_anonymous(tokens: TokenStore) -> None:
    assert (
        identify({"X-Forwarded-Groups": "platform"}, "127.0.0.1", SETTINGS, tokens).reason == "no_credentials"
    )
    assert identify({"X-Forwarded-User": "  "}, "127.0.0.1", SETTINGS, tokens).reason == "no_credentials"
    assert identify({}, "127.0.0.1", SETTINGS, tokens).reason == "no_credentials"
    bad = identify({"X-Forwarded-User": "a\x00b"}, "127.0.0.1", SETTINGS, tokens)
    assert bad.reason == "bad_proxy_header"


def test_a_bearer_token_names_its_user_role_and_scope(tokens: TokenStore) -> None:
    token, info = tokens.create("ci-bot", Role.OPERATOR, jobs=["sales_*"])
    who = identify({"Authorization": f"Bearer {token}"}, "192.168.1.5", SETTINGS, tokens).identity
    assert who is not None
    assert (who.name, who.source, who.role, who.jobs, who.token_id) == (
        "ci-bot",
        "token",
        Role.OPERATOR,
        ("sales_*",),
        info.id,
    )
    assert authorize(who, Action.RUN, job="sales_daily").allowed
    assert authorize(who, Action.RUN, job="finance").reason == "out_of_scope"


def test_a_refused_token_does_not_fall_back_to_proxy_headers(tokens: TokenStore) -> None:
    token, info = tokens.create("ci-bot", Role.VIEWER)
    tokens.revoke(info.id)
    both = {**PROXY, "authorization": f"bearer {token}"}
    assert identify(both, "127.0.0.1", SETTINGS, tokens).reason == "token_revoked"
    assert (
        identify({"Authorization": "Bearer nope"}, "127.0.0.1", SETTINGS, tokens).reason == "token_malformed"
    )
    assert identify({"Authorization": f"Basic {token}"}, "127.0.0.1", SETTINGS, tokens).reason == (
        "bad_authorization"
    )


def test_trust_follows_the_networks_and_reads_ipv4_mapped_peers() -> None:
    networks = SETTINGS.trusted_proxies
    assert is_trusted("::ffff:127.0.0.1", networks)
    assert not is_trusted("::1", networks)
    assert is_trusted("::1", (ipaddress.ip_network("::1/128"),))
    assert not is_trusted("fe80::1%eth0", networks)


def test_groups_split_and_map() -> None:
    assert split_groups(" a, b,,a ,c ") == ("a", "b", "c")
    assert role_of(["x", "analysts", "platform"], SETTINGS.group_roles) is Role.ADMIN
    assert role_of([], SETTINGS.group_roles) is None
