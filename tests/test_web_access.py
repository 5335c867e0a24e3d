"""The request gate: identify, authorize, audit — against a real history.db."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lib.history import History
from lib.models import WebSettings
from lib.web.access import Gate
from lib.web.audit import AuditLog
from lib.web.roles import Action, Role
from lib.web.tokens import TokenStore
from tests.fakes import FakeClock

SETTINGS = WebSettings(
    trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
    group_roles={"data-eng": "operator", "analysts": "viewer"},
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 9, tzinfo=UTC))


@pytest.fixture
def gate(tmp_path: Path, clock: FakeClock) -> Gate:
    history = History(tmp_path / "history.db")
    return Gate(SETTINGS, TokenStore(history, clock), AuditLog(history, clock))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_allowed_run_is_audited_once_done_with_its_run_id(gate: Gate) -> None:
    token, _ = gate.tokens.create("ci-bot", Role.OPERATOR)
    for done, run_id in enumerate(("r1", "r2")):
        checked = gate.check(bearer(token), "10.1.1.1", Action.RUN, job="nightly")
        assert checked.allowed and checked.identity is not None
        assert checked.identity.triggered_by == "ci-bot"
        assert len(gate.audit.query()) == done  # not before it was carried out
        gate.done(checked, "10.1.1.1", Action.RUN, job="nightly", run_id=run_id)
    rows = [(e.user, e.source, e.action, e.job, e.run_id, e.result, e.peer) for e in gate.audit.query()]
    assert rows == [
        ("ci-bot", "token", "run", "nightly", "r2", "allowed", "10.1.1.1"),
        ("ci-bot", "token", "run", "nightly", "r1", "allowed", "10.1.1.1"),
    ]


def test_a_mutation_that_failed_is_audited_as_an_error(gate: Gate) -> None:
    checked = gate.check(
        {"X-Forwarded-User": "dora", "X-Forwarded-Groups": "data-eng"},
        "127.0.0.1",
        Action.CANCEL,
        job="nightly",
    )
    assert checked.allowed
    gate.done(
        checked, "127.0.0.1", Action.CANCEL, job="nightly", run_id="r9", error="run r9 already finished"
    )
    [entry] = gate.audit.query()
    assert (entry.user, entry.source, entry.result, entry.detail) == (
        "dora",
        "proxy",
        "error",
        "run r9 already finished",
    )


def test_reading_that_is_allowed_is_not_audited(gate: Gate) -> None:
    checked = gate.check(
        {"X-Forwarded-User": "ann", "X-Forwarded-Groups": "analysts"}, "127.0.0.1", Action.VIEW
    )
    assert checked.allowed
    gate.done(checked, "127.0.0.1", Action.VIEW)
    assert gate.audit.query() == []


def test_spoofed_proxy_headers_are_refused_and_audited_as_such(gate: Gate) -> None:
    spoofed = {"X-Forwarded-User": "admin", "X-Forwarded-Groups": "data-eng"}
    for _ in range(2):
        checked = gate.check(spoofed, "192.168.7.7", Action.RUN, job="nightly")
        assert (checked.allowed, checked.http_status, checked.identity) == (False, 401, None)
    entries = gate.audit.query()
    assert [(e.user, e.source, e.result, e.peer, e.job) for e in entries] == [
        (None, "anonymous", "denied:untrusted_proxy", "192.168.7.7", "nightly")
    ] * 2


def test_each_refusal_has_its_reason_in_the_log(gate: Gate, clock: FakeClock) -> None:
    viewer, _ = gate.tokens.create("vic", Role.VIEWER)
    expiring, _ = gate.tokens.create("exp", Role.ADMIN, expires_in=60)
    revoked, info = gate.tokens.create("rev", Role.ADMIN)
    gate.tokens.revoke(info.id)
    clock.advance(61)
    assert gate.check(bearer(viewer), "10.0.0.1", Action.RUN, job="nightly").http_status == 403
    assert gate.check(bearer(expiring), "10.0.0.1", Action.READ_AUDIT).http_status == 401
    assert gate.check(bearer(revoked), "10.0.0.1", Action.READ_AUDIT).http_status == 401
    assert gate.check({}, "10.0.0.1", Action.VIEW).http_status == 401
    no_role = {"X-Forwarded-User": "sam", "X-Forwarded-Groups": "sales"}
    assert gate.check(no_role, "127.0.0.1", Action.VIEW).http_status == 403
    assert [(e.user, e.result) for e in reversed(gate.audit.query())] == [
        ("vic", "denied:role"),
        (None, "denied:token_expired"),
        (None, "denied:token_revoked"),
        (None, "denied:unauthenticated"),
        ("sam", "denied:no_role"),
    ]
    for token in (viewer, expiring, revoked):
        assert token[14:] not in str([e.as_json() for e in gate.audit.query()])


def test_read_only_refuses_mutations_to_everyone_and_says_so(gate: Gate) -> None:
    gate.settings = replace(SETTINGS, read_only=True)
    token, _ = gate.tokens.create("root", Role.ADMIN)
    for action, job in ((Action.RUN, "nightly"), (Action.PAUSE, "nightly"), (Action.MANAGE_TOKENS, None)):
        checked = gate.check(bearer(token), "10.0.0.1", action, job=job)
        assert (checked.allowed, checked.http_status, checked.decision.reason) == (False, 403, "read_only")
    assert gate.check(bearer(token), "10.0.0.1", Action.READ_AUDIT).allowed
    assert {e.result for e in gate.audit.query()} == {"denied:read_only"}


def test_a_browser_session_follows_its_token(gate: Gate) -> None:
    _, info = gate.tokens.create("bea", Role.OPERATOR)
    checked = gate.check({}, "10.0.0.2", Action.RUN, job="nightly", session_token=info.id)
    assert checked.allowed and checked.identity is not None and checked.identity.source == "session"
    gate.tokens.revoke(info.id)
    again = gate.check({}, "10.0.0.2", Action.RUN, job="nightly", session_token=info.id)
    assert (again.http_status, again.anonymous_reason) == (401, "token_revoked")
    # A bearer token in the same request wins over the cookie.
    other, _ = gate.tokens.create("bob", Role.OPERATOR)
    via = gate.check(bearer(other), "10.0.0.2", Action.RUN, job="nightly", session_token=info.id)
    assert via.allowed and via.identity is not None and via.identity.name == "bob"
