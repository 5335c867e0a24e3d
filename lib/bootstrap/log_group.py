"""Step `log-group`: the CloudWatch Logs group the awslogs driver writes each task's
output to, with a retention period so logs do not pile up (and cost) forever."""

from __future__ import annotations

from typing import Any

from lib.bootstrap.base import Plan, StepContext, StepResult

NAME = "log-group"
# The only values logs:PutRetentionPolicy accepts (CloudWatch Logs API reference).
RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip


def find_log_group(logs: Any, name: str) -> dict[str, Any] | None:
    """The group called exactly `name` (describe_log_groups only filters by prefix)."""
    for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name):
        for group in page["logGroups"]:
            if group["logGroupName"] == name:
                return dict(group)
    return None


def ensure_log_group(ctx: StepContext) -> StepResult:
    """Creates aws.log_group with aws.log_retention_days (0 = never expire).

    created = the group was missing; updated = its retention differed and was set;
    unchanged otherwise.
    """
    s = ctx.settings
    plan = Plan(NAME, ctx.dry_run)
    logs = ctx.clients.logs()
    wanted = s.log_retention_days or None  # 0: keep forever (no retention policy)
    group = find_log_group(logs, s.log_group)
    if group is None:
        plan.create(f"create log group {s.log_group}")
        if not ctx.dry_run:
            logs.create_log_group(logGroupName=s.log_group)
        current = None
    else:
        current = group.get("retentionInDays")
    if current != wanted:
        if wanted is None:
            plan.change("remove the retention policy (keep logs forever)")
            if not ctx.dry_run:
                logs.delete_retention_policy(logGroupName=s.log_group)
        else:
            if group is not None:
                plan.change(f"retention {current or 'never expire'} → {wanted} days")
            if not ctx.dry_run:
                logs.put_retention_policy(logGroupName=s.log_group, retentionInDays=wanted)
    kept = f"{wanted} days" if wanted else "never expire"
    return plan.result(f"{s.log_group}: retention {kept}")
