"""`scheduler.py bootstrap` against a real moto server over HTTP.

The image step runs a fake engine (moto has no registry): it records every call and,
on `push`, records the image in moto's ECR with put_image, as a registry would.
botocore's Stubber stands in only where moto cannot answer: an AccessDenied.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from rich.console import Console

from lib.aws.clients import AwsClients
from lib.bootstrap import StepResult, StepStatus, bootstrap_policy, runtime_policy
from lib.bootstrap.base import EXECUTION_MANAGED_POLICY, OPERATION_ACTIONS, describe_error
from lib.bootstrap.command import STEP_NAMES, run_bootstrap, run_steps
from lib.bootstrap.env_file import check_env_file
from lib.bootstrap.policies import (
    EXECUTION_POLICY_NAME,
    RUNTIME_OPERATION_ACTIONS,
    TASK_POLICY_NAME,
    same_policy,
)
from lib.bootstrap.task_definition import normalise_task_definition
from lib.config import Config
from lib.models import AwsSettings
from tests.aws_helpers import ACCOUNT, REGION

SECRET = "hunter2-Zq9xK7"  # never printed
USER = "svc_loader_7f3a"
ENV_TEXT = f"# warehouse credentials\nSNOWFLAKE_USER={USER}\nDBT_ENV_SECRET_SNOWFLAKE_PASSWORD={SECRET}\n\n"
PROVISIONING = ("env-file", "profiles", "image", "iam", "log-group", "task-definition")


class FakeEngine:
    """Stands in for docker/podman: records argv and stdin; a push lands in moto's ECR."""

    def __init__(self, clients: AwsClients, fail: str | None = None) -> None:
        self.ecr = clients.ecr()
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail = fail

    def __call__(self, argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), input))
        if argv[1] == self.fail:
            return subprocess.CompletedProcess(argv, 1, "", f"Error: {self.fail} broke\n")
        if argv[1] == "build":  # the image's content: here, the commit it was built from
            self.content = hashlib.sha256(argv[argv.index("-t") + 1].encode()).hexdigest()
        if argv[1] == "push":
            reference = argv[2]
            repository = reference.split("/", 1)[1].rsplit(":", 1)[0]
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": 1,
                    "digest": "sha256:" + getattr(self, "content", "a" * 64),
                },
                # moto derives the image digest from the layers: one per content.
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": 1,
                        "digest": "sha256:" + getattr(self, "content", "a" * 64),
                    }
                ],
            }
            # A registry takes an identical re-push without complaint; moto's put_image does not.
            with contextlib.suppress(self.ecr.exceptions.ImageAlreadyExistsException):
                self.ecr.put_image(
                    repositoryName=repository,
                    imageManifest=json.dumps(manifest),
                    imageTag=reference.rsplit(":", 1)[1],
                )
        return subprocess.CompletedProcess(argv, 0, "", "")

    def verbs(self) -> list[str]:
        return [argv[1] for argv, _ in self.calls]


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def make_repo(root: Path) -> Path:
    """A git checkout holding docker/Dockerfile, like the scheduler's own repository."""
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "Dockerfile").write_text("FROM scratch\n")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "image"], check=True)
    return root


def git_sha(root: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip()


@pytest.fixture
def settings(aws_settings: AwsSettings, tmp_path: Path) -> AwsSettings:
    env = tmp_path / "dbt.env"
    env.write_text(ENV_TEXT)
    project = tmp_path / "project"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: shop\nprofile: shop\n")
    return replace(
        aws_settings, env_file=env, project_dir=project, artifacts_prefix="dbt-scheduler/artifacts"
    )


@pytest.fixture
def cluster(aws_clients: AwsClients, settings: AwsSettings) -> str:
    """The cluster with one EC2 container instance, as an ops team would have set it up."""
    aws_clients.ecs().create_cluster(clusterName=settings.cluster)
    # moto does not check the AMI, and describe_images(Owners=["amazon"]) (what
    # aws_helpers.register_container_instance does) costs ~4 s per call here.
    ec2 = aws_clients.client("ec2")
    instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    document = json.dumps({"instanceId": instance["InstanceId"]})
    aws_clients.ecs().register_container_instance(cluster=settings.cluster, instanceIdentityDocument=document)
    return settings.cluster


def rows(text: str) -> dict[str, list[str]]:
    """The results table as step → [status or action, detail] (first line of each row)."""
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if line.startswith("│") and cells[0] and len(cells) == 3:
            table[cells[0]] = cells[1:]
    return table


def console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=250, color_system=None, highlight=False), buffer


def config_for(settings: AwsSettings | None, tmp_path: Path) -> Config:
    return Config(path=tmp_path / "jobs.yaml", state_dir=tmp_path / "state", jobs={}, aws=settings)


def statuses(results: list[StepResult]) -> dict[str, str]:
    return {r.name: r.status.value for r in results}


def bootstrap(settings: AwsSettings, clients: AwsClients, repo_root: Path, **kwargs: Any) -> list[StepResult]:
    kwargs.setdefault("engine_runner", FakeEngine(clients))
    return run_steps(settings, clients, repo_root=repo_root, **kwargs)


# --------------------------------------------------------------------------- full runs


def test_full_bootstrap_creates_everything_then_reports_everything_unchanged(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path, cluster: str, tmp_path: Path
) -> None:
    engine = FakeEngine(aws_clients)
    out, buffer = console()
    code = run_bootstrap(
        config_for(settings, tmp_path),
        aws_clients,
        dry_run=False,
        only=None,
        force=False,
        console=out,
        engine_runner=engine,
        repo_root=repo_root,
    )
    text = buffer.getvalue()
    assert code == 0, text
    table = rows(text)
    assert {name: table[name][0] for name in PROVISIONING} == dict.fromkeys(PROVISIONING, "created")
    assert table["cluster"][0] == "unchanged" and "1 container instance(s)" in table["cluster"][1]
    assert "bootstrap: 6 created, 1 unchanged" in text  # the cluster is checked, never created
    assert engine.verbs() == ["login", "build", "push", "push"]

    again = bootstrap(settings, aws_clients, repo_root)
    assert statuses(again) == dict.fromkeys(STEP_NAMES, "unchanged"), again
    assert "use --force" in next(r.detail for r in again if r.name == "profiles")

    s3 = aws_clients.s3()
    head = s3.head_object(Bucket=settings.bucket, Key=settings.env_file_key)
    assert head["ServerSideEncryption"] == "AES256"
    block = s3.get_public_access_block(Bucket=settings.bucket)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    rule = s3.get_bucket_encryption(Bucket=settings.bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    repository = aws_clients.ecr().describe_repositories(repositoryNames=[settings.ecr_repository])[
        "repositories"
    ][0]
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    group = aws_clients.logs().describe_log_groups(logGroupNamePrefix=settings.log_group)["logGroups"][0]
    assert group["retentionInDays"] == 30


def test_a_changed_env_file_is_uploaded_again_encrypted_and_private(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    first = bootstrap(settings, aws_clients, repo_root, only="env-file")
    assert statuses(first) == {"env-file": "created"}
    assert "2 keys, sha256 " in first[0].detail

    assert settings.env_file is not None
    settings.env_file.write_text(ENV_TEXT + "SNOWFLAKE_ROLE=transformer\n")
    changed = bootstrap(settings, aws_clients, repo_root, only="env-file")
    assert statuses(changed) == {"env-file": "updated"}
    assert "3 keys" in changed[0].detail

    s3 = aws_clients.s3()
    obj = s3.get_object(Bucket=settings.bucket, Key=settings.env_file_key)
    assert obj["Body"].read().decode() == ENV_TEXT + "SNOWFLAKE_ROLE=transformer\n"
    assert obj["ServerSideEncryption"] == "AES256"
    assert s3.get_public_access_block(Bucket=settings.bucket)["PublicAccessBlockConfiguration"][
        "BlockPublicPolicy"
    ]
    assert statuses(bootstrap(settings, aws_clients, repo_root, only="env-file")) == {"env-file": "unchanged"}


def test_the_role_policies_are_exactly_what_ecs_needs(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    assert statuses(bootstrap(settings, aws_clients, repo_root, only="iam")) == {"iam": "created"}
    iam = aws_clients.iam()
    bucket, exec_role, task_role = settings.bucket, settings.execution_role, settings.task_role

    execution = iam.get_role_policy(RoleName=exec_role, PolicyName=EXECUTION_POLICY_NAME)["PolicyDocument"]
    assert execution == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadEnvFile",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/dbt-scheduler/dbt.env",
            },
            {
                "Sid": "LocateEnvFileBucket",
                "Effect": "Allow",
                "Action": "s3:GetBucketLocation",
                "Resource": f"arn:aws:s3:::{bucket}",
            },
        ],
    }
    task = iam.get_role_policy(RoleName=task_role, PolicyName=TASK_POLICY_NAME)["PolicyDocument"]
    assert task == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteRunArtifacts",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/dbt-scheduler/artifacts/*",
            }
        ],
    }
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    for role in (exec_role, task_role):
        assert iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"] == trust
    attached = iam.list_attached_role_policies(RoleName=exec_role)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [EXECUTION_MANAGED_POLICY]
    assert iam.list_attached_role_policies(RoleName=task_role)["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName=task_role)["PolicyNames"] == [TASK_POLICY_NAME]


def test_roles_changed_by_hand_are_put_back_and_reordering_is_not_a_change(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    bootstrap(settings, aws_clients, repo_root, only="iam")
    iam = aws_clients.iam()
    bucket = settings.bucket
    # The same grants, other order and list forms: not a change.
    reordered = {
        "Statement": [
            {
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Action": ["s3:GetBucketLocation"],
                "Effect": "Allow",
                "Sid": "LocateEnvFileBucket",
            },
            {
                "Sid": "ReadEnvFile",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": f"arn:aws:s3:::{bucket}/dbt-scheduler/dbt.env",
            },
        ],
        "Version": "2012-10-17",
    }
    iam.put_role_policy(
        RoleName=settings.execution_role,
        PolicyName=EXECUTION_POLICY_NAME,
        PolicyDocument=json.dumps(reordered),
    )
    assert statuses(bootstrap(settings, aws_clients, repo_root, only="iam")) == {"iam": "unchanged"}

    widened = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }
    iam.put_role_policy(
        RoleName=settings.task_role, PolicyName=TASK_POLICY_NAME, PolicyDocument=json.dumps(widened)
    )
    ec2_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam.update_assume_role_policy(RoleName=settings.execution_role, PolicyDocument=json.dumps(ec2_trust))
    results = bootstrap(settings, aws_clients, repo_root, only="iam")
    assert statuses(results) == {"iam": "updated"}
    assert "reset" in results[0].detail and "replace inline policy" in results[0].detail
    document = iam.get_role_policy(RoleName=settings.task_role, PolicyName=TASK_POLICY_NAME)["PolicyDocument"]
    assert document["Statement"][0]["Action"] == "s3:PutObject"
    trust = iam.get_role(RoleName=settings.execution_role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_task_definition_content_and_a_new_revision_only_when_it_changes(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    first = bootstrap(settings, aws_clients, repo_root, only="image,iam,log-group,task-definition")
    assert statuses(first)["task-definition"] == "created"
    ecs = aws_clients.ecs()
    definition = ecs.describe_task_definition(taskDefinition=settings.task_family)["taskDefinition"]
    assert definition["revision"] == 1
    assert definition["requiresCompatibilities"] == ["EC2"]
    assert definition["networkMode"] == "bridge"
    assert (definition["cpu"], definition["memory"]) == ("1024", "2048")
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/"
    assert definition["executionRoleArn"] == role_arn + settings.execution_role
    assert definition["taskRoleArn"] == role_arn + settings.task_role
    [container] = definition["containerDefinitions"]
    assert container["name"] == "dbt" and container["essential"] is True
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{settings.ecr_repository}"
    assert container["image"] == f"{uri}@{latest_digest(aws_clients, settings)}"  # by digest, not :latest
    assert container["environmentFiles"] == [
        {"value": f"arn:aws:s3:::{settings.bucket}/dbt-scheduler/dbt.env", "type": "s3"}
    ]
    assert container["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": settings.log_group,
            "awslogs-region": REGION,
            "awslogs-stream-prefix": "dbt",
        },
    }
    assert container["linuxParameters"]["initProcessEnabled"] is True

    same = bootstrap(settings, aws_clients, repo_root, only="task-definition")
    assert statuses(same) == {"task-definition": "unchanged"}
    assert same[0].detail == f"{settings.task_family}:1"

    bigger = replace(settings, cpu=2048)
    changed = bootstrap(bigger, aws_clients, repo_root, only="task-definition")
    assert statuses(changed) == {"task-definition": "updated"}
    assert "cpu 1024 → 2048" in changed[0].detail
    assert (
        ecs.describe_task_definition(taskDefinition=settings.task_family)["taskDefinition"]["revision"] == 2
    )
    assert statuses(bootstrap(bigger, aws_clients, repo_root, only="task-definition")) == {
        "task-definition": "unchanged"
    }
    assert (
        ecs.describe_task_definition(taskDefinition=settings.task_family)["taskDefinition"]["revision"] == 2
    )

    # Revision 2 deregistered: the comparison is with the latest ACTIVE one (1, cpu 1024).
    ecs.deregister_task_definition(taskDefinition=f"{settings.task_family}:2")
    back = bootstrap(settings, aws_clients, repo_root, only="task-definition")
    assert statuses(back) == {"task-definition": "unchanged"}
    assert back[0].detail == f"{settings.task_family}:1"


def latest_digest(clients: AwsClients, settings: AwsSettings) -> str:
    images = clients.ecr().describe_images(
        repositoryName=settings.ecr_repository, imageIds=[{"imageTag": "latest"}]
    )["imageDetails"]
    return str(images[0]["imageDigest"])


def commit(root: Path) -> None:
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    (root / "docker" / "Dockerfile").write_text((root / "docker" / "Dockerfile").read_text() + "# next\n")
    subprocess.run([*git, "commit", "-qam", "next"], check=True)


def test_a_new_image_makes_a_new_revision_naming_its_digest(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    """`:latest` moves with every push; the task definition names the digest, so the same
    image twice is unchanged and a new one is a new revision (ECS never runs an image other
    than the registered one)."""
    ecs = aws_clients.ecs()
    steps = "image,iam,log-group,task-definition"
    first = bootstrap(settings, aws_clients, repo_root, only=steps)
    digest = latest_digest(aws_clients, settings)
    again = bootstrap(settings, aws_clients, repo_root, only=steps)
    assert statuses(first)["task-definition"] == "created"
    assert (
        statuses(again)["task-definition"] == "unchanged" and latest_digest(aws_clients, settings) == digest
    )

    commit(repo_root)
    pushed = bootstrap(settings, aws_clients, repo_root, only=steps)
    new_digest = latest_digest(aws_clients, settings)
    assert new_digest != digest
    assert statuses(pushed)["image"] == "updated" and statuses(pushed)["task-definition"] == "updated"
    definition = ecs.describe_task_definition(taskDefinition=settings.task_family)["taskDefinition"]
    assert definition["revision"] == 2
    assert definition["containerDefinitions"][0]["image"].endswith(f"@{new_digest}")
    assert f"@{new_digest}" in pushed[-1].detail


def test_an_image_elsewhere_is_kept_as_written_with_a_warning_unless_pinned(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    tagged = replace(settings, image="ghcr.io/acme/dbt:2026.12")
    results = bootstrap(tagged, aws_clients, repo_root, only="iam,task-definition")
    assert statuses(results)["task-definition"] == "created"
    assert any("names a tag, which can move" in w for w in results[-1].warnings)
    pinned = replace(settings, image="ghcr.io/acme/dbt@sha256:" + "b" * 64)
    results = bootstrap(pinned, aws_clients, repo_root, only="task-definition")
    assert statuses(results) == {"task-definition": "updated"} and not results[-1].warnings
    definition = aws_clients.ecs().describe_task_definition(taskDefinition=settings.task_family)[
        "taskDefinition"
    ]
    assert definition["containerDefinitions"][0]["image"] == pinned.image


def test_fargate_task_definition_uses_awsvpc(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    fargate = replace(settings, launch_type="FARGATE", image="example.org/dbt:1")
    results = bootstrap(fargate, aws_clients, repo_root, only="iam,task-definition")
    assert statuses(results) == {"iam": "created", "task-definition": "created"}
    definition = aws_clients.ecs().describe_task_definition(taskDefinition=settings.task_family)[
        "taskDefinition"
    ]
    assert definition["networkMode"] == "awsvpc"
    assert sorted(definition["requiresCompatibilities"]) == ["EC2", "FARGATE"]
    assert definition["containerDefinitions"][0]["image"] == "example.org/dbt:1"


def test_normalising_ignores_what_aws_adds() -> None:
    ours = {
        "family": "f",
        "cpu": "1024",
        "memory": "2048",
        "requiresCompatibilities": ["FARGATE", "EC2"],
        "containerDefinitions": [{"name": "dbt", "image": "i", "essential": True}],
    }
    described = {
        **ours,
        "taskDefinitionArn": "arn:aws:ecs:eu-west-1:1:task-definition/f:3",
        "revision": 3,
        "status": "ACTIVE",
        "compatibilities": ["EC2", "FARGATE"],
        "requiresCompatibilities": ["EC2", "FARGATE"],
        "volumes": [],
        "placementConstraints": [],
        "enableFaultInjection": False,
        "containerDefinitions": [
            {
                "name": "dbt",
                "image": "i",
                "cpu": 0,
                "portMappings": [],
                "essential": True,
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
                "systemControls": [],
                "secrets": [],  # no secrets
            }
        ],
    }
    assert normalise_task_definition(described) == normalise_task_definition(ours)
    secrets = [{"name": "B", "valueFrom": "arn:b"}, {"name": "A", "valueFrom": "arn:a"}]
    with_secrets = {**ours, "containerDefinitions": [{**ours["containerDefinitions"][0], "secrets": secrets}]}
    reordered = {
        **ours,
        "containerDefinitions": [{**ours["containerDefinitions"][0], "secrets": secrets[::-1]}],
    }
    assert normalise_task_definition(with_secrets) == normalise_task_definition(reordered)
    assert normalise_task_definition(with_secrets) != normalise_task_definition(ours)
    not_essential = {**ours, "containerDefinitions": [{"name": "dbt", "image": "i", "essential": False}]}
    assert normalise_task_definition(not_essential) != normalise_task_definition(ours)


def test_log_group_retention_change_is_an_update(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    assert statuses(bootstrap(settings, aws_clients, repo_root, only="log-group")) == {"log-group": "created"}
    results = bootstrap(replace(settings, log_retention_days=90), aws_clients, repo_root, only="log-group")
    assert statuses(results) == {"log-group": "updated"}
    assert "30 → 90 days" in results[0].detail
    group = aws_clients.logs().describe_log_groups(logGroupNamePrefix=settings.log_group)["logGroups"][0]
    assert group["retentionInDays"] == 90


# --------------------------------------------------------------------------- dry run, --only


def test_dry_run_on_an_empty_account_writes_nothing_and_prints_the_plan(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path, tmp_path: Path
) -> None:
    aws_clients.ecs().create_cluster(clusterName=settings.cluster)
    calls: list[str] = []
    for service in ("s3", "iam", "ecr", "logs", "ecs", "sts"):
        aws_clients.client(service).meta.events.register(
            "before-call", lambda model, **_: calls.append(model.name), unique_id="test-recorder"
        )
    engine = FakeEngine(aws_clients)
    out, buffer = console()
    try:
        code = run_bootstrap(
            config_for(settings, tmp_path),
            aws_clients,
            dry_run=True,
            only=None,
            force=False,
            console=out,
            engine_runner=engine,
            repo_root=repo_root,
        )
    finally:
        for service in ("s3", "iam", "ecr", "logs", "ecs", "sts"):
            aws_clients.client(service).meta.events.unregister("before-call", unique_id="test-recorder")
    text = buffer.getvalue()
    assert code == 0, text
    assert calls and all(name.startswith(("Describe", "Get", "List", "Head")) for name in calls), calls
    assert engine.calls == []
    assert "bootstrap plan (dry run: nothing written)" in text
    assert list(rows(text)) == list(STEP_NAMES)
    assert "create bucket" in text and "create role" in text and "register the first revision" in text
    assert "plan: 6 to change, 1 unchanged" in text
    assert f"{settings.cluster} has no container instances" in text

    s3, iam = aws_clients.s3(), aws_clients.iam()
    assert settings.bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    for role in (settings.execution_role, settings.task_role):
        with pytest.raises(iam.exceptions.NoSuchEntityException):
            iam.get_role(RoleName=role)
    with pytest.raises(aws_clients.ecr().exceptions.RepositoryNotFoundException):
        aws_clients.ecr().describe_repositories(repositoryNames=[settings.ecr_repository])
    assert aws_clients.logs().describe_log_groups(logGroupNamePrefix=settings.log_group)["logGroups"] == []
    assert settings.project_dir is not None and not (settings.project_dir / "profiles.yml").exists()
    with pytest.raises(aws_clients.ecs().exceptions.ClientException):
        aws_clients.ecs().describe_task_definition(taskDefinition=settings.task_family)


def test_dry_run_guard_refuses_a_write(settings: AwsSettings, aws_clients: AwsClients) -> None:
    from lib.bootstrap.command import read_only

    with read_only(aws_clients), pytest.raises(PermissionError, match="CreateBucket"):
        aws_clients.s3().create_bucket(Bucket="never-created-bucket")
    aws_clients.logs().describe_log_groups(logGroupNamePrefix="/x")  # hooks are gone afterwards


def test_only_iam_runs_only_that_step(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    engine = FakeEngine(aws_clients)
    results = bootstrap(settings, aws_clients, repo_root, only="iam", engine_runner=engine)
    assert statuses(results) == {"iam": "created"}
    assert engine.calls == []
    assert settings.bucket not in [b["Name"] for b in aws_clients.s3().list_buckets()["Buckets"]]
    assert aws_clients.logs().describe_log_groups(logGroupNamePrefix=settings.log_group)["logGroups"] == []
    assert settings.project_dir is not None and not (settings.project_dir / "profiles.yml").exists()


def test_configuration_errors_exit_2_before_anything_runs(
    settings: AwsSettings, aws_clients: AwsClients, tmp_path: Path
) -> None:
    def run(aws: AwsSettings | None, only: str | None = None) -> tuple[int, str]:
        out, buffer = console()
        code = run_bootstrap(
            config_for(aws, tmp_path), aws_clients, dry_run=False, only=only, force=False, console=out
        )
        return code, buffer.getvalue()

    code, text = run(None)
    assert code == 2 and "aws: missing" in text
    code, text = run(settings, only="iamm")
    assert code == 2 and "unknown step 'iamm': did you mean 'iam'?" in text
    code, text = run(replace(settings, bucket=None), only="iam")
    assert code == 2 and "jobs.yaml aws.bucket: missing" in text
    code, text = run(replace(settings, env_file_key="dbt-scheduler/dbt.txt"), only="env-file")
    assert code == 2 and "must end in .env" in text
    code, text = run(replace(settings, log_retention_days=10), only="log-group")
    assert code == 2 and "not a CloudWatch retention" in text
    assert aws_clients.logs().describe_log_groups(logGroupNamePrefix=settings.log_group)["logGroups"] == []


# --------------------------------------------------------------------------- env file checks


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("dbt.env", b"GOOD=1\nMY-VAR=x\n", ":2: 'MY-VAR' is not a valid variable name"),
        ("dbt.env", b"GOOD=1\n1ST=x\n", ":2: '1ST' is not a valid variable name"),
        ("dbt.env", b"GOOD=1\n\nNO_EQUALS_SIGN\n", ":3: no '=' (ECS ignores such a line)"),
        ("dbt.txt", b"GOOD=1\n", "dbt.txt: the file name must end in .env"),
        ("dbt.env", b"GOOD=1\nBAD=caf\xe9\n", ":2: not UTF-8 (byte 0xe9 at column 8)"),
        ("dbt.env", b"export GOOD=1\n", ":1: GOOD: remove `export `"),
        ("dbt.env", b"GOOD = 1\n", ":1: GOOD: remove the spaces around the name and '='"),
        ("dbt.env", b'GOOD="quoted"\n', ":1: GOOD: python-dotenv and ECS read this value differently"),
        ("dbt.env", b"GOOD=1 # note\n", ":1: GOOD: python-dotenv and ECS read this value differently"),
        ("dbt.env", b'A=1\nGOOD="two\nlines"\n', ":2: GOOD's value spans several lines"),
        ("dbt.env", b"GOOD=1\nGOOD=2\n", ":2: GOOD is already set on line 1"),
        ("dbt.env", b"GOOD=1\n  # old=2\n", ":2: an indented comment"),
    ],
)
def test_env_file_errors_name_file_and_line(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    check = check_env_file(path)
    assert not check.ok
    assert any(expected in error and str(path) in error for error in check.errors), check.errors


def test_a_valid_env_file_counts_keys_and_warns_on_empty_values(tmp_path: Path) -> None:
    path = tmp_path / "dbt.env"
    path.write_bytes(b"# comment\n\nA=1\r\nB=x=y\nEMPTY=\n")
    check = check_env_file(path)
    assert check.ok, check.errors
    assert check.names == ("A", "B", "EMPTY")
    assert check.summary().startswith("3 keys, sha256 ")
    assert check.warnings == (
        f"{path}:5: EMPTY is empty: ECS skips such a line, so EMPTY is unset in the task",
    )


def test_an_invalid_env_file_fails_the_step_and_the_rest_still_run(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path, tmp_path: Path
) -> None:
    assert settings.env_file is not None
    settings.env_file.write_text(f"SNOWFLAKE_USER={USER}\nDBT_ENV_SECRET_SNOWFLAKE_PASSWORD='{SECRET}'\n")
    out, buffer = console()
    code = run_bootstrap(
        config_for(replace(settings, image="example.org/dbt:1"), tmp_path),
        aws_clients,
        dry_run=False,
        only="env-file,iam,log-group,task-definition",
        force=False,
        console=out,
        repo_root=repo_root,
    )
    text = buffer.getvalue()
    assert code == 1
    assert (
        f"env-file: {settings.env_file}:2: DBT_ENV_SECRET_SNOWFLAKE_PASSWORD: python-dotenv and ECS" in text
    )
    table = rows(text)
    assert table["task-definition"] == ["skipped", "env-file failed"]
    assert table["iam"][0] == "created" and table["log-group"][0] == "created"
    assert SECRET not in text and USER not in text


# --------------------------------------------------------------------------- image


def test_image_step_logs_in_through_stdin_then_builds_tags_and_pushes_with_podman(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    engine = FakeEngine(aws_clients)
    results = bootstrap(
        replace(settings, engine="podman"), aws_clients, repo_root, only="image", engine_runner=engine
    )
    assert statuses(results) == {"image": "created"}
    sha = git_sha(repo_root)
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{settings.ecr_repository}"
    token = aws_clients.ecr().get_authorization_token()["authorizationData"][0]
    import base64

    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert engine.calls == [
        (["podman", "login", "--username", user, "--password-stdin", registry], password),
        (
            [
                "podman",
                "build",
                "-f",
                str(repo_root / "docker" / "Dockerfile"),
                "-t",
                f"{uri}:{sha}",
                "-t",
                f"{uri}:latest",
                str(repo_root),
            ],
            None,
        ),
        (["podman", "push", f"{uri}:{sha}"], None),
        (["podman", "push", f"{uri}:latest"], None),
    ]
    assert all(password not in " ".join(argv) for argv, _ in engine.calls)
    assert f"{uri}:{sha}" in results[0].detail and password not in results[0].detail


def test_image_is_unchanged_when_the_sha_tag_is_in_ecr_and_force_rebuilds(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    bootstrap(settings, aws_clients, repo_root, only="image")
    engine = FakeEngine(aws_clients)
    again = bootstrap(settings, aws_clients, repo_root, only="image", engine_runner=engine)
    assert statuses(again) == {"image": "unchanged"} and engine.calls == []
    assert "use --force" in again[0].detail
    forced = bootstrap(settings, aws_clients, repo_root, only="image", engine_runner=engine, force=True)
    assert statuses(forced) == {"image": "updated"}
    assert engine.verbs() == ["login", "build", "push", "push"]

    (repo_root / "docker" / "Dockerfile").write_text("FROM scratch\nLABEL v=2\n")
    subprocess.run(
        ["git", "-C", str(repo_root), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qam", "v2"],
        check=True,
    )
    new_commit = bootstrap(settings, aws_clients, repo_root, only="image")
    assert statuses(new_commit) == {"image": "updated"}
    assert git_sha(repo_root) in new_commit[0].detail


def test_a_failing_engine_fails_the_step_without_printing_the_password(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    engine = FakeEngine(aws_clients, fail="build")
    results = bootstrap(settings, aws_clients, repo_root, only="image", engine_runner=engine)
    assert statuses(results) == {"image": "failed"}
    assert results[0].detail == "docker build failed (exit 1): Error: build broke"
    assert engine.verbs() == ["login", "build"]

    def missing(argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(argv[0])

    results = bootstrap(settings, aws_clients, repo_root, only="image", engine_runner=missing)
    assert results[0].detail.startswith("docker not found on PATH")


def test_no_dockerfile_is_a_failed_image_step(
    settings: AwsSettings, aws_clients: AwsClients, tmp_path: Path
) -> None:
    results = bootstrap(settings, aws_clients, tmp_path, only="image")
    assert statuses(results) == {"image": "failed"}
    assert "docker/Dockerfile not found" in results[0].detail


def test_an_installed_package_has_no_source_tree_and_the_image_step_says_where_to_build(
    settings: AwsSettings, aws_clients: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed with pip there is no docker/Dockerfile beside lib/ (lib/shipped.py)."""
    import lib.shipped

    monkeypatch.setattr(lib.shipped, "SOURCE_TREE", Path("/nonexistent"))
    results = run_steps(settings, aws_clients, only="image")
    assert statuses(results) == {"image": "failed"}
    assert "installed package" in results[0].detail and "from a clone" in results[0].detail


# --------------------------------------------------------------------------- profiles


def test_profiles_yml_is_written_when_missing_and_kept_without_force(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    assert settings.project_dir is not None
    target = settings.project_dir / "profiles.yml"
    assert statuses(bootstrap(settings, aws_clients, repo_root, only="profiles")) == {"profiles": "created"}
    profiles = yaml.safe_load(target.read_text())
    assert profiles["shop"]["target"] == "dev"
    dev, prod = profiles["shop"]["outputs"]["dev"], profiles["shop"]["outputs"]["prod"]
    assert dev["type"] == "duckdb" and not Path(dev["path"]).is_absolute()
    assert prod["type"] == "snowflake"
    assert prod["password"] == "{{ env_var('DBT_ENV_SECRET_SNOWFLAKE_PASSWORD') }}"
    for key in ("account", "user", "role", "warehouse", "database", "schema"):
        assert prod[key].startswith("{{ env_var('SNOWFLAKE_"), key

    target.write_text("shop: {target: mine}\n")
    kept = bootstrap(settings, aws_clients, repo_root, only="profiles")
    assert statuses(kept) == {"profiles": "unchanged"} and "use --force" in kept[0].detail
    assert target.read_text() == "shop: {target: mine}\n"

    forced = bootstrap(settings, aws_clients, repo_root, only="profiles", force=True)
    assert statuses(forced) == {"profiles": "updated"}
    assert (settings.project_dir / "profiles.yml.bak").read_text() == "shop: {target: mine}\n"
    assert "DBT_ENV_SECRET_SNOWFLAKE_PASSWORD" in target.read_text()

    unset = bootstrap(replace(settings, project_dir=None), aws_clients, repo_root, only="profiles")
    assert statuses(unset) == {"profiles": "skipped"}


# --------------------------------------------------------------------------- output and errors


def test_env_file_values_never_appear_in_the_output(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path, cluster: str, tmp_path: Path
) -> None:
    config = config_for(settings, tmp_path)
    texts = []
    for dry_run in (True, False, False):
        out, buffer = console()
        run_bootstrap(
            config,
            aws_clients,
            dry_run=dry_run,
            only=None,
            force=False,
            console=out,
            engine_runner=FakeEngine(aws_clients),
            repo_root=repo_root,
        )
        texts.append(buffer.getvalue())
    for text in texts:
        assert "2 keys, sha256 " in text
        assert SECRET not in text and USER not in text


def test_a_missing_cluster_fails_with_the_fix_and_an_empty_one_warns(
    settings: AwsSettings, aws_clients: AwsClients, repo_root: Path
) -> None:
    missing = bootstrap(settings, aws_clients, repo_root, only="cluster")
    assert statuses(missing) == {"cluster": "failed"}
    assert (
        f"aws ecs create-cluster --cluster-name {settings.cluster}) or fix aws.cluster" in missing[0].detail
    )

    aws_clients.ecs().create_cluster(clusterName=settings.cluster)
    empty = bootstrap(settings, aws_clients, repo_root, only="cluster")
    assert statuses(empty) == {"cluster": "unchanged"}
    assert "no container instances" in empty[0].warnings[0]
    assert (
        bootstrap(replace(settings, launch_type="FARGATE"), aws_clients, repo_root, only="cluster")[
            0
        ].warnings
        == ()
    )


DENIED = (
    f"User: arn:aws:iam::{ACCOUNT}:user/ops is not authorized to perform: iam:CreateRole "
    f"on resource: arn:aws:iam::{ACCOUNT}:role/{{role}}"
)


class DeniedIam(AwsClients):
    """moto allows everything: the iam client here is stubbed to answer like a denied AWS."""

    def __init__(self, settings: AwsSettings) -> None:
        super().__init__(settings)
        client = boto3.client("iam", region_name=settings.region, endpoint_url=settings.endpoint_url)
        self.stubber = Stubber(client)
        self.stubber.add_client_error("get_role", "NoSuchEntity", "Role not found", 404)
        self.stubber.add_client_error(
            "create_role",
            "AccessDenied",
            DENIED.format(role=settings.execution_role),
            403,
        )
        self.stubber.activate()
        self._clients["iam"] = client


def test_access_denied_is_one_line_naming_the_permission_and_dependents_are_skipped(
    settings: AwsSettings, repo_root: Path, tmp_path: Path
) -> None:
    clients = DeniedIam(replace(settings, image="example.org/dbt:1"))
    out, buffer = console()
    code = run_bootstrap(
        config_for(clients.settings, tmp_path),
        clients,
        dry_run=False,
        only="iam,log-group,task-definition",
        force=False,
        console=out,
        repo_root=repo_root,
    )
    text = buffer.getvalue()
    assert code == 1
    failure = [line for line in text.splitlines() if line.startswith("iam: ")]
    assert failure == [
        f"iam: AccessDenied: {DENIED.format(role=settings.execution_role)} "
        "(bootstrap needs iam:CreateRole: see `bootstrap --ops-policy bootstrap`)"
    ]
    table = rows(text)
    assert table["log-group"][0] == "created"
    assert table["task-definition"] == ["skipped", "iam failed"]


def test_a_bug_in_a_step_is_reported_not_raised() -> None:
    assert describe_error(KeyError("x")).startswith("internal error KeyError")


# --------------------------------------------------------------------------- identity policies


README_SETTINGS = AwsSettings(region="eu-west-1", bucket="my-dbt-bucket")  # the README's example
ANY = "arn:aws:{service}:eu-west-1:*:{resource}"
ROLES = ["arn:aws:iam::*:role/dbt-scheduler-execution", "arn:aws:iam::*:role/dbt-scheduler-task"]
PASS_ROLES = {
    "Sid": "PassTaskRoles",
    "Effect": "Allow",
    "Action": "iam:PassRole",
    "Resource": ROLES,
    "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
}


def actions(policy: dict[str, Any]) -> set[str]:
    return {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }


def test_the_runtime_policy_is_exactly_what_running_ecs_jobs_needs() -> None:
    """The ops box's policy: run, watch and stop the family's tasks on the one cluster, pass
    the two roles to ECS, read the task logs and the artifacts — nothing that provisions."""
    cluster = ANY.format(service="ecs", resource="cluster/dbt")
    assert runtime_policy(README_SETTINGS) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RunDbtTasks",
                "Effect": "Allow",
                "Action": "ecs:RunTask",
                "Resource": ANY.format(service="ecs", resource="task-definition/dbt-scheduler:*"),
                "Condition": {"ArnEquals": {"ecs:cluster": cluster}},
            },
            {
                "Sid": "WatchDbtTasks",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                "Resource": ANY.format(service="ecs", resource="task/dbt/*"),
            },
            PASS_ROLES,
            {
                "Sid": "ReadTaskLogs",
                "Effect": "Allow",
                "Action": "logs:GetLogEvents",
                "Resource": ANY.format(service="logs", resource="log-group:/ecs/dbt-scheduler:*"),
            },
            {
                "Sid": "ReadRunArtifacts",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::my-dbt-bucket/dbt-scheduler/artifacts/*",
            },
        ],
    }
    granted = actions(runtime_policy(README_SETTINGS))
    assert granted == set(RUNTIME_OPERATION_ACTIONS.values()) | {"iam:PassRole"}
    assert not {a for a in granted if a.startswith(("iam:Put", "iam:Create", "iam:Attach", "ecr:"))}
    assert "ecs:RegisterTaskDefinition" not in granted


def test_the_bootstrap_policy_is_exactly_what_provisioning_needs() -> None:
    repository = ANY.format(service="ecr", resource="repository/dbt-scheduler")
    log_group = ANY.format(service="logs", resource="log-group:/ecs/dbt-scheduler")
    push = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ]
    assert bootstrap_policy(README_SETTINGS) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CheckCluster",
                "Effect": "Allow",
                "Action": "ecs:DescribeClusters",
                "Resource": ANY.format(service="ecs", resource="cluster/dbt"),
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
            PASS_ROLES,
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
                "Resource": ROLES,
            },
            {
                "Sid": "AttachExecutionPolicy",
                "Effect": "Allow",
                "Action": "iam:AttachRolePolicy",
                "Resource": ROLES[0],
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
                "Resource": "arn:aws:s3:::my-dbt-bucket",
            },
            {
                "Sid": "EnvFileObject",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": "arn:aws:s3:::my-dbt-bucket/dbt-scheduler/dbt.env",
            },
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "EcrRepository",
                "Effect": "Allow",
                "Action": [
                    "ecr:CreateRepository",
                    "ecr:DescribeRepositories",
                    "ecr:DescribeImages",
                    "ecr:PutImageScanningConfiguration",
                    *push,
                ],
                "Resource": repository,
            },
            {
                "Sid": "FindLogGroups",
                "Effect": "Allow",
                "Action": "logs:DescribeLogGroups",
                "Resource": ANY.format(service="logs", resource="log-group:*"),
            },
            {
                "Sid": "LogGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy"],
                "Resource": [log_group, f"{log_group}:*"],
            },
        ],
    }
    # Every call a bootstrap step makes (the map describe_error names denied calls with); the
    # iam step looks Secrets Manager secrets up only when aws.secrets names some.
    secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dbt/pw"
    with_secrets = replace(README_SETTINGS, secrets=(("DBT_ENV_SECRET_PW", secret),))
    assert set(OPERATION_ACTIONS.values()) <= actions(bootstrap_policy(with_secrets))
    assert set(OPERATION_ACTIONS.values()) - actions(bootstrap_policy(README_SETTINGS)) == {
        "secretsmanager:DescribeSecret"
    }


def test_the_readme_shows_the_runtime_policy_the_code_prints() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    after = readme.split("the runtime policy is:", 1)[1]
    block = after.split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == runtime_policy(README_SETTINGS)


def test_both_policies_are_accepted_by_iam_and_narrow_to_an_account(
    settings: AwsSettings, aws_clients: AwsClients
) -> None:
    for which, document in (("runtime", runtime_policy), ("bootstrap", bootstrap_policy)):
        policy = document(settings, account=ACCOUNT)
        assert "*:role/" not in json.dumps(policy) and f"::{ACCOUNT}:role/" in json.dumps(policy)
        assert same_policy(policy, json.loads(json.dumps(policy)))
        # IAM's own validation (moto checks the grammar of a policy document).
        aws_clients.iam().create_policy(
            PolicyName=f"{which}-{settings.task_family}", PolicyDocument=json.dumps(document(settings))
        )


def test_step_status_values() -> None:
    assert [s.value for s in StepStatus] == [
        "created",
        "updated",
        "unchanged",
        "skipped",
        "failed",
        "planned",
    ]
