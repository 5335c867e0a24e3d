"""Step `iam`: the task execution role and the task role, both assumable by ECS tasks.

The execution role is what the ECS agent uses before the container starts: pull
the image, create the awslogs stream (AmazonECSTaskExecutionRolePolicy), read the
env file and the container's secrets (our inline policy). The task role is what the
dbt container itself gets: it may only write run artifacts under aws.artifacts_prefix.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from lib.aws.arns import SECRET_SUFFIX, SSM
from lib.bootstrap.base import EXECUTION_MANAGED_POLICY, Plan, StepContext, StepResult, error_code
from lib.bootstrap.policies import (
    EXECUTION_POLICY_NAME,
    TASK_POLICY_NAME,
    ecs_tasks_trust_policy,
    execution_role_policy,
    same_policy,
    secret_arns,
    task_role_policy,
)

NAME = "iam"


def get_role(iam: Any, name: str) -> dict[str, Any] | None:
    """The role (get_role's `Role`), or None when it does not exist."""
    try:
        return dict(iam.get_role(RoleName=name)["Role"])
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise


def ensure_iam(ctx: StepContext) -> StepResult:
    """Creates or corrects both roles.

    Each role: created with the ecs-tasks.amazonaws.com trust when missing; its trust
    replaced when it differs; its inline policy put when missing or different. The
    execution role also gets AmazonECSTaskExecutionRolePolicy attached. Documents are
    compared as parsed JSON, ignoring key, statement and list order, so re-running is
    `unchanged`. Other managed policies found on the roles are left alone, with a warning.
    The execution role's policy names aws.secrets' resources (`secret_resources`): a
    Secrets Manager secret that does not exist fails the step before anything is written.
    """
    s = ctx.settings
    plan = Plan(NAME, ctx.dry_run)
    try:  # before any write: a secret that cannot be found changes nothing
        parameters, secrets = secret_resources(ctx)
    except ValueError as exc:
        return plan.fail(str(exc))
    iam = ctx.clients.iam()
    _ensure_role(
        ctx,
        iam,
        plan,
        s.execution_role,
        "dbt-scheduler: ECS task execution role (pull image, write logs, read the env file and secrets)",
        EXECUTION_POLICY_NAME,
        execution_role_policy(ctx.bucket, s.env_file_key, parameters, secrets, s.kms_key),
        managed=EXECUTION_MANAGED_POLICY,
    )
    _ensure_role(
        ctx,
        iam,
        plan,
        s.task_role,
        "dbt-scheduler: ECS task role (the dbt container writes run artifacts)",
        TASK_POLICY_NAME,
        task_role_policy(ctx.bucket, s.artifacts_prefix),
    )
    return plan.result(f"{s.execution_role}, {s.task_role}")


def secret_resources(ctx: StepContext) -> tuple[list[str], list[str]]:
    """What the execution role may read for aws.secrets: (parameter ARNs, secret resources).

    A parameter's ARN names it exactly. A Secrets Manager ARN, as ECS takes it, may leave
    out the `-` and 6 random characters AWS appends to a secret's name in its ARN
    (`…:secret:dbt/pw` for `…:secret:dbt/pw-AbCdEf`), and IAM matches a policy's resource
    against the full ARN: granted as written, such a partial ARN would authorise nothing,
    and the task would fail to start. The text cannot tell which it is (`dbt/db-secret`
    ends in six letters too), so each secret is looked up with DescribeSecret — its
    metadata, never its value — in its own Region: a full ARN is granted as it is, a
    partial one as `…:secret:NAME-??????`, the form AWS recommends, which matches the
    secret named NAME and no other. The JSON-key and version suffix is never part of
    the resource (an ARN AWS answers with in any other form is granted as AWS gave it).
    Raises ValueError naming the key when a secret does not exist.
    """
    parameters: list[str] = []
    secrets: list[str] = []
    for (name, _), ref in zip(ctx.settings.secrets, secret_arns(ctx.settings), strict=True):
        if ref.service == SSM:
            parameters.append(ref.resource)
            continue
        client = ctx.clients.client("secretsmanager", ref.region)
        try:
            found = str(client.describe_secret(SecretId=ref.resource)["ARN"])
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            raise ValueError(
                f"aws.secrets.{name}: Secrets Manager has no secret {ref.resource}: create it "
                "(aws secretsmanager create-secret --name …) or correct the ARN"
            ) from None
        wildcard = f"{ref.resource}{SECRET_SUFFIX}"
        partial = found.startswith(f"{ref.resource}-") and len(found) == len(wildcard)
        secrets.append(wildcard if partial else found)
    return parameters, secrets


def _ensure_role(
    ctx: StepContext,
    iam: Any,
    plan: Plan,
    name: str,
    description: str,
    policy_name: str,
    policy: dict[str, Any],
    managed: str | None = None,
) -> None:
    """Brings one role in line, recording one entry on `plan` for everything it did."""
    trust = ecs_tasks_trust_policy()
    done: list[str] = []
    role = get_role(iam, name)
    if role is None:
        done.append("trust ecs-tasks")
        if not ctx.dry_run:
            iam.create_role(
                RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Description=description
            )
    elif not same_policy(role.get("AssumeRolePolicyDocument"), trust):
        done.append("reset trust to ecs-tasks")
        if not ctx.dry_run:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))

    attached: list[str] = []
    if role is not None:
        pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
        attached = [p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]]
    if managed is not None and managed not in attached:
        done.append(f"attach {managed.rsplit('/', 1)[-1]}")
        if not ctx.dry_run:
            iam.attach_role_policy(RoleName=name, PolicyArn=managed)
    extra = [arn for arn in attached if arn != managed]
    if extra:
        plan.warn(f"{name} also has {', '.join(extra)} attached: left alone, review whether it needs them")

    current = None
    if role is not None:
        try:
            current = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
    if current is None or not same_policy(current, policy):
        done.append(f"{'put' if current is None else 'replace'} inline policy {policy_name}")
        if not ctx.dry_run:
            iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
    if role is None:
        plan.create(f"create role {name}: {', '.join(done)}")
    elif done:
        plan.change(f"{name}: {', '.join(done)}")
