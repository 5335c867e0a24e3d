"""dbt's run_results.json / sources.json (+ manifest.json) → per-node results and a one-line reason.

Everything here but `load_node_results` is a pure function over plain dicts, so the
tests feed it both real artifacts (tests/data/artifacts/) and hand-written ones.

A job runs several dbt commands; run_commands.sh keeps each one's artifacts in the
run folder as `run_results.<i>.json` and `sources.<i>.json` (1-based) besides the
last command's `run_results.json` / `sources.json`. The nodes of a run are those of
every command, in command order, each tagged with its command's number.

What a skipped node was skipped *because of* is not in run_results.json: dbt only
writes `"status": "skipped"`. We rebuild it from the manifest's `parent_map` the way
`dbt build` decides what to skip (see `parse_run_results`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lib.dbt_log import freshness_runtime_errors, split_by_command
from lib.durations import format_duration
from lib.models import Freshness, NodeResult, count_statuses, display_name

# The statuses dbt writes (NodeStatus / RunStatus / TestStatus / FreshnessStatus).
KNOWN_STATUSES = ("success", "pass", "fail", "error", "warn", "skipped")
PROBLEM_STATUSES = frozenset({"fail", "error", "warn"})
# A node in one of these states makes `dbt build` skip what depends on it.
FAILED_STATUSES = frozenset({"fail", "error"})
TEST_TYPES = frozenset({"test", "unit_test"})

# Other words dbt has used or still uses, mapped onto the six above.
_STATUS_ALIASES = {
    "runtime error": "error",  # NodeStatus.RuntimeErr: source freshness, older dbt
    "runtimeerr": "error",
    "partial success": "error",  # microbatch model with some failed batches: dbt exits 1
    "no-op": "success",  # nothing to do (e.g. saved queries without exports)
    "reused": "success",  # dbt ≥ 1.10 state-aware reuse of an unchanged node
    "skip": "skipped",
    "ok": "success",
}
# Manifest sections whose entries can appear in run_results.json.
_MANIFEST_SECTIONS = ("nodes", "unit_tests", "sources", "exposures", "functions")
# dbt colours some messages even in run_results.json (unit-test diffs do).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# "Runtime Error in model x (models/x.sql)": a header; the real cause is on the next line.
_ERROR_HEADER = re.compile(r"^[A-Z][A-Za-z ]*Error in [a-z_]+ \S+")

SUMMARY_MAX_LENGTH = 200
_ITEM_MESSAGE_LENGTH = 80


def strip_ansi(text: str) -> str:
    """`text` without terminal colour codes, with CRLF line ends made LF."""
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def normalize_status(raw: object) -> str:
    """dbt's status word in lower case, with dbt's rarer words mapped onto
    success/pass/fail/error/warn/skipped ("runtime error" → error, "partial success"
    → error, "no-op"/"reused" → success). A missing status is an error; any other
    unknown word is kept as is (lower-cased) rather than guessed at."""
    if not isinstance(raw, str) or not raw.strip():
        return "error"
    word = " ".join(raw.strip().lower().split())
    return _STATUS_ALIASES.get(word, word)


def short_message(message: str | None, limit: int = _ITEM_MESSAGE_LENGTH) -> str:
    """The one line of a dbt message that says what went wrong, at most `limit` chars.

    dbt's errors open with a header such as "Runtime Error in model x (models/x.sql)"
    and give the cause on the next line; the cause is the more useful one."""
    if not message:
        return ""
    lines = [line.strip() for line in strip_ansi(message).splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[1] if len(lines) > 1 and _ERROR_HEADER.match(lines[0]) else lines[0]
    line = line.removesuffix(":").rstrip() or line  # "actual differs from expected:" + a diff
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _resource_type(unique_id: str, manifest: Mapping[str, Any] | None) -> str:
    if manifest:
        for section in _MANIFEST_SECTIONS:
            node = (manifest.get(section) or {}).get(unique_id)
            if isinstance(node, Mapping) and isinstance(node.get("resource_type"), str):
                return node["resource_type"]
    return unique_id.split(".", 1)[0] if "." in unique_id else ""


def _optional_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _result_entries(document: object) -> list[Mapping[str, Any]]:
    """The well-formed entries of an artifact's `results` (each a mapping with a string
    `unique_id`); [] when the document or its list is malformed."""
    raw_results = document.get("results") if isinstance(document, Mapping) else None
    if not isinstance(raw_results, list):
        return []
    return [r for r in raw_results if isinstance(r, Mapping) and isinstance(r.get("unique_id"), str)]


def parse_run_results(
    run_results: Mapping[str, Any],
    manifest: Mapping[str, Any] | None = None,
    command: int | None = None,
) -> tuple[NodeResult, ...]:
    """One `NodeResult` per entry of run_results.json's `results`, in dbt's order.

    Statuses go through `normalize_status`; messages lose dbt's colour codes and
    surrounding blank lines. `resource_type` comes from the manifest when given,
    else from the unique_id's prefix. Entries that are not objects with a string
    `unique_id` are ignored, so a half-written or foreign file never raises.

    Each skipped node gets `skipped_because`: the failed/errored nodes that made
    `dbt build` skip it, traced to the root cause (not the skipped parents in
    between). With the manifest's `parent_map`, a failed node F caused skipped S when

    - F is an ancestor of S (a model that errored, everything below it is skipped);
    - F is a data test, and every node F tests is an ancestor of S — or, when S is
      itself a test, an ancestor of one of S's non-test parents. dbt build adds an
      edge from a test to each downstream node whose ancestors cover all the test's
      parents (dbt-core `Linker.add_test_edges`), so a failing not_null test on M
      skips M's children but not the other tests on M;
    - F is a unit test of model M, and M is S or an ancestor of S (a failing unit
      test stops its model from being built).

    Without a manifest (or parent_map) `skipped_because` stays empty. Every node gets
    `command` (which of the job's commands wrote the file; None when unknown).
    """
    nodes: list[NodeResult] = []
    for raw in _result_entries(run_results):
        unique_id = raw["unique_id"]
        raw_status = raw.get("status")
        status = normalize_status(raw_status)
        raw_message = raw.get("message")
        message = strip_ansi(raw_message).strip() if isinstance(raw_message, str) else ""
        message = message or None
        if isinstance(raw_status, str) and raw_status.strip().lower() == "partial success":
            message = f"partial success: {message}" if message else "partial success"
        nodes.append(
            NodeResult(
                unique_id=unique_id,
                status=status,
                message=message,
                failures=_optional_int(raw.get("failures")),
                execution_time=_seconds(raw.get("execution_time")),
                resource_type=_resource_type(unique_id, manifest),
                command=command,
            )
        )
    parent_map = manifest.get("parent_map") if isinstance(manifest, Mapping) else None
    if not isinstance(parent_map, Mapping):
        return tuple(nodes)
    return tuple(_with_skip_causes(nodes, parent_map))


def _with_skip_causes(nodes: list[NodeResult], parent_map: Mapping[str, Any]) -> list[NodeResult]:
    failed = [n for n in nodes if n.status in FAILED_STATUSES]
    if not failed or not any(n.status == "skipped" for n in nodes):
        return nodes
    types = {n.unique_id: n.resource_type for n in nodes}
    ancestors_of = _AncestorIndex(parent_map)

    def is_test(unique_id: str) -> bool:
        return types.get(unique_id, unique_id.split(".", 1)[0]) in TEST_TYPES

    out: list[NodeResult] = []
    for node in nodes:
        if node.status != "skipped":
            out.append(node)
            continue
        own_ancestors = ancestors_of(node.unique_id)
        # The non-test nodes whose ancestry decides which failing tests reach `node`.
        if is_test(node.unique_id):
            anchors = [p for p in ancestors_of.parents(node.unique_id) if not is_test(p)]
        else:
            anchors = [node.unique_id]
        causes: list[str] = []
        for culprit in failed:
            uid = culprit.unique_id
            tested = ancestors_of.parents(uid)
            if uid in own_ancestors:
                causes.append(uid)
            elif culprit.resource_type == "unit_test":
                if tested and all(t == node.unique_id or t in own_ancestors for t in tested):
                    causes.append(uid)
            elif is_test(uid) and tested and any(set(tested) <= ancestors_of(anchor) for anchor in anchors):
                causes.append(uid)
        out.append(_replace_causes(node, tuple(causes)))
    return out


def _replace_causes(node: NodeResult, causes: tuple[str, ...]) -> NodeResult:
    return replace(node, skipped_because=causes) if causes else node


class _AncestorIndex:
    """Transitive ancestors from a manifest parent_map, computed once per node."""

    def __init__(self, parent_map: Mapping[str, Any]) -> None:
        self._parent_map = parent_map
        self._cache: dict[str, frozenset[str]] = {}

    def parents(self, unique_id: str) -> tuple[str, ...]:
        raw = self._parent_map.get(unique_id)
        if not isinstance(raw, list):
            return ()
        return tuple(p for p in raw if isinstance(p, str))

    def __call__(self, unique_id: str) -> frozenset[str]:
        cached = self._cache.get(unique_id)
        if cached is not None:
            return cached
        # Iterative walk: a big project's DAG can be deeper than Python's recursion limit.
        seen: set[str] = set()
        stack = list(self.parents(unique_id))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            known = self._cache.get(current)
            if known is not None:
                seen |= known
                continue
            stack.extend(self.parents(current))
        seen.discard(unique_id)  # a cycle (malformed map) must not make a node its own ancestor
        result = frozenset(seen)
        self._cache[unique_id] = result
        return result


def _threshold(raw: object) -> str | None:
    """dbt's `{"count": 1, "period": "day"}` as "1 day"; None when not configured."""
    if not isinstance(raw, Mapping):
        return None
    count, period = _optional_int(raw.get("count")), raw.get("period")
    if count is None or not isinstance(period, str) or not period:
        return None
    return f"{count} {period if count == 1 else period + 's'}"


def freshness_message(freshness: Freshness) -> str:
    """`max_loaded_at 2025-11-27T00:00:00+00:00 (370d 14h ago); warn after 1 day,
    error after 2 days`: what was measured against what was allowed."""
    loaded = freshness.max_loaded_at or "unknown"
    if freshness.age_s is not None:
        loaded += f" ({format_duration(freshness.age_s)} ago)"
    limits = [
        f"{name} after {value}"
        for name, value in (("warn", freshness.warn_after), ("error", freshness.error_after))
        if value
    ]
    return f"max_loaded_at {loaded}; " + (", ".join(limits) if limits else "no threshold")


def parse_sources(
    sources: Mapping[str, Any],
    manifest: Mapping[str, Any] | None = None,
    command: int | None = None,
) -> tuple[NodeResult, ...]:
    """One `NodeResult` per entry of sources.json (`dbt source freshness`), in dbt's order.

    Status pass / warn / error (stale beyond error_after) as dbt wrote it; "runtime
    error" (the freshness query raised) becomes error with dbt's error as message.
    A measured source carries `freshness` (max_loaded_at, age, warn_after /
    error_after) and a message saying the same, so a stale source can be fixed from
    the report. Malformed entries are ignored, as in `parse_run_results`.
    """
    nodes: list[NodeResult] = []
    for raw in _result_entries(sources):
        unique_id = raw["unique_id"]
        status = normalize_status(raw.get("status"))
        error = raw.get("error")
        freshness = None
        if isinstance(error, str | int) and not isinstance(error, bool) and str(error).strip():
            message: str | None = strip_ansi(str(error)).strip()
        else:
            criteria = raw.get("criteria") if isinstance(raw.get("criteria"), Mapping) else {}
            age = raw.get("max_loaded_at_time_ago_in_s")
            freshness = Freshness(
                max_loaded_at=raw["max_loaded_at"] if isinstance(raw.get("max_loaded_at"), str) else None,
                age_s=_seconds(age) if isinstance(age, int | float) and not isinstance(age, bool) else None,
                warn_after=_threshold(criteria.get("warn_after")),
                error_after=_threshold(criteria.get("error_after")),
            )
            message = freshness_message(freshness)
        nodes.append(
            NodeResult(
                unique_id=unique_id,
                status=status,
                message=message,
                execution_time=_seconds(raw.get("execution_time")),
                resource_type=_resource_type(unique_id, manifest) or "source",
                command=command,
                freshness=freshness,
            )
        )
    return tuple(nodes)


def _source_id(name: str, manifest: Mapping[str, Any] | None) -> str:
    """The unique_id of the source dbt prints as `source_name.table`."""
    for unique_id, node in ((manifest or {}).get("sources") or {}).items():
        if isinstance(node, Mapping) and f"{node.get('source_name')}.{node.get('name')}" == name:
            return str(unique_id)
    return f"source.?.{name}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def numbered_artifacts(artifacts_dir: Path, stem: str) -> list[tuple[int | None, Path]]:
    """`<stem>.<i>.json` files by command number, else the lone `<stem>.json`."""
    numbered = []
    for path in artifacts_dir.glob(f"{stem}.*.json"):
        middle = path.name[len(stem) + 1 : -len(".json")]
        if middle.isdigit():
            numbered.append((int(middle), path))
    if numbered:
        return sorted(numbered)
    lone = artifacts_dir / f"{stem}.json"
    return [(None, lone)] if lone.is_file() else []


def load_node_results(artifacts_dir: Path, log_path: Path | None = None) -> tuple[NodeResult, ...] | None:
    """The node results of every dbt command of a run whose artifacts are in `artifacts_dir`.

    Reads each command's `run_results.<i>.json` and `sources.<i>.json` (or, when
    there are none, the lone run_results.json / sources.json), in command order,
    and manifest.json when it is there and readable (without it, skipped nodes have
    no `skipped_because`). A source whose freshness query raised is missing from
    sources.json in dbt 1.11; it is read from the run's log (`log_path`, default
    `artifacts_dir/run.log`) as an error node.

    Returns None when no command wrote a readable run_results.json or sources.json
    — dbt does not write one when it fails early, e.g. on a compilation error
    (dbt-core #5625) — and never raises.
    """
    artifacts_dir = Path(artifacts_dir)
    manifest = _read_json(artifacts_dir / "manifest.json")
    manifest = manifest if isinstance(manifest, dict) else None
    found: list[tuple[int, int | None, tuple[NodeResult, ...]]] = []
    for command, path in numbered_artifacts(artifacts_dir, "run_results"):
        data = _read_json(path)
        if isinstance(data, dict):
            found.append((command or 0, command, parse_run_results(data, manifest, command)))
    freshness_commands: list[int | None] = []
    for command, path in numbered_artifacts(artifacts_dir, "sources"):
        data = _read_json(path)
        if isinstance(data, dict):
            found.append((command or 0, command, parse_sources(data, manifest, command)))
            freshness_commands.append(command)
    if not found:
        return None
    found.extend(
        _freshness_errors_from_log(log_path or artifacts_dir / "run.log", freshness_commands, manifest, found)
    )
    found.sort(key=lambda item: item[0])  # stable: run_results before sources within a command
    return tuple(node for _, _, nodes in found for node in nodes)


def _freshness_errors_from_log(
    log_path: Path,
    commands: list[int | None],
    manifest: Mapping[str, Any] | None,
    found: list[tuple[int, int | None, tuple[NodeResult, ...]]],
) -> list[tuple[int, int | None, tuple[NodeResult, ...]]]:
    if not commands:
        return []
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    by_command = split_by_command(lines)
    known = {(command, node.unique_id) for _, command, nodes in found for node in nodes}
    out = []
    for command in commands:
        segment = by_command.get(command, []) if command is not None else lines
        errors = []
        for name, message in freshness_runtime_errors(segment).items():
            unique_id = _source_id(name, manifest)
            if (command, unique_id) not in known:
                errors.append(
                    NodeResult(unique_id, "error", message=message, resource_type="source", command=command)
                )
        if errors:
            out.append((command or 0, command, tuple(errors)))
    return out


def problem_nodes(nodes: Iterable[NodeResult]) -> tuple[NodeResult, ...]:
    """The nodes that failed, errored or warned, in the given order."""
    return tuple(n for n in nodes if n.status in PROBLEM_STATUSES)


def failed_nodes(nodes: Iterable[NodeResult]) -> tuple[NodeResult, ...]:
    """The nodes that failed or errored (warnings excluded), in the given order."""
    return tuple(n for n in nodes if n.status in FAILED_STATUSES)


def skipped_nodes(nodes: Iterable[NodeResult]) -> tuple[NodeResult, ...]:
    """The skipped nodes, in the given order."""
    return tuple(n for n in nodes if n.status == "skipped")


def dbt_counts(nodes: Sequence[NodeResult]) -> dict[str, int]:
    """The counts dbt prints at the end of a run: PASS (success + pass), WARN,
    ERROR (error + fail), SKIP and TOTAL. A node with an unknown status is only in
    TOTAL."""
    counts = count_statuses(tuple(nodes))
    return {
        "PASS": counts["success"] + counts["pass"],
        "WARN": counts["warn"],
        "ERROR": counts["error"] + counts["fail"],
        "SKIP": counts["skipped"],
        "TOTAL": counts["total"],
    }


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def summarize(nodes: Sequence[NodeResult], max_length: int = SUMMARY_MAX_LENGTH) -> str:
    """One line saying what went wrong, for a run's `reason`; "" when nothing failed,
    errored or was skipped (warnings alone are not a reason).

    `2 tests failed (not_null_stg_orders_order_id: Got 3 results, configured to fail
    if != 0; …, and 1 more), 1 error (customer_names: Binder Error: …), 7 nodes skipped`

    Failed/errored nodes are shown as `name: first useful message line`, taken in
    turn from each group, while the line stays within `max_length`; those that do not
    fit are counted in "…, and N more" (or only counted, when none fit).
    """
    failed = [n for n in nodes if n.status == "fail"]
    errored = [n for n in nodes if n.status == "error"]
    skipped = len(skipped_nodes(nodes))
    if not failed and not errored and not skipped:
        return ""

    def variants(node: NodeResult) -> tuple[str, str]:
        name = display_name(node.unique_id)
        text = short_message(node.message)
        return (f"{name}: {text}" if text else name), name

    labels_and_nodes = [
        (_plural(len(failed), "test") + " failed", failed),
        (_plural(len(errored), "error"), errored),
    ]
    groups = [(label, [variants(n) for n in group]) for label, group in labels_and_nodes if group]
    # What is shown of each group so far: the items' long or name-only forms.
    shown: list[list[str]] = [[] for _ in groups]

    def render() -> str:
        parts = []
        for (label, items), texts in zip(groups, shown, strict=True):
            if not texts:
                parts.append(label)
                continue
            detail = "; ".join(texts)
            if len(texts) < len(items):
                detail += f"; …, and {len(items) - len(texts)} more"
            parts.append(f"{label} ({detail})")
        if skipped:
            parts.append(_plural(skipped, "node") + " skipped")
        return ", ".join(parts)

    # Round-robin, so the first error is shown before the second failed test; an item
    # whose message does not fit is shown by name alone.
    open_groups = list(range(len(groups)))
    while open_groups:
        for index in list(open_groups):
            texts = shown[index]
            for text in groups[index][1][len(texts)]:
                texts.append(text)
                if len(render()) <= max_length:
                    break
                texts.pop()
            else:
                open_groups.remove(index)  # later items of this group stay counted, in order
                continue
            if len(texts) == len(groups[index][1]):
                open_groups.remove(index)
    line = render()
    # Even the bare counts can only overflow with a tiny max_length; cut rather than lie.
    return line if len(line) <= max_length else line[: max_length - 1] + "…"
