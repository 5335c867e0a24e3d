"""The IAM documents bootstrap writes, and the one the ops box itself needs.

Pure functions of `AwsSettings`: tests compare them whole, and the README prints
`ops_box_policy` so an administrator can grant exactly what bootstrap and the ECS
runner call, nothing more.
"""

from __future__ import annotations

import json
from typing import Any

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


def execution_role_policy(bucket: str, env_file_key: str) -> dict[str, Any]:
    """The execution role's inline policy: read the one env file and nothing else.

    ECS downloads `environmentFiles` with the *execution* role and needs both
    s3:GetObject on the object and s3:GetBucketLocation on the bucket (ECS developer
    guide, "Use environment files"); ECR pull and awslogs come from the managed
    AmazonECSTaskExecutionRolePolicy attached next to it.
    """
    return {
        "Version": VERSION,
        "Statement": [
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
        ],
    }


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


def ops_box_policy(settings: AwsSettings, account: str = "*") -> dict[str, Any]:
    """The identity policy the ops box (where the daemon and bootstrap run) needs.

    Covers `scheduler.py bootstrap` and the ECS runner: run/watch/stop tasks on the
    one cluster, register and read the task definition family, pass the two roles to
    ECS only, manage those two roles, the bucket settings and env-file object, read the
    run artifacts, create and push to the ECR repository, and the log group. Actions
    AWS does not scope to a resource (ecr:GetAuthorizationToken,
    ecs:RegisterTaskDefinition/DescribeTaskDefinition/ListTaskDefinitions,
    logs:DescribeLogGroups) get `*`. `account` narrows the ARNs (default `*`).
    """
    s = settings
    region = s.region
    bucket = s.bucket or "BUCKET"
    cluster_arn = f"arn:aws:ecs:{region}:{account}:cluster/{s.cluster}"
    role_arns = [
        f"arn:aws:iam::{account}:role/{s.execution_role}",
        f"arn:aws:iam::{account}:role/{s.task_role}",
    ]
    log_group_arn = f"arn:aws:logs:{region}:{account}:log-group:{s.log_group}"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "RunDbtTasks",
                "Effect": "Allow",
                "Action": "ecs:RunTask",
                "Resource": f"arn:aws:ecs:{region}:{account}:task-definition/{s.task_family}:*",
                "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
            },
            {
                "Sid": "WatchDbtTasks",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                "Resource": f"arn:aws:ecs:{region}:{account}:task/{s.cluster}/*",
            },
            {
                "Sid": "CheckCluster",
                "Effect": "Allow",
                "Action": "ecs:DescribeClusters",
                "Resource": cluster_arn,
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
            {
                "Sid": "PassTaskRoles",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": role_arns,
                "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS}},
            },
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
                "Resource": role_arns,
            },
            {
                "Sid": "AttachExecutionPolicy",
                "Effect": "Allow",
                "Action": "iam:AttachRolePolicy",
                "Resource": role_arns[0],
                "Condition": {"ArnEquals": {"iam:PolicyARN": EXECUTION_MANAGED_POLICY}},
            },
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
                "Resource": bucket_arn(bucket),
            },
            {
                "Sid": "EnvFileObject",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": object_arn(bucket, s.env_file_key),
            },
            {
                "Sid": "ReadRunArtifacts",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": artifacts_arn(bucket, s.artifacts_prefix),
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
                "Resource": f"arn:aws:ecr:{region}:{account}:repository/{s.ecr_repository}",
            },
            {
                "Sid": "FindLogGroups",
                "Effect": "Allow",
                "Action": "logs:DescribeLogGroups",
                "Resource": f"arn:aws:logs:{region}:{account}:log-group:*",
            },
            {
                "Sid": "LogGroup",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:PutRetentionPolicy",
                    "logs:DeleteRetentionPolicy",
                    "logs:GetLogEvents",
                ],
                "Resource": [log_group_arn, f"{log_group_arn}:*"],
            },
        ],
    }


def ops_box_policy_json(settings: AwsSettings, account: str = "*") -> str:
    """`ops_box_policy` as indented JSON, ready to paste into the IAM console."""
    return json.dumps(ops_box_policy(settings, account), indent=2)


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
