"""Roles by actions, every cell; per-job scope; read-only mode. Pure: no I/O."""

from __future__ import annotations

import pytest

from lib.web.identity import Identity
from lib.web.roles import MINIMUM_ROLE, Action, Role, authorize

# The permission model as the README states it, written out by hand so that a change to
# MINIMUM_ROLE shows up here as a failing cell. A = allowed, 401 / 403 = refused.
EXPECTED = {
    #            view   run    cancel pause  tokens audit
    "anonymous": ("401", "401", "401", "401", "401", "401"),
    "no role": ("403", "403", "403", "403", "403", "403"),
    "viewer": ("A", "403", "403", "403", "403", "403"),
    "operator": ("A", "A", "A", "A", "403", "403"),
    "admin": ("A", "A", "A", "A", "A", "A"),
}
ACTIONS = (Action.VIEW, Action.RUN, Action.CANCEL, Action.PAUSE, Action.MANAGE_TOKENS, Action.READ_AUDIT)
CELLS = [(who, action, row[i]) for who, row in EXPECTED.items() for i, action in enumerate(ACTIONS)]


def identity(who: str, jobs: tuple[str, ...] = ("*",)) -> Identity | None:
    if who == "anonymous":
        return None
    role = None if who == "no role" else Role(who)
    return Identity(name="alice", source="token", role=role, jobs=jobs)


@pytest.mark.parametrize("who,action,expected", CELLS, ids=[f"{w}-{a.value}" for w, a, _ in CELLS])
def test_every_role_action_cell(who: str, action: Action, expected: str) -> None:
    decision = authorize(identity(who), action, job="nightly")
    if expected == "A":
        assert decision.allowed and decision.http_status == 200 and decision.audit_result == "allowed"
    else:
        assert not decision.allowed
        assert decision.http_status == int(expected), decision
        assert decision.audit_result.startswith("denied:")
        assert decision.detail  # a sentence for the person


def test_the_table_covers_every_action() -> None:
    assert set(ACTIONS) == set(Action) == set(MINIMUM_ROLE)


def test_roles_are_ordered_and_parsed_with_a_did_you_mean() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert max([Role.OPERATOR, Role.ADMIN, Role.VIEWER]) is Role.ADMIN
    assert Role.parse("operator") is Role.OPERATOR
    with pytest.raises(ValueError, match="'operater' is not a role: did you mean 'operator'"):
        Role.parse("operater")


def test_a_refusal_names_its_reason() -> None:
    assert authorize(None, Action.VIEW).reason == "unauthenticated"
    assert authorize(identity("no role"), Action.VIEW).reason == "no_role"
    refused = authorize(identity("viewer"), Action.RUN, job="nightly")
    assert (refused.reason, refused.detail) == ("role", "run needs the operator role; alice is viewer")


@pytest.mark.parametrize("action", [Action.RUN, Action.CANCEL, Action.PAUSE])
def test_a_scoped_identity_reaches_only_the_jobs_its_globs_match(action: Action) -> None:
    sales = identity("operator", jobs=("sales_*", "finance"))
    assert authorize(sales, action, job="sales_daily").allowed
    assert authorize(sales, action, job="finance").allowed
    refused = authorize(sales, action, job="marketing")
    assert (refused.allowed, refused.reason, refused.http_status) == (False, "out_of_scope", 403)
    assert not authorize(sales, action, job="Sales_daily").allowed  # job names are case-sensitive


def test_a_scoped_identity_sees_the_list_and_its_jobs_but_not_others() -> None:
    sales = identity("viewer", jobs=("sales_*",))
    assert authorize(sales, Action.VIEW).allowed  # the list; the caller filters it with in_scope
    assert authorize(sales, Action.VIEW, job="sales_daily").allowed
    assert authorize(sales, Action.VIEW, job="marketing").reason == "out_of_scope"


@pytest.mark.parametrize("action", [Action.MANAGE_TOKENS, Action.READ_AUDIT])
def test_a_scoped_admin_may_not_take_the_actions_about_every_job(action: Action) -> None:
    assert authorize(identity("admin"), action).allowed
    assert authorize(identity("admin", jobs=("sales_*",)), action).reason == "out_of_scope"


def test_a_job_action_without_its_job_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="pass the job"):
        authorize(identity("admin"), Action.RUN)


@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
def test_read_only_refuses_every_mutation_even_to_an_admin_and_allows_reading(action: Action) -> None:
    decision = authorize(identity("admin"), action, job="nightly", read_only=True)
    if action in (Action.VIEW, Action.READ_AUDIT):
        assert decision.allowed
    else:
        assert (decision.allowed, decision.reason, decision.http_status) == (False, "read_only", 403)
    # Still 401 first: read-only says nothing to someone who has not signed in.
    assert authorize(None, action, job="nightly", read_only=True).http_status == 401
