"""The IAM documents bootstrap writes, and the two identity policies around it.

Pure functions of `AwsSettings`: tests compare them whole. `runtime_policy` is what
the ops box (the daemon) needs to run ECS jobs; `bootstrap_policy` is what provisioning
needs, for an administrator or a CI role: kept apart, so the box that runs every night
cannot rewrite roles, task definitions or images.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from lib.aws.arns import SECRET_SUFFIX, SECRETS_MANAGER, SecretArn, parse_secret_arn
from lib.bootstrap.base import EXECUTION_MANAGED_POLICY
from lib.models import AwsSettings

VERSION = "2012-10-17"
ECS_TASKS = "ecs-tasks.amazonaws.com"
EXECUTION_POLICY_NAME = "dbt-scheduler-env-file"
TASK_POLICY_NAME = "dbt-scheduler-artifacts"


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    """The S3 ARN ECS wants in `environmentFiles[].value` and IAM in `Resource`."""
    return f"arn:aws:s3:::{bucket}/{key.lstrip('/')}"


def artifacts_arn(bucket: str, prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"


def ecs_tasks_trust_policy() -> dict[str, Any]:
    """Lets ECS tasks assume the role: the trust of both the execution and the task role."""
    return {
        "Version": VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": ECS_TASKS}, "Action": "sts:AssumeRole"},
        ],
    }


def execution_role_policy(
    bucket: str,
    env_file_key: str,
    parameters: Iterable[str] = (),
    secrets: Iterable[str] = (),
    kms_key: str | None = None,
) -> dict[str, Any]:
    """The execution role's inline policy: read the env file and the task's secrets, nothing else.

    ECS downloads `environmentFiles` with the *execution* role and needs both
    s3:GetObject on the object and s3:GetBucketLocation on the bucket (ECS developer
    guide, "Use environment files"). The container's `secrets` (aws.secrets) are read
    with it too, before the container starts: ssm:GetParameters on each parameter ARN,
    secretsmanager:GetSecretValue on each secret (`secrets`: the resources
    `lib.bootstrap.iam.secret_resources` worked out), and kms:Decrypt on aws.kms_key
    when the secrets use a customer managed key (ECS developer guide, "Required IAM
    permissions for Amazon ECS secrets"). A statement with nothing to grant is left out.
    ECR pull and awslogs come from the managed AmazonECSTaskExecutionRolePolicy
    attached next to it.
    """
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadEnvFile",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": object_arn(bucket, env_file_key),
        },
        {
            "Sid": "LocateEnvFileBucket",
            "Effect": "Allow",
            "Action": "s3:GetBucketLocation",
            "Resource": bucket_arn(bucket),
        },
    ]
    for sid, action, resources in (
        ("ReadSecretParameters", "ssm:GetParameters", parameters),
        ("ReadSecrets", "secretsmanager:GetSecretValue", secrets),
    ):
        if wanted := sorted(set(resources)):
            statements.append({"Sid": sid, "Effect": "Allow", "Action": action, "Resource": wanted})
    if kms_key:
        statements.append(
            {"Sid": "DecryptSecrets", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": kms_key}
        )
    return {"Version": VERSION, "Statement": statements}


def task_role_policy(bucket: str, artifacts_prefix: str) -> dict[str, Any]:
    """The task role's inline policy: the dbt container may only write run artifacts."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "WriteRunArtifacts",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": artifacts_arn(bucket, artifacts_prefix),
            },
        ],
    }


class _Arns:
    """The ARNs both identity policies name, from the `aws:` settings."""

    def __init__(self, settings: AwsSettings, account: str) -> None:
        s, region = settings, settings.region
        self.bucket = s.bucket or "BUCKET"
        self.cluster = f"arn:aws:ecs:{region}:{account}:cluster/{s.cluster}"
        self.task_definitions = f"arn:aws:ecs:{region}:{account}:task-definition/{s.task_family}:*"
        self.tasks = f"arn:aws:ecs:{region}:{account}:task/{s.cluster}/*"
        self.roles = [
            f"arn:aws:iam::{account}:role/{s.execution_role}",
            f"arn:aws:iam::{account}:role/{s.task_role}",
        ]
        self.log_group = f"arn:aws:logs:{region}:{account}:log-group:{s.log_group}"
        self.log_groups = f"arn:aws:logs:{region}:{account}:log-group:*"
        self.repository = f"arn:aws:ecr:{region}:{account}:repository/{s.ecr_repository}"


def _pass_roles(arns: _Arns) -> dict[str, Any]:
    # Both RunTask (a task definition naming roles) and RegisterTaskDefinition need
    # iam:PassRole on the roles; only to ECS tasks, only these two.
    return {
        "Sid": "PassTaskRoles",
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": arns.roles,
        "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS}},
    }


# What the daemon's ECS runner calls, operation → the IAM action it needs: a test records
# every call an ECS run makes against moto and checks each is here and granted.
RUNTIME_OPERATION_ACTIONS: dict[str, str] = {
    "RunTask": "ecs:RunTask",
    "DescribeTasks": "ecs:DescribeTasks",
    "StopTask": "ecs:StopTask",
    "GetLogEvents": "logs:GetLogEvents",
    "GetObject": "s3:GetObject",
}


def runtime_policy(settings: AwsSettings, account: str = "*") -> dict[str, Any]:
    """The identity policy of the ops box: what the daemon calls while it runs ECS jobs.

    Start tasks of the one family on the one cluster, watch and stop the tasks of that
    cluster, pass the two task roles to ECS tasks, read the task logs of the log group
    and the run artifacts. Nothing that changes IAM, task definitions, ECR or the env
    file: that is `bootstrap_policy`, for an administrator or a CI role, so a
    compromised ops box can run the jobs it runs and no more. `account` narrows the
    ARNs (default `*`).
    """
    arns = _Arns(settings, account)
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "RunDbtTasks",
                "Effect": "Allow",
                "Action": "ecs:RunTask",
                "Resource": arns.task_definitions,
                "Condition": {"ArnEquals": {"ecs:cluster": arns.cluster}},
            },
            {
                "Sid": "WatchDbtTasks",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                "Resource": arns.tasks,  # a task ARN names its cluster
            },
            _pass_roles(arns),
            {
                "Sid": "ReadTaskLogs",
                "Effect": "Allow",
                "Action": "logs:GetLogEvents",
                # Matches the group's stream ARNs (`log-group:NAME:log-stream:…`), and the
                # group itself in the `log-group:NAME:*` form some actions are checked on.
                "Resource": f"{arns.log_group}:*",
            },
            {
                "Sid": "ReadRunArtifacts",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": artifacts_arn(arns.bucket, settings.artifacts_prefix),
            },
        ],
    }


def bootstrap_policy(settings: AwsSettings, account: str = "*") -> dict[str, Any]:
    """The identity policy `scheduler.py bootstrap` needs: for whoever provisions, not the ops box.

    Manage the two task roles and their policies, the bucket's settings and the env-file
    object, create and push to the ECR repository, the log group, register and read the
    task definition family (passing the roles), check the cluster, and look up the
    Secrets Manager secrets of aws.secrets (when there are any). Actions AWS does not
    scope to a resource (ecr:GetAuthorizationToken, ecs:RegisterTaskDefinition,
    DescribeTaskDefinition, ListTaskDefinitions, logs:DescribeLogGroups) get `*`.
    """
    arns = _Arns(settings, account)
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "CheckCluster",
                "Effect": "Allow",
                "Action": "ecs:DescribeClusters",
                "Resource": arns.cluster,
            },
            {
                "Sid": "TaskDefinitions",
                "Effect": "Allow",
                "Action": [
                    "ecs:RegisterTaskDefinition",
                    "ecs:DescribeTaskDefinition",
                    "ecs:ListTaskDefinitions",
                ],
                "Resource": "*",
            },
            _pass_roles(arns),
            {
                "Sid": "ManageTaskRoles",
                "Effect": "Allow",
                "Action": [
                    "iam:GetRole",
                    "iam:CreateRole",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:ListAttachedRolePolicies",
                    "iam:GetRolePolicy",
                    "iam:PutRolePolicy",
                ],
                "Resource": arns.roles,
            },
            {
                "Sid": "AttachExecutionPolicy",
                "Effect": "Allow",
                "Action": "iam:AttachRolePolicy",
                "Resource": arns.roles[0],
                "Condition": {"ArnEquals": {"iam:PolicyARN": EXECUTION_MANAGED_POLICY}},
            },
            *_find_secrets(settings),
            {
                "Sid": "EnvFileBucket",
                "Effect": "Allow",
                "Action": [
                    "s3:CreateBucket",
                    "s3:ListBucket",
                    "s3:GetBucketLocation",
                    "s3:GetBucketPublicAccessBlock",
                    "s3:PutBucketPublicAccessBlock",
                    "s3:GetEncryptionConfiguration",
                    "s3:PutEncryptionConfiguration",
                ],
                "Resource": bucket_arn(arns.bucket),
            },
            {
                "Sid": "EnvFileObject",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": object_arn(arns.bucket, settings.env_file_key),
            },
            {
                "Sid": "EcrLogin",
                "Effect": "Allow",
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*",
            },
            {
                "Sid": "EcrRepository",
                "Effect": "Allow",
                "Action": [
                    "ecr:CreateRepository",
                    "ecr:DescribeRepositories",
                    "ecr:DescribeImages",
                    "ecr:PutImageScanningConfiguration",
                    # what `docker push` calls
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:InitiateLayerUpload",
                    "ecr:UploadLayerPart",
                    "ecr:CompleteLayerUpload",
                    "ecr:PutImage",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": arns.repository,
            },
            {
                "Sid": "FindLogGroups",
                "Effect": "Allow",
                "Action": "logs:DescribeLogGroups",
                "Resource": arns.log_groups,
            },
            {
                "Sid": "LogGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy"],
                "Resource": [arns.log_group, f"{arns.log_group}:*"],
            },
        ],
    }


def _find_secrets(settings: AwsSettings) -> list[dict[str, Any]]:
    # The iam step looks each Secrets Manager secret of aws.secrets up (DescribeSecret: its
    # metadata, never its value) to learn whether its ARN was written whole. Which it is
    # cannot be told here, so both forms are named: the ARN as written, and the same
    # followed by the 6 random characters AWS appends to a secret's name.
    bases = sorted({ref.resource for ref in secret_arns(settings) if ref.service == SECRETS_MANAGER})
    if not bases:
        return []
    return [
        {
            "Sid": "FindSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:DescribeSecret",
            "Resource": [form for base in bases for form in (base, f"{base}{SECRET_SUFFIX}")],
        }
    ]


def secret_arns(settings: AwsSettings) -> list[SecretArn]:
    """aws.secrets' values, parsed (the config check has accepted each already)."""
    return [parse_secret_arn(arn) for _, arn in settings.secrets]


POLICIES = {"runtime": runtime_policy, "bootstrap": bootstrap_policy}


def policy_json(which: str, settings: AwsSettings, account: str = "*") -> str:
    """`runtime_policy` or `bootstrap_policy` as indented JSON, ready for the IAM console."""
    return json.dumps(POLICIES[which](settings, account), indent=2)


# --------------------------------------------------------------------------- comparing


def normalise_policy(document: Any) -> Any:
    """A policy document in a form where equal meaning compares equal.

    IAM hands documents back with its own key order, a one-element list where we wrote
    a string (or the reverse), and URL-encoded text in some SDKs; none of that is a
    change. Statement order and the order inside Action/Resource/Principal lists do not
    change what a policy allows either, so both are sorted.
    """
    if isinstance(document, str):
        from urllib.parse import unquote

        text = document if document.lstrip().startswith("{") else unquote(document)
        document = json.loads(text)
    if not isinstance(document, dict):
        return document
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    normalised = sorted(
        (_normalise_statement(s) for s in statements), key=lambda s: json.dumps(s, sort_keys=True)
    )
    return {"Version": document.get("Version", VERSION), "Statement": normalised}


def _normalise_statement(statement: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in statement.items():
        if key in ("Action", "NotAction", "Resource", "NotResource"):
            out[key] = sorted([value] if isinstance(value, str) else list(value))
        elif key in ("Principal", "NotPrincipal") and isinstance(value, dict):
            out[key] = {k: sorted([v] if isinstance(v, str) else list(v)) for k, v in value.items()}
        elif key == "Condition" and isinstance(value, dict):
            out[key] = {
                op: {k: sorted([v] if isinstance(v, str) else list(v)) for k, v in cond.items()}
                for op, cond in value.items()
            }
        else:
            out[key] = value
    return out


def same_policy(a: Any, b: Any) -> bool:
    """True when two policy documents grant the same thing (see normalise_policy)."""
    return bool(normalise_policy(a) == normalise_policy(b))
