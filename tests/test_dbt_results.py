"""lib/dbt_results.py on real dbt artifacts (tests/data/artifacts, made by
tests/data/artifacts/regenerate.py with dbt-core 1.11 + duckdb) and on small dicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lib.dbt_results import (
    dbt_counts,
    display_name,
    failed_nodes,
    load_node_results,
    normalize_status,
    parse_run_results,
    parse_sources,
    problem_nodes,
    short_message,
    skipped_nodes,
    summarize,
)
from lib.models import NodeResult, count_statuses

ARTIFACTS = Path(__file__).parent / "data" / "artifacts"
P = "fixture_shop"
NOT_NULL_ORDER_ID = f"test.{P}.not_null_stg_orders_order_id.81cfe2fe64"
ACCEPTED_STATUS = (
    f"test.{P}.accepted_values_stg_orders_status__placed__shipped__completed__returned.7511f2d274"
)
UNIT_VIP = f"unit_test.{P}.vip_customers.test_vip_customers"
RELATIONSHIPS = f"test.{P}.relationships_orders_customer_id__customer_id__ref_customers_.c6ec7f58f2"
UNIQUE_CUSTOMERS = f"test.{P}.unique_customers_customer_id.c5af1ff4b1"


def load(scenario: str, name: str) -> dict:
    return json.loads((ARTIFACTS / scenario / name).read_text())


# --- real artifacts ---------------------------------------------------------------------


def test_passing_build_has_one_warning_and_nothing_else_wrong() -> None:
    nodes = load_node_results(ARTIFACTS / "passing")
    assert nodes is not None
    assert count_statuses(nodes) == {
        "success": 10,
        "pass": 6,
        "fail": 0,
        "error": 0,
        "warn": 1,
        "skipped": 0,
        "total": 17,
    }
    assert dbt_counts(nodes) == {"PASS": 16, "WARN": 1, "ERROR": 0, "SKIP": 0, "TOTAL": 17}
    (warned,) = problem_nodes(nodes)
    assert warned.unique_id == ACCEPTED_STATUS
    assert warned.message == "Got 1 result, configured to warn if != 0"
    assert warned.failures == 1
    assert warned.resource_type == "test"
    assert summarize(nodes) == ""
    assert all(n.skipped_because == () for n in nodes)


def test_failing_build_statuses_in_dbt_order() -> None:
    nodes = load_node_results(ARTIFACTS / "failing")
    assert nodes is not None
    assert [(display_name(n.unique_id), n.resource_type, n.status) for n in nodes] == [
        ("raw_customers", "seed", "success"),
        ("raw_orders", "seed", "success"),
        ("stg_customers", "model", "success"),
        ("stg_orders", "model", "success"),
        ("not_null_stg_customers_customer_id", "test", "pass"),
        ("unique_stg_customers_customer_id", "test", "pass"),
        ("accepted_values_stg_orders_status__placed__shipped__completed__returned", "test", "warn"),
        ("not_null_stg_orders_order_id", "test", "fail"),
        ("customer_names", "model", "error"),
        ("vip_customers::test_vip_customers", "unit_test", "fail"),
        ("vip_customers", "model", "skipped"),
        ("orders", "model", "skipped"),
        ("customer_name_lengths", "model", "skipped"),
        ("vip_count", "model", "skipped"),
        ("customers", "model", "skipped"),
        ("relationships_orders_customer_id__customer_id__ref_customers_", "test", "skipped"),
        ("unique_customers_customer_id", "test", "skipped"),
    ]
    # The same numbers dbt printed: "Done. PASS=6 WARN=1 ERROR=3 SKIP=7 NO-OP=0 TOTAL=17".
    assert dbt_counts(nodes) == {"PASS": 6, "WARN": 1, "ERROR": 3, "SKIP": 7, "TOTAL": 17}


def test_failing_build_messages_are_clean() -> None:
    by_id = {n.unique_id: n for n in load_node_results(ARTIFACTS / "failing") or ()}
    test = by_id[NOT_NULL_ORDER_ID]
    assert (test.message, test.failures) == ("Got 3 results, configured to fail if != 0", 3)
    model = by_id[f"model.{P}.customer_names"]
    assert model.message is not None
    assert model.message.startswith("Runtime Error in model customer_names (models/customer_names.sql)")
    assert 'Referenced column "no_such_column" not found' in model.message
    assert model.failures is None
    unit = by_id[UNIT_VIP]
    # dbt writes the unit-test diff with colour codes and CRLFs into run_results.json.
    assert unit.message is not None
    assert "\x1b" not in unit.message and "\r" not in unit.message
    assert unit.message.startswith("actual differs from expected:")
    assert by_id[f"seed.{P}.raw_orders"].message == "INSERT 7"
    assert by_id[f"model.{P}.orders"].message is None
    assert by_id[f"model.{P}.orders"].execution_time == 0.0
    assert by_id[f"model.{P}.stg_orders"].execution_time > 0


def test_failing_build_skipped_because() -> None:
    nodes = load_node_results(ARTIFACTS / "failing") or ()
    assert {n.unique_id: n.skipped_because for n in skipped_nodes(nodes)} == {
        # a failing unit test stops its own model, and so its children
        f"model.{P}.vip_customers": (UNIT_VIP,),
        f"model.{P}.vip_count": (UNIT_VIP,),
        # a failing test on stg_orders skips stg_orders' descendants, though the test
        # is not in their parent_map ancestry
        f"model.{P}.orders": (NOT_NULL_ORDER_ID,),
        f"model.{P}.customers": (NOT_NULL_ORDER_ID,),
        RELATIONSHIPS: (NOT_NULL_ORDER_ID,),
        UNIQUE_CUSTOMERS: (NOT_NULL_ORDER_ID,),
        # a model error skips its descendants
        f"model.{P}.customer_name_lengths": (f"model.{P}.customer_names",),
    }
    assert all(n.skipped_because == () for n in nodes if n.status != "skipped")


def test_failing_build_summary() -> None:
    nodes = load_node_results(ARTIFACTS / "failing") or ()
    line = summarize(nodes)
    assert line == (
        "2 tests failed (not_null_stg_orders_order_id: Got 3 results, configured to fail if != 0; "
        "vip_customers::test_vip_customers: actual differs from expected), "
        "1 error (customer_names), 7 nodes skipped"
    )
    assert len(line) <= 200
    roomy = summarize(nodes, max_length=400)
    assert '1 error (customer_names: Binder Error: Referenced column "no_such_column"' in roomy


def test_without_manifest_nothing_explains_the_skips(tmp_path: Path) -> None:
    (tmp_path / "run_results.json").write_text((ARTIFACTS / "failing" / "run_results.json").read_text())
    nodes = load_node_results(tmp_path)
    assert nodes is not None
    assert len(skipped_nodes(nodes)) == 7
    assert all(n.skipped_because == () for n in nodes)
    # resource_type falls back to the unique_id prefix
    assert {n.resource_type for n in nodes} == {"seed", "model", "test", "unit_test"}
    assert parse_run_results(load("failing", "run_results.json"), None) == nodes


def test_full_untrimmed_manifest_gives_the_same_result() -> None:
    # The stored manifest is trimmed; the parser must not depend on what was cut.
    manifest = load("failing", "manifest.json")
    manifest["macros"] = {"macro.x.y": {"resource_type": "macro"}}
    manifest["sources"] = {}
    run_results = load("failing", "run_results.json")
    assert parse_run_results(run_results, manifest) == load_node_results(ARTIFACTS / "failing")


# --- load_node_results never raises ------------------------------------------------------


def test_missing_run_results_is_none(tmp_path: Path) -> None:
    assert load_node_results(tmp_path) is None
    assert load_node_results(tmp_path / "does-not-exist") is None


@pytest.mark.parametrize("content", ["", "{", "not json", "[]", "null", '"x"', "\xff\xfe"])
def test_unreadable_run_results_is_none(tmp_path: Path, content: str) -> None:
    (tmp_path / "run_results.json").write_text(content, encoding="latin-1")
    assert load_node_results(tmp_path) is None


def test_broken_manifest_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "run_results.json").write_text((ARTIFACTS / "failing" / "run_results.json").read_text())
    (tmp_path / "manifest.json").write_text('{"nodes": ')
    nodes = load_node_results(tmp_path)
    assert nodes is not None and len(nodes) == 17
    assert all(n.skipped_because == () for n in nodes)


def test_run_results_without_results_is_empty(tmp_path: Path) -> None:
    (tmp_path / "run_results.json").write_text('{"metadata": {}}')
    assert load_node_results(tmp_path) == ()


# --- parse_run_results on small dicts ------------------------------------------------------


def result(unique_id: str, status: object = "success", **extra: object) -> dict:
    return {"unique_id": unique_id, "status": status, "message": None, "failures": None, **extra}


def causes(results: list[dict], parent_map: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    nodes = parse_run_results({"results": results}, {"parent_map": parent_map})
    return {n.unique_id: n.skipped_because for n in nodes if n.status == "skipped"}


def test_junk_entries_are_ignored() -> None:
    nodes = parse_run_results(
        {"results": [None, 3, {"status": "success"}, {"unique_id": 5}, result("model.p.a")]}, None
    )
    assert [n.unique_id for n in nodes] == ["model.p.a"]
    assert parse_run_results({"results": "nope"}, None) == ()
    assert parse_run_results({}, None) == ()


def test_field_types_are_checked() -> None:
    (node,) = parse_run_results(
        {"results": [result("test.p.t.0123456789", "fail", failures=2.0, execution_time="1.5", message="")]},
        {"nodes": {"test.p.t.0123456789": {"resource_type": "test"}}},
    )
    assert node == NodeResult(
        unique_id="test.p.t.0123456789",
        status="fail",
        message=None,
        failures=2,
        execution_time=0.0,
        resource_type="test",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("success", "success"),
        ("PASS", "pass"),
        ("Fail", "fail"),
        ("error", "error"),
        ("warn", "warn"),
        ("skipped", "skipped"),
        ("runtime error", "error"),
        ("Runtime  Error", "error"),
        ("partial success", "error"),
        ("no-op", "success"),
        ("reused", "success"),
        (None, "error"),
        ("", "error"),
        (3, "error"),
        ("brand-new-status", "brand-new-status"),
    ],
)
def test_normalize_status(raw: object, expected: str) -> None:
    assert normalize_status(raw) == expected


def test_partial_success_keeps_its_word_in_the_message() -> None:
    (node,) = parse_run_results(
        {"results": [result("model.p.m", "partial success", message="2 of 3 batches failed")]}, None
    )
    assert (node.status, node.message) == ("error", "partial success: 2 of 3 batches failed")


def test_errored_model_skips_its_descendants_only() -> None:
    parent_map = {
        "model.p.a": [],
        "model.p.b": ["model.p.a"],
        "model.p.c": ["model.p.b"],
        "model.p.x": [],
        "model.p.y": ["model.p.x"],
    }
    results = [
        result("model.p.a"),
        result("model.p.x", "error"),
        result("model.p.b", "error"),
        result("model.p.c", "skipped"),
        result("model.p.y", "skipped"),
    ]
    assert causes(results, parent_map) == {"model.p.c": ("model.p.b",), "model.p.y": ("model.p.x",)}


def test_failing_test_skips_descendants_but_not_sibling_tests() -> None:
    parent_map = {
        "model.p.m": [],
        "model.p.child": ["model.p.m"],
        "model.p.other": ["model.p.z"],
        "model.p.z": [],
        "test.p.t_fail.0000000001": ["model.p.m"],
        # another test on m (it also tests z, which is irrelevant here) — skipped only
        # because its other parent's upstream failed
        "test.p.t_sib.0000000002": ["model.p.m", "model.p.other"],
        "test.p.t_child.0000000003": ["model.p.child"],
    }
    results = [
        result("model.p.m"),
        result("model.p.z", "error"),
        result("test.p.t_fail.0000000001", "fail"),
        result("model.p.child", "skipped"),
        result("model.p.other", "skipped"),
        result("test.p.t_sib.0000000002", "skipped"),
        result("test.p.t_child.0000000003", "skipped"),
    ]
    assert causes(results, parent_map) == {
        "model.p.child": ("test.p.t_fail.0000000001",),
        "model.p.other": ("model.p.z",),
        # m's own tests run beside t_fail: they are not skipped because of it
        "test.p.t_sib.0000000002": ("model.p.z",),
        "test.p.t_child.0000000003": ("test.p.t_fail.0000000001",),
    }


def test_multi_parent_test_needs_all_its_parents_upstream() -> None:
    # dbt build adds test → node edges only when the node's ancestors cover all of the
    # test's parents (Linker.add_test_edges).
    parent_map = {
        "model.p.a": [],
        "model.p.b": [],
        "model.p.only_a": ["model.p.a"],
        "model.p.both": ["model.p.a", "model.p.b"],
        "test.p.rel.0000000009": ["model.p.a", "model.p.b"],
        "model.p.z": [],
        "model.p.only_z": ["model.p.z"],
    }
    results = [
        result("model.p.a"),
        result("model.p.b"),
        result("model.p.z", "error"),
        result("test.p.rel.0000000009", "fail"),
        result("model.p.both", "skipped"),
        # skipped for another reason (here: z); rel does not reach it
        result("model.p.only_z", "skipped"),
        result("model.p.only_a", "skipped"),
    ]
    assert causes(results, parent_map) == {
        "model.p.both": ("test.p.rel.0000000009",),
        "model.p.only_z": ("model.p.z",),
        "model.p.only_a": (),
    }


def test_several_causes_in_dbt_order() -> None:
    parent_map = {
        "model.p.a": [],
        "model.p.b": [],
        "test.p.t.0000000001": ["model.p.a"],
        "model.p.c": ["model.p.a", "model.p.b"],
    }
    results = [
        result("model.p.b", "error"),
        result("model.p.a"),
        result("test.p.t.0000000001", "fail"),
        result("model.p.c", "skipped"),
    ]
    assert causes(results, parent_map) == {"model.p.c": ("model.p.b", "test.p.t.0000000001")}


def test_warnings_never_cause_skips() -> None:
    parent_map = {"model.p.a": [], "test.p.t.0000000001": ["model.p.a"], "model.p.b": ["model.p.a"]}
    results = [result("model.p.a"), result("test.p.t.0000000001", "warn"), result("model.p.b", "skipped")]
    assert causes(results, parent_map) == {"model.p.b": ()}


def test_cyclic_or_incomplete_parent_map_does_not_hang() -> None:
    parent_map = {"model.p.a": ["model.p.b"], "model.p.b": ["model.p.a"], "model.p.c": "junk"}
    results = [result("model.p.a", "error"), result("model.p.b", "skipped"), result("model.p.c", "skipped")]
    assert causes(results, parent_map) == {"model.p.b": ("model.p.a",), "model.p.c": ()}


def test_deep_dag_does_not_recurse() -> None:
    depth = 5000
    parent_map = {f"model.p.m{i}": ([f"model.p.m{i - 1}"] if i else []) for i in range(depth)}
    results = [result("model.p.m0", "error")] + [result(f"model.p.m{i}", "skipped") for i in range(1, depth)]
    found = causes(results, parent_map)
    assert found[f"model.p.m{depth - 1}"] == ("model.p.m0",)


# --- helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unique_id", "expected"),
    [
        ("model.shop.orders", "orders"),
        ("test.shop.not_null_orders_id.81cfe2fe64", "not_null_orders_id"),
        ("test.shop.my_singular_test", "my_singular_test"),
        ("unit_test.shop.vip.test_vip", "vip::test_vip"),
        ("model.shop.dim.v2", "dim.v2"),
        ("source.shop.raw.orders", "raw.orders"),
        ("odd", "odd"),
        ("", ""),
    ],
)
def test_display_name(unique_id: str, expected: str) -> None:
    assert display_name(unique_id) == expected


def test_short_message() -> None:
    assert short_message(None) == ""
    assert short_message("  \n ") == ""
    assert short_message("Got 3 results, configured to fail if != 0") == (
        "Got 3 results, configured to fail if != 0"
    )
    header = 'Database Error in model m (models/m.sql)\n  relation "x" does not exist\n  LINE 1'
    assert short_message(header) == 'relation "x" does not exist'
    assert short_message("\x1b[31mboom\x1b[0m:\r\nmore") == "boom"
    assert short_message("x" * 200, limit=10) == "x" * 9 + "…"


def test_node_filters() -> None:
    nodes = [NodeResult(f"model.p.{s}", s) for s in ("success", "warn", "fail", "error", "skipped", "pass")]
    assert [n.status for n in problem_nodes(nodes)] == ["warn", "fail", "error"]
    assert [n.status for n in failed_nodes(nodes)] == ["fail", "error"]
    assert [n.status for n in skipped_nodes(nodes)] == ["skipped"]


def test_summarize_nothing_wrong_or_only_warnings() -> None:
    assert summarize([]) == ""
    assert summarize([NodeResult("model.p.a", "success"), NodeResult("test.p.t", "warn", "meh")]) == ""


def test_summarize_only_skips() -> None:
    # e.g. an on-run-start hook failed or --fail-fast stopped the run
    assert summarize([NodeResult("model.p.a", "skipped")]) == "1 node skipped"


def test_summarize_truncates_with_and_n_more() -> None:
    nodes = [
        NodeResult(f"model.p.model_number_{i}", "error", f"Runtime Error in model x\n  boom number {i}")
        for i in range(20)
    ]
    line = summarize(nodes)
    assert len(line) <= 200
    assert line.startswith("20 errors (model_number_0: boom number 0; model_number_1: boom number 1; ")
    # once no full item fits, a last one may still fit by name alone
    shown = line.count("model_number_")
    assert line.endswith(f"; …, and {20 - shown} more)")
    assert line.count("boom number") in (shown, shown - 1)


def test_summarize_falls_back_to_names_then_counts() -> None:
    nodes = [NodeResult("model.p.a", "error", "x" * 300), NodeResult("test.p.t.0123456789", "fail", "y")]
    assert summarize(nodes, max_length=60) == "1 test failed (t: y), 1 error (a)"
    assert summarize(nodes, max_length=32) == "1 test failed (t: y), 1 error"
    assert summarize(nodes, max_length=10) == "1 test fa…"


# --- every command's artifacts ------------------------------------------------------------


def test_nodes_of_every_command_in_order_each_with_its_command(tmp_path: Path) -> None:
    """run_commands.sh keeps run_results.<i>.json per command: all are read, not
    only run_results.json (the last command's)."""
    shutil.copy(ARTIFACTS / "passing" / "run_results.json", tmp_path / "run_results.1.json")
    shutil.copy(ARTIFACTS / "failing" / "run_results.json", tmp_path / "run_results.2.json")
    shutil.copy(ARTIFACTS / "failing" / "run_results.json", tmp_path / "run_results.json")
    shutil.copy(ARTIFACTS / "failing" / "manifest.json", tmp_path / "manifest.json")
    nodes = load_node_results(tmp_path)
    assert nodes is not None
    first = load_node_results(ARTIFACTS / "passing") or ()
    second = load_node_results(ARTIFACTS / "failing") or ()
    assert len(nodes) == len(first) + len(second)
    assert [n.command for n in nodes] == [1] * len(first) + [2] * len(second)
    assert [n.unique_id for n in nodes] == [n.unique_id for n in (*first, *second)]
    # skip causes are worked out per command
    skipped = [n for n in nodes if n.status == "skipped"]
    assert skipped and all(n.command == 2 and n.skipped_because for n in skipped)


def test_a_command_that_wrote_nothing_leaves_the_others(tmp_path: Path) -> None:
    # command 2 died early (dbt-core #5625): no run_results.2.json
    shutil.copy(ARTIFACTS / "passing" / "run_results.json", tmp_path / "run_results.1.json")
    shutil.copy(ARTIFACTS / "passing" / "run_results.json", tmp_path / "run_results.3.json")
    nodes = load_node_results(tmp_path) or ()
    assert {n.command for n in nodes} == {1, 3}


# --- sources.json (dbt source freshness) ------------------------------------------------------

FRESHNESS = ARTIFACTS / "freshness"


def test_real_sources_json_pass_warn_error_and_runtime_error_from_the_log() -> None:
    """Real dbt 1.11 output (regenerate_freshness.py). The runtime error is not in
    sources.json (dbt 1.11 drops it) and comes from the freshness command's log."""
    nodes = load_node_results(FRESHNESS)
    assert nodes is not None
    by_id = {n.unique_id: n for n in nodes}
    assert {uid: n.status for uid, n in by_id.items()} == {
        "source.shop.raw.raw_orders": "warn",
        "source.shop.raw.raw_customers": "error",
        "source.shop.raw.orders_fresh": "pass",
        "source.shop.raw.missing": "error",
    }
    assert all(n.resource_type == "source" for n in nodes)
    orders = by_id["source.shop.raw.raw_orders"]
    assert orders.freshness is not None
    assert orders.freshness.max_loaded_at == "2025-11-27T00:00:00+00:00"
    assert (orders.freshness.warn_after, orders.freshness.error_after) == ("1 day", None)
    assert orders.freshness.age_s and orders.freshness.age_s > 86400
    assert orders.message is not None
    assert orders.message.startswith("max_loaded_at 2025-11-27T00:00:00+00:00 (")
    assert orders.message.endswith("ago); warn after 1 day")
    customers = by_id["source.shop.raw.raw_customers"]
    assert customers.message and customers.message.endswith("warn after 1 day, error after 2 days")
    missing = by_id["source.shop.raw.missing"]
    assert missing.freshness is None
    assert missing.message and missing.message.startswith(
        "Catalog Error: Table with name missing does not exist"
    )
    assert display_name(missing.unique_id) == "raw.missing"
    assert summarize(nodes).startswith("2 errors (raw.raw_customers: max_loaded_at 2025-06-28")


def test_sources_runtime_error_as_older_dbt_writes_it() -> None:
    sources = {
        "results": [
            {"unique_id": "source.p.raw.a", "status": "runtime error", "error": "Database Error\n  denied"},
            {"unique_id": "source.p.raw.b", "status": "pass", "criteria": {}, "max_loaded_at": "x"},
            {"status": "pass"},
            "junk",
        ]
    }
    a, b = parse_sources(sources, command=2)
    assert (a.status, a.message, a.command, a.freshness) == ("error", "Database Error\n  denied", 2, None)
    assert b.freshness is not None and b.message == "max_loaded_at x; no threshold"
    assert parse_sources({"results": "no"}) == ()


def test_freshness_then_build_keeps_both_commands_nodes(tmp_path: Path) -> None:
    """`dbt source freshness` (command 1, allowed to fail) then `dbt build` (command 2)."""
    shutil.copy(FRESHNESS / "sources.json", tmp_path / "sources.1.json")
    shutil.copy(FRESHNESS / "manifest.json", tmp_path / "manifest.json")
    shutil.copy(ARTIFACTS / "passing" / "run_results.json", tmp_path / "run_results.2.json")
    log = (FRESHNESS / "run.log").read_text().replace("[run_commands] EXIT 1\n", "")
    log += "[run_commands] STEP command 2/2: dbt build\n12:00:00  Done.\n[run_commands] EXIT 0\n"
    (tmp_path / "run.log").write_text(log)
    nodes = load_node_results(tmp_path) or ()
    sources = [n for n in nodes if n.resource_type == "source"]
    assert len(sources) == 4 and all(n.command == 1 for n in sources)
    assert {n.command for n in nodes if n.resource_type != "source"} == {2}
    assert nodes.index(sources[-1]) < min(i for i, n in enumerate(nodes) if n.command == 2)
