"""A finished run as files in its run directory: report.json and report.md.

report.json is for machines (dashboards, the history store, a notifier that wants
details); report.md is for a person opening the run directory or a notifier that
renders Markdown. Both are masked with the run's `SecretMasker` and written
atomically, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from lib.dbt_results import dbt_counts, display_name, problem_nodes, skipped_nodes
from lib.durations import format_duration
from lib.models import Freshness, NodeResult, RunOutcome, RunRecord, RunStatus, TriggerKind, count_statuses
from lib.secrets import SecretMasker

JSON_NAME = "report.json"
MARKDOWN_NAME = "report.md"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def node_to_dict(node: NodeResult) -> dict[str, Any]:
    """One node result as plain JSON data (`name` is the short name dbt prints)."""
    return {
        "unique_id": node.unique_id,
        "name": display_name(node.unique_id),
        "resource_type": node.resource_type,
        "status": node.status,
        "message": node.message,
        "failures": node.failures,
        "execution_time": node.execution_time,
        "skipped_because": list(node.skipped_because),
        "command": node.command,
        "compiled_path": node.compiled_path,
        "freshness": _freshness_to_dict(node.freshness),
    }


def _freshness_to_dict(freshness: Freshness | None) -> dict[str, Any] | None:
    if freshness is None:
        return None
    return {
        "max_loaded_at": freshness.max_loaded_at,
        "age_s": freshness.age_s,
        "warn_after": freshness.warn_after,
        "error_after": freshness.error_after,
    }


def record_to_dict(record: RunRecord, include_nodes: bool = True) -> dict[str, Any]:
    """A run record as plain JSON data: enums as their values, datetimes as ISO 8601
    strings with their offset, paths as strings, unknowns as None. `counts` (per dbt
    status plus `total`) is always present; `nodes` only when `include_nodes`.
    Nothing is masked here — `write_reports` masks what it writes."""
    outcome = record.outcome
    data: dict[str, Any] = {
        "job": record.job,
        "run_id": record.run_id,
        "trigger": record.trigger.value,
        "triggered_by": record.triggered_by,
        "scheduled_for": _iso(record.scheduled_for),
        "outcome": outcome.status.value,
        "exit_code": outcome.exit_code,
        "reason": outcome.reason,
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration_s": record.duration_s,
        "git_sha": outcome.git_sha,
        "counts": count_statuses(outcome.nodes),
        "log_path": str(outcome.log_path) if outcome.log_path is not None else None,
        "log_url": outcome.log_url,
        "external_id": outcome.external_id,
        "image": outcome.image,
        "run_dir": str(record.run_dir) if record.run_dir is not None else None,
        "target_override": record.target_override,
        "select_override": record.select_override,
        "commands": list(record.commands) or None,
    }
    if include_nodes:
        data["nodes"] = [node_to_dict(node) for node in outcome.nodes]
    return data


def record_from_dict(data: dict[str, Any]) -> RunRecord:
    """The run record `record_to_dict` made `data` from (report.json, or a `finished` event of
    the control socket): what `run-now` renders its summary from when the daemon ran the run."""
    nodes = tuple(node_from_dict(node) for node in data.get("nodes") or ())
    outcome = RunOutcome(
        status=RunStatus(data["outcome"]),
        reason=data.get("reason") or "",
        exit_code=data.get("exit_code"),
        log_path=Path(data["log_path"]) if data.get("log_path") else None,
        nodes=nodes,
        git_sha=data.get("git_sha"),
        external_id=data.get("external_id"),
        log_url=data.get("log_url"),
        image=data.get("image"),
    )
    return RunRecord(
        job=data["job"],
        run_id=data["run_id"],
        trigger=TriggerKind(data["trigger"]),
        outcome=outcome,
        started_at=datetime.fromisoformat(data["started_at"]),
        finished_at=datetime.fromisoformat(data["finished_at"]),
        scheduled_for=datetime.fromisoformat(data["scheduled_for"]) if data.get("scheduled_for") else None,
        triggered_by=data.get("triggered_by"),
        run_dir=Path(data["run_dir"]) if data.get("run_dir") else None,
        target_override=data.get("target_override"),
        select_override=data.get("select_override"),
        commands=tuple(data.get("commands") or ()),
    )


def mask_data(data: Any, mask: Callable[[str], str]) -> Any:
    """`data` (JSON-like: dicts, lists, scalars) with `mask` applied to every string
    value at any depth; keys and non-string values are left alone."""
    if isinstance(data, str):
        return mask(data)
    if isinstance(data, dict):
        return {key: mask_data(value, mask) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [mask_data(value, mask) for value in data]
    return data


def _cell(value: object) -> str:
    """A value made safe for one Markdown table cell: pipes escaped, HTML neutralised,
    line breaks kept as <br>."""
    if value is None or value == "":
        return "-"
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|")
    return "<br>".join(line.rstrip() for line in text.strip().splitlines())


def _code(value: str) -> str:
    return f"`{value}`" if "`" not in value else value


def render_markdown(data: dict[str, Any]) -> str:
    """report.md from a (masked) `record_to_dict` dict: heading, facts table, reason,
    dbt-style counts, a table of failed/errored nodes then warned ones (dbt's order
    within each) with their full messages, and a table of skipped nodes with what
    caused each skip. Tables and counts are left out when there are no nodes."""
    lines = [f"# {data['job']}: {data['outcome']}", ""]
    trigger = data["trigger"] + (f" by {data['triggered_by']}" if data.get("triggered_by") else "")
    log = _code(data["log_path"]) if data.get("log_path") else "-"
    if data.get("log_url"):
        log = f"{log} ([console]({data['log_url']}))" if data.get("log_path") else f"<{data['log_url']}>"
    facts = [
        ("Run", _code(data["run_id"])),
        ("Trigger", _cell(trigger)),
        ("Scheduled for", _cell(data.get("scheduled_for"))),
        ("Started", _cell(data.get("started_at"))),
        ("Finished", _cell(data.get("finished_at"))),
        ("Duration", format_duration(data.get("duration_s"))),
        ("Exit code", _cell(data.get("exit_code"))),
        ("Git SHA", _code(data["git_sha"]) if data.get("git_sha") else "-"),
        ("Log", log),
    ]
    if data.get("external_id"):
        facts.append(("External id", _code(data["external_id"])))
    if data.get("image"):
        facts.append(("Image", _code(data["image"])))
    for key, label in (("target_override", "Target (run-now)"), ("select_override", "Select (run-now)")):
        if data.get(key):
            facts.append((label, _cell(_code(data[key]))))
    commands = data.get("commands") or []
    if len(commands) > 1:
        facts.append(("Commands", "<br>".join(f"{i}. {_cell(_code(c))}" for i, c in enumerate(commands, 1))))
    lines += ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in facts), ""]
    if data.get("reason"):
        lines += [f"**Reason:** {_cell(data['reason'])}", ""]

    nodes = [node_from_dict(n) for n in data.get("nodes") or []]
    if nodes:
        counts = dbt_counts(nodes)
        lines += [" ".join(f"{key}={value}" for key, value in counts.items()), ""]
    # Failures and errors first, warnings after; dbt's order within each.
    # Which command ran a node matters once there is more than one.
    by_command = len({n.command for n in nodes}) > 1 or len(commands) > 1
    command_head, command_rule = ("Command | ", "---|") if by_command else ("", "")

    def command_cell(node: NodeResult) -> str:
        return f"{_cell(node.command)} | " if by_command else ""

    problems = sorted(problem_nodes(nodes), key=lambda node: node.status == "warn")
    if problems:
        lines += ["## Failed, errored and warned nodes", ""]
        lines += [
            f"| Node | Type | {command_head}Status | Failures | Message |",
            f"|---|---|{command_rule}---|---|---|",
        ]
        for node in problems:
            message = _cell(node.message)
            if node.compiled_path:
                message += f"<br>compiled SQL: {_link(node.compiled_path, data.get('run_dir'))}"
            lines.append(
                f"| {_cell(display_name(node.unique_id))} | {_cell(node.resource_type)} "
                f"| {command_cell(node)}{node.status} | {_cell(node.failures)} | {message} |"
            )
        lines.append("")
    skipped = skipped_nodes(nodes)
    if skipped:
        lines += [
            "## Skipped nodes",
            "",
            f"| Node | Type | {command_head}Skipped because of |",
            f"|---|---|{command_rule}---|",
        ]
        for node in skipped:
            causes = ", ".join(display_name(uid) for uid in node.skipped_because)
            lines.append(
                f"| {_cell(display_name(node.unique_id))} | {_cell(node.resource_type)} "
                f"| {command_cell(node)}{_cell(causes)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _link(path: str, run_dir: str | None) -> str:
    """A link to a file the run kept: relative to report.md (it sits in the run
    folder) so it opens from a copy of the folder too, shown as the full path."""
    target = Path(path)
    shown = _cell(_code(path))
    if run_dir and target.is_relative_to(run_dir):
        return f"[{shown}]({target.relative_to(run_dir).as_posix()})"
    return shown


def node_from_dict(data: dict[str, Any]) -> NodeResult:
    """A node as `node_to_dict` wrote it (report.json's `nodes`)."""
    return NodeResult(
        unique_id=data["unique_id"],
        status=data["status"],
        message=data.get("message"),
        failures=data.get("failures"),
        execution_time=data.get("execution_time") or 0.0,
        resource_type=data.get("resource_type") or "",
        skipped_because=tuple(data.get("skipped_because") or ()),
        command=data.get("command"),
        freshness=Freshness(**data["freshness"]) if data.get("freshness") else None,
        compiled_path=data.get("compiled_path"),
    )


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: written to a temp file in the same
    directory, fsynced, then `os.replace`d. On any error the temp file is removed and
    `path` is left as it was."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_reports(record: RunRecord, run_dir: Path, masker: SecretMasker) -> dict[str, Path]:
    """Write report.json and report.md into `run_dir` (created if missing) and return
    {"json": path, "md": path}. Every string in both files has gone through `masker`;
    each file is replaced atomically, so rewriting a report never leaves a torn file."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = mask_data(record_to_dict(record), masker.mask)
    json_path = run_dir / JSON_NAME
    md_path = run_dir / MARKDOWN_NAME
    write_atomically(json_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    # Masked values went in; masking the text again catches anything the rendering
    # put together from pieces (cheap, and a leak is not).
    write_atomically(md_path, masker.mask(render_markdown(data)))
    return {"json": json_path, "md": md_path}
