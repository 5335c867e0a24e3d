"""`scheduler.py bootstrap`: provision what ECS jobs need, idempotently.

Steps, in order (names for --only): env-file, profiles, image, iam, log-group,
task-definition, cluster. Each returns a `StepResult` (created, updated,
unchanged, skipped, failed, or planned under --dry-run); the command itself is
`lib.bootstrap.command.run_bootstrap`.

This package imports neither boto3 nor rich: it holds the results and the IAM
documents, so the CLI can print `runtime_policy(settings)` cheaply. Import
`lib.bootstrap.command` inside the CLI subcommand, not at module level.
"""

from lib.bootstrap.base import StepResult, StepStatus
from lib.bootstrap.policies import (
    bootstrap_policy,
    ecs_tasks_trust_policy,
    execution_role_policy,
    policy_json,
    runtime_policy,
    task_role_policy,
)

__all__ = [
    "StepResult",
    "StepStatus",
    "bootstrap_policy",
    "ecs_tasks_trust_policy",
    "execution_role_policy",
    "policy_json",
    "runtime_policy",
    "task_role_policy",
]
