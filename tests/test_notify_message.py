"""The Alert built from a real failing run's report.json data and manifest."""

from __future__ import annotations

import json

import pytest

from lib.notify.message import build_alert, failure_key, node_line, plain_text, truncate
from lib.secrets import SecretMasker
from tests.notify_helpers import SECRET, failing_alert, failing_report


def test_alert_names_the_failed_test_and_what_it_skipped() -> None:
    alert = failing_alert()
    by_name = {node.name: node for node in alert.nodes}
    test = by_name["not_null_stg_orders_order_id"]
    assert (test.status, test.resource_type, test.failures) == ("fail", "test", 3)
    assert test.skipped_count == 4
    assert set(test.skipped_first) <= {
        "orders",
        "customers",
        "relationships_orders_customer_id__customer_id__ref_customers_",
        "unique_customers_customer_id",
    }
    assert len(test.skipped_first) == 3
    assert "and 1 more" in node_line(test)
    assert by_name["customer_names"].skipped_first == ("customer_name_lengths",)
    # Only error/fail/warn nodes; skipped ones appear under their cause.
    assert {n.status for n in alert.nodes} == {"fail", "error", "warn"}
    assert alert.counts["fail"] == 2 and alert.counts["skipped"] == 7
    assert (alert.job, alert.outcome, alert.target, alert.trigger, alert.triggered_by) == (
        "nightly",
        "failed",
        "prod",
        "manual",
        "ada",
    )
    assert alert.run_url == "https://dbt.example.com/runs/nightly-20261202T020000Z"
    assert alert.log_url.startswith("https://eu-west-1.console.aws.amazon.com/cloudwatch/")


def test_owners_come_from_meta_config_meta_and_the_group() -> None:
    alert = failing_alert()
    by_name = {node.name: node for node in alert.nodes}
    assert by_name["not_null_stg_orders_order_id"].owners == ("orders-team@example.com",)
    assert by_name["customer_names"].owners == ("grace", "ada", "CRM squad")
    assert alert.owners == ("orders-team@example.com", "grace", "ada", "CRM squad")


def test_secrets_are_masked_everywhere_in_the_alert() -> None:
    report = failing_report()
    report["nodes"][0]["message"] = f"connect failed for token {SECRET}"
    alert = build_alert("failed", report, mask=SecretMasker([SECRET]))
    text = json.dumps(alert.report) + plain_text(alert) + repr(alert)
    assert SECRET not in text
    assert "***" in alert.reason or "*" in alert.reason


def test_the_same_failure_has_the_same_key_and_a_different_one_does_not() -> None:
    first = failing_alert()
    second = build_alert("failed", failing_report(run_id="nightly-2"), mask=SecretMasker([SECRET]))
    assert first.failure_key == second.failure_key
    report = failing_report(run_id="nightly-3")
    report["nodes"] = [n for n in report["nodes"] if n["name"] != "customer_names"]
    assert build_alert("failed", report, mask=SecretMasker()).failure_key != first.failure_key
    assert failure_key("a", "timed_out", [], "over 1h") != failure_key("a", "timed_out", [], "over 2h")


def test_recovered_carries_how_long_and_the_key_it_resolves() -> None:
    report = failing_report(outcome="succeeded", nodes=[])
    alert = build_alert(
        "recovered",
        report,
        mask=SecretMasker(),
        broken_for_s=3 * 86400 + 60,
        failed_runs=3,
        resolves_key="k1",
    )
    assert alert.failure_key == "k1"
    assert "Broken for: 3d 1m" in plain_text(alert) and "Failed runs: 3" in plain_text(alert)


def test_truncate_says_how_much_was_cut() -> None:
    cut = truncate("x" * 5000, 3000)
    assert len(cut) == 3000 and cut.endswith(f"({5000 - cut.index('…')} chars cut)")
    assert truncate("short", 3000) == "short"


def test_unknown_event_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown alert event 'exploded'"):
        build_alert("exploded", failing_report(), mask=SecretMasker())
