"""What every bootstrap step shares: its result, its context, and how an AWS error
becomes one line a person can act on.

A step never raises for an AWS problem: `run_step` turns any exception into a
`failed` result (dbt's `safe_run` habit), so one missing permission does not hide
what the other steps would have done.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from lib.aws.clients import AwsClients
from lib.errors import ConfigError
from lib.models import AwsSettings
from lib.shipped import source_tree

# The engine seam: argv plus optional stdin text in, a finished process out.
EngineRunner = Callable[[list[str], str | None], subprocess.CompletedProcess[str]]
Say = Callable[[str], None]

# The ECS managed policy every task execution role needs (ECR pull + awslogs).
EXECUTION_MANAGED_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


class StepStatus(StrEnum):
    """What a step did (or, under --dry-run, would do)."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    PLANNED = "planned"  # --dry-run: the step would create or change something


@dataclass(frozen=True)
class StepResult:
    """One step's outcome. `detail` never holds a value from the env file.

    `action` is filled under --dry-run: what the step would do ("create bucket,
    upload env file"), or "" when there is nothing to do. `warnings` are things
    that work now but will bite later (a cluster with no container instances).
    """

    name: str
    status: StepStatus
    detail: str = ""
    action: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status is StepStatus.FAILED


class BootstrapConfigError(ConfigError):
    """The `aws:` section cannot drive bootstrap (no bucket, a bad --only…): exit 2."""


@dataclass
class StepContext:
    """What a step may use. Steps read settings here and call AWS only through `clients`."""

    settings: AwsSettings
    clients: AwsClients
    dry_run: bool = False
    force: bool = False
    engine_runner: EngineRunner | None = None
    # None when dbt-scheduler runs from an installed package: no Dockerfile to build.
    repo_root: Path | None = field(default_factory=source_tree)
    say: Say = lambda _text: None
    _account: str | None = None

    def account(self) -> str:
        """The AWS account id of the credentials in use (sts:GetCallerIdentity needs no permission)."""
        if self._account is None:
            self._account = str(self.clients.client("sts").get_caller_identity()["Account"])
        return self._account

    @property
    def bucket(self) -> str:
        if not self.settings.bucket:  # run_steps refuses to start without one
            raise ValueError("aws.bucket is not set")
        return self.settings.bucket


class Plan:
    """Collects what a step did or would do, and turns it into a StepResult.

    `created` marks the step's main resource as new; any other change makes the step
    `updated`. Under --dry-run the same calls describe the plan instead (`planned`).
    """

    def __init__(self, name: str, dry_run: bool) -> None:
        self.name = name
        self.dry_run = dry_run
        self.is_new = False
        self.changes: list[str] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def create(self, what: str) -> None:
        self.is_new = True
        self.changes.append(what)

    def change(self, what: str) -> None:
        self.changes.append(what)

    def note(self, what: str) -> None:
        self.notes.append(what)

    def warn(self, what: str) -> None:
        self.warnings.append(what)

    def result(self, detail: str = "") -> StepResult:
        detail = "; ".join(p for p in (detail, *self.notes) if p)
        warnings = tuple(self.warnings)
        if self.dry_run:
            status = StepStatus.PLANNED if self.changes else StepStatus.UNCHANGED
            return StepResult(self.name, status, detail, "; ".join(self.changes), warnings)
        if not self.changes:
            return StepResult(self.name, StepStatus.UNCHANGED, detail, warnings=warnings)
        status = StepStatus.CREATED if self.is_new else StepStatus.UPDATED
        done = "; ".join(self.changes)
        return StepResult(self.name, status, f"{detail} ({done})" if detail else done, warnings=warnings)

    def fail(self, detail: str) -> StepResult:
        return StepResult(self.name, StepStatus.FAILED, detail, warnings=tuple(self.warnings))


# --------------------------------------------------------------------------- AWS errors

# The IAM action behind each API call bootstrap makes, for the "(the ops box needs …)"
# hint. Most are service:Operation; S3 names its actions differently from its API
# (HeadBucket is authorised by s3:ListBucket, PutBucketEncryption by
# s3:PutEncryptionConfiguration — see the S3 "actions, resources and condition keys" page).
OPERATION_ACTIONS: dict[str, str] = {
    # s3
    "HeadBucket": "s3:ListBucket",
    "CreateBucket": "s3:CreateBucket",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    # ecr
    "DescribeRepositories": "ecr:DescribeRepositories",
    "CreateRepository": "ecr:CreateRepository",
    "PutImageScanningConfiguration": "ecr:PutImageScanningConfiguration",
    "DescribeImages": "ecr:DescribeImages",
    "GetAuthorizationToken": "ecr:GetAuthorizationToken",
    # iam
    "GetRole": "iam:GetRole",
    "CreateRole": "iam:CreateRole",
    "UpdateAssumeRolePolicy": "iam:UpdateAssumeRolePolicy",
    "ListAttachedRolePolicies": "iam:ListAttachedRolePolicies",
    "AttachRolePolicy": "iam:AttachRolePolicy",
    "GetRolePolicy": "iam:GetRolePolicy",
    "PutRolePolicy": "iam:PutRolePolicy",
    # logs
    "DescribeLogGroups": "logs:DescribeLogGroups",
    "CreateLogGroup": "logs:CreateLogGroup",
    "PutRetentionPolicy": "logs:PutRetentionPolicy",
    "DeleteRetentionPolicy": "logs:DeleteRetentionPolicy",
    # secretsmanager: the iam step looks up the secrets of aws.secrets (metadata only)
    "DescribeSecret": "secretsmanager:DescribeSecret",
    # ecs (RegisterTaskDefinition with role ARNs also needs iam:PassRole on both roles)
    "DescribeClusters": "ecs:DescribeClusters",
    "DescribeTaskDefinition": "ecs:DescribeTaskDefinition",
    "ListTaskDefinitions": "ecs:ListTaskDefinitions",
    "RegisterTaskDefinition": "ecs:RegisterTaskDefinition",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}
_BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
}


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (None for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def describe_error(exc: BaseException) -> str:
    """One line for a failed step: `AccessDenied: … (bootstrap needs iam:CreateRole …)`."""
    code = error_code(exc)
    if code is None:
        if type(exc).__module__.startswith("botocore"):  # no credentials, endpoint unreachable…
            return f"{type(exc).__name__}: {exc}"
        return f"internal error {type(exc).__name__}: {exc} (a bug: please report it)"
    response: dict[str, Any] = getattr(exc, "response", {})
    message = str(response.get("Error", {}).get("Message") or "").strip()
    operation = getattr(exc, "operation_name", "") or ""
    line = f"{code}: {message}" if message else code
    if operation and operation not in message:
        line = f"{line} [{operation}]"
    if code in _DENIED:
        action = OPERATION_ACTIONS.get(operation, f"the permission for {operation}")
        line += f" (bootstrap needs {action}: see `bootstrap --ops-policy bootstrap`)"
    elif code in _BAD_CREDENTIALS:
        line += " (check the ops box's AWS credentials: AWS_PROFILE, instance role…)"
    return " ".join(line.split())  # one line, whatever AWS put in the message


def run_step(name: str, step: Callable[[StepContext], StepResult], ctx: StepContext) -> StepResult:
    """Runs one step; any exception becomes a `failed` result with a one-line reason."""
    try:
        return step(ctx)
    except BootstrapConfigError:
        raise
    except Exception as exc:  # a failed step is a result, never a crash (see STYLE.md)
        return StepResult(name, StepStatus.FAILED, describe_error(exc))
