"""The `Alert` value every channel renders, built by a pure function from a run's
report.json data (`lib.report.files.record_to_dict`), the manifest and context numbers.

Every string that goes into an Alert has been through the secret masker, so a channel
can never leak a secret that reached a dbt message, a reason or a URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib.dbt_results import short_message
from lib.models import display_name
from lib.report.files import mask_data

EVENTS = (
    "started",
    "succeeded",
    "warned",
    "failed",
    "timed_out",
    "failed_to_start",
    "cancelled",
    "skipped",
    "recovered",
    "late",
)
# The events that open (or continue) an incident; `recovered` closes it.
FAILURE_EVENTS = frozenset({"failed", "timed_out", "failed_to_start"})
_PROBLEM_STATUSES = ("error", "fail", "warn")
MESSAGE_LIMIT = 500  # a node's message in an alert; the full one is in the report
SKIPPED_NAMED = 3  # skipped nodes named per failure ("and 4 more")

TITLES = {
    "started": "started",
    "succeeded": "succeeded",
    "warned": "succeeded with warnings",
    "failed": "failed",
    "timed_out": "timed out",
    "failed_to_start": "failed to start",
    "cancelled": "was cancelled",
    "skipped": "was skipped",
    "recovered": "recovered",
    "late": "is late",
}
EMOJI = {
    "started": "▶️",
    "succeeded": "✅",
    "warned": "⚠️",
    "failed": "❌",
    "timed_out": "⏱️",
    "failed_to_start": "🚫",
    "cancelled": "⏹️",
    "skipped": "⏭️",
    "recovered": "✅",
    "late": "⏰",
}


@dataclass(frozen=True)
class AlertNode:
    """A failed, errored or warned node, with what its failure skipped downstream."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    message: str
    failures: int | None
    skipped_count: int = 0
    skipped_first: tuple[str, ...] = ()  # names of the first SKIPPED_NAMED skipped nodes
    owners: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alert:
    event: str
    job: str
    outcome: str | None
    run_id: str | None
    target: str | None = None
    trigger: str | None = None
    triggered_by: str | None = None
    started_at: str | None = None  # ISO 8601, as report.json has it
    duration_s: float | None = None
    git_sha: str | None = None
    reason: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    nodes: tuple[AlertNode, ...] = ()
    owners: tuple[str, ...] = ()  # owners of the failed/errored nodes, deduplicated
    consecutive_failures: int = 0
    broken_for_s: float | None = None  # recovered: since the first failing run
    failed_runs: int = 0  # recovered: how many runs failed in a row
    suppressed: int = 0  # identical alerts held back since the last one sent
    log_url: str | None = None
    run_url: str | None = None
    # Identifies the failure (job + failing nodes) for de-duplication and PagerDuty's
    # dedup_key; on `recovered`, the key of the failure it resolves.
    failure_key: str | None = None
    # The masked report data, nodes limited to the non-passing ones (the webhook's body).
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{EMOJI.get(self.event, '')} {self.job} {TITLES.get(self.event, self.event)}".strip()

    @property
    def is_failure(self) -> bool:
        return self.event in FAILURE_EVENTS

    def problem_nodes(self, *statuses: str) -> tuple[AlertNode, ...]:
        wanted = statuses or _PROBLEM_STATUSES
        return tuple(node for node in self.nodes if node.status in wanted)


def failure_key(job: str, event: str, failing_ids: Sequence[str], reason: str | None = None) -> str:
    """A stable key for "this job failing this way": the job and the sorted set of
    failing nodes, or the event and reason when no node failed (a timeout, a failed
    start). The same failure on the next run gives the same key."""
    what = ",".join(sorted(set(failing_ids))) or f"{event}:{reason or ''}"
    import hashlib  # here, not at the top: see lib/notify/dispatcher.py `_channel`

    digest = hashlib.sha256(f"{job}\n{what}".encode()).hexdigest()[:16]
    return f"{job}-{digest}"


def owners_from_manifest(unique_id: str, manifest: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The owners dbt records for a node: `meta.owner`, `config.meta.owner` (a string or
    a list), and its group's owner (name or email)."""
    if not manifest:
        return ()
    node = None
    for section in ("nodes", "unit_tests", "sources", "exposures"):
        node = (manifest.get(section) or {}).get(unique_id)
        if node:
            break
    if not isinstance(node, Mapping):
        return ()
    found: list[str] = []
    config = node.get("config") if isinstance(node.get("config"), Mapping) else {}
    for meta in (node.get("meta"), config.get("meta")):
        if isinstance(meta, Mapping):
            owner = meta.get("owner")
            listed = [owner] if isinstance(owner, str) else list(owner or ())
            found.extend(o for o in listed if isinstance(o, str))
    group = node.get("group") or config.get("group")
    if isinstance(group, str):
        for entry in (manifest.get("groups") or {}).values():
            if isinstance(entry, Mapping) and entry.get("name") == group:
                owner = entry.get("owner") or {}
                if isinstance(owner, Mapping):
                    found.extend(v for v in (owner.get("name"), owner.get("email")) if isinstance(v, str))
    return tuple(dict.fromkeys(o.strip() for o in found if o and o.strip()))


def build_alert(
    event: str,
    report: Mapping[str, Any],
    *,
    mask: Callable[[str], str],
    manifest: Mapping[str, Any] | None = None,
    target: str | None = None,
    consecutive_failures: int = 0,
    broken_for_s: float | None = None,
    failed_runs: int = 0,
    suppressed: int = 0,
    base_url: str | None = None,
    resolves_key: str | None = None,
) -> Alert:
    """The Alert for `event` about the run `report` describes (record_to_dict's shape).

    Every string is masked with `mask` (a `lib.secrets.SecretMasker`) before anything
    else reads it. Nodes are the error/fail/warn ones, in dbt's order; each failure
    counts the skipped nodes whose `skipped_because` names it. `target` defaults to the
    run's `target_override`. `run_url` is `<base_url>/runs/<run id>` when the web UI's
    base URL is given. On `recovered`, `resolves_key` is the failure_key of the failure
    it closes (PagerDuty resolves that incident)."""
    if event not in EVENTS:
        raise ValueError(f"unknown alert event {event!r}; expected one of {', '.join(EVENTS)}")
    data: dict[str, Any] = mask_data(dict(report), mask)
    nodes_raw = [n for n in data.get("nodes") or () if isinstance(n, Mapping)]
    skipped_by: dict[str, list[str]] = {}
    for node in nodes_raw:
        if node.get("status") == "skipped":
            for cause in node.get("skipped_because") or ():
                skipped_by.setdefault(cause, []).append(node.get("name") or display_name(node["unique_id"]))
    nodes: list[AlertNode] = []
    for node in nodes_raw:
        if node.get("status") not in _PROBLEM_STATUSES:
            continue
        uid = str(node.get("unique_id"))
        skipped = skipped_by.get(uid, [])
        owners = tuple(mask(o) for o in owners_from_manifest(uid, manifest))
        nodes.append(
            AlertNode(
                unique_id=uid,
                name=node.get("name") or display_name(uid),
                resource_type=node.get("resource_type") or "",
                status=node["status"],
                message=short_message(node.get("message"), MESSAGE_LIMIT),
                failures=node.get("failures"),
                skipped_count=len(skipped),
                skipped_first=tuple(skipped[:SKIPPED_NAMED]),
                owners=owners,
            )
        )
    failing = [n for n in nodes if n.status in ("error", "fail")]
    owners = tuple(dict.fromkeys(o for n in failing for o in n.owners))
    job = str(data.get("job") or "")
    if event in FAILURE_EVENTS:
        key: str | None = failure_key(job, event, [n.unique_id for n in failing], data.get("reason"))
    else:
        key = resolves_key
    run_id = data.get("run_id")
    run_url = f"{base_url.rstrip('/')}/runs/{run_id}" if base_url and run_id else None
    body = dict(data)
    body["nodes"] = [n for n in nodes_raw if n.get("status") not in ("success", "pass")]
    return Alert(
        event=event,
        job=job,
        outcome=data.get("outcome"),
        run_id=run_id,
        target=target if target is not None else data.get("target_override"),
        trigger=data.get("trigger"),
        triggered_by=data.get("triggered_by"),
        started_at=data.get("started_at"),
        duration_s=data.get("duration_s"),
        git_sha=data.get("git_sha"),
        reason=data.get("reason"),
        counts=dict(data.get("counts") or {}),
        nodes=tuple(nodes),
        owners=owners,
        consecutive_failures=consecutive_failures,
        broken_for_s=broken_for_s,
        failed_runs=failed_runs,
        suppressed=suppressed,
        log_url=data.get("log_url") or data.get("log_path"),
        run_url=run_url,
        failure_key=key,
        report=body,
    )


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    return " ".join([*parts, f"{secs}s"]) if not days else " ".join(parts)


def counts_text(counts: Mapping[str, int]) -> str:
    """dbt's own summary words: `PASS=12 WARN=1 ERROR=1 SKIP=2`."""
    words = {
        "success": "OK",
        "pass": "PASS",
        "warn": "WARN",
        "error": "ERROR",
        "fail": "FAIL",
        "skipped": "SKIP",
    }
    return " ".join(f"{word}={counts[k]}" for k, word in words.items() if counts.get(k))


def facts(alert: Alert) -> list[tuple[str, str]]:
    """The label/value pairs every channel shows, in order, without empty ones."""
    trigger = alert.trigger or ""
    if alert.triggered_by:
        trigger = f"{trigger} by {alert.triggered_by}"
    rows = [
        ("Outcome", alert.outcome or ""),
        ("Target", alert.target or ""),
        ("Trigger", trigger),
        ("Run", alert.run_id or ""),
        ("Started", alert.started_at or ""),
        ("Duration", duration_text(alert.duration_s) if alert.duration_s is not None else ""),
        ("Git SHA", (alert.git_sha or "")[:12]),
        ("dbt", counts_text(alert.counts)),
        ("Owners", ", ".join(alert.owners)),
    ]
    if alert.consecutive_failures > 1:
        rows.append(("Failures in a row", str(alert.consecutive_failures)))
    if alert.event == "recovered":
        rows.append(("Broken for", duration_text(alert.broken_for_s)))
        rows.append(("Failed runs", str(alert.failed_runs)))
    if alert.suppressed:
        rows.append(("Repeats not sent", str(alert.suppressed)))
    return [(label, value) for label, value in rows if value]


def node_line(node: AlertNode) -> str:
    """One line about a node: `fail test not_null_x (3 failures) — skipped 2: a, b`."""
    line = f"{node.status} {node.resource_type} {node.name}".replace("  ", " ")
    if node.failures:
        line += f" ({node.failures} failure{'s' if node.failures != 1 else ''})"
    if node.skipped_count:
        more = node.skipped_count - len(node.skipped_first)
        names = ", ".join(node.skipped_first) + (f" and {more} more" if more > 0 else "")
        line += f" — skipped {node.skipped_count} downstream: {names}"
    return line


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit
    while keep > 0:
        note = f"… ({len(text) - keep} chars cut)"
        if keep + len(note) <= limit:
            return text[:keep] + note
        keep = limit - len(note)
    return text[:limit]


def plain_text(alert: Alert) -> str:
    """The whole alert as plain text (email, SNS, fallbacks)."""
    lines = [alert.title, ""]
    if alert.reason:
        lines += [alert.reason, ""]
    lines += [f"{label}: {value}" for label, value in facts(alert)]
    if alert.nodes:
        lines.append("")
        for node in alert.nodes:
            lines.append(f"- {node_line(node)}")
            if node.message:
                lines += [f"    {m}" for m in node.message.splitlines()]
            if node.owners:
                lines.append(f"    owner: {', '.join(node.owners)}")
    links = [(label, url) for label, url in (("Log", alert.log_url), ("Run", alert.run_url)) if url]
    if links:
        lines.append("")
        lines += [f"{label}: {url}" for label, url in links]
    return "\n".join(lines) + "\n"
