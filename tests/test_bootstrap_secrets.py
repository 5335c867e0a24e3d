"""aws.secrets through `scheduler.py bootstrap`, against a real moto server over HTTP.

The parameter, the secrets and the KMS key are made in moto (SSM, Secrets Manager, KMS);
the task definition's container `secrets` and the execution role's inline policy are
compared whole, as IAM and ECS hand them back.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lib.aws.clients import AwsClients
from lib.bootstrap import bootstrap_policy, runtime_policy
from lib.bootstrap.policies import EXECUTION_POLICY_NAME, execution_role_policy
from lib.config import parse_config
from lib.models import AwsSettings
from tests.aws_helpers import ACCOUNT, REGION
from tests.test_bootstrap import README_SETTINGS, bootstrap, make_repo, statuses

STEPS = "image,iam,log-group,task-definition"
# The env file keeps the settings that are not secret.
PLAIN_ENV = "SNOWFLAKE_ACCOUNT=acme-eu\nSNOWFLAKE_ROLE=transformer\n"
PASSWORD = "hunter2-Zq9xK7"


def env_file_statements(settings: AwsSettings) -> list[dict[str, Any]]:
    """What the execution role's policy holds without secrets (test_bootstrap asserts it too)."""
    return [
        {
            "Sid": "ReadEnvFile",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{settings.bucket}/dbt-scheduler/dbt.env",
        },
        {
            "Sid": "LocateEnvFileBucket",
            "Effect": "Allow",
            "Action": "s3:GetBucketLocation",
            "Resource": f"arn:aws:s3:::{settings.bucket}",
        },
    ]


class Made:
    """What the test made in moto: a KMS key, a SecureString parameter, two secrets."""

    def __init__(self, clients: AwsClients, settings: AwsSettings) -> None:
        unique = settings.task_family  # moto's state is shared by the session: names per test
        self.key = clients.client("kms").create_key(Description="dbt secrets")["KeyMetadata"]["Arn"]
        ssm = clients.client("ssm")
        ssm.put_parameter(
            Name=f"/{unique}/snowflake_password", Value=PASSWORD, Type="SecureString", KeyId=self.key
        )
        self.parameter = ssm.get_parameter(Name=f"/{unique}/snowflake_password")["Parameter"]["ARN"]
        sm = clients.client("secretsmanager")
        self.token = sm.create_secret(Name=f"{unique}/git-token", SecretString="ghp_x", KmsKeyId=self.key)[
            "ARN"
        ]
        warehouse = sm.create_secret(
            Name=f"{unique}/warehouse", SecretString=json.dumps({"user": "loader", "password": PASSWORD})
        )["ARN"]
        # The same secret written without the `-` and 6 random characters AWS appends to its name.
        self.warehouse_partial, random = warehouse.rsplit("-", 1)
        assert self.warehouse_partial.endswith(f":secret:{unique}/warehouse") and len(random) == 6

    def secrets(self) -> tuple[tuple[str, str], ...]:
        return (
            ("DBT_ENV_SECRET_GIT_TOKEN", self.token),
            ("DBT_ENV_SECRET_SNOWFLAKE_PASSWORD", self.parameter),
            ("SNOWFLAKE_USER", f"{self.warehouse_partial}:user::"),
        )


@pytest.fixture
def plain(aws_settings: AwsSettings, tmp_path: Path) -> AwsSettings:
    """The test's settings (names unique to it), with an env file holding no secret."""
    env = tmp_path / "dbt.env"
    env.write_text(PLAIN_ENV)
    return replace(aws_settings, env_file=env)


@pytest.fixture
def made(aws_clients: AwsClients, plain: AwsSettings) -> Made:
    return Made(aws_clients, plain)


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def execution_policy(clients: AwsClients, settings: AwsSettings) -> Any:
    iam = clients.iam()
    return iam.get_role_policy(RoleName=settings.execution_role, PolicyName=EXECUTION_POLICY_NAME)[
        "PolicyDocument"
    ]


def latest(clients: AwsClients, settings: AwsSettings) -> dict[str, Any]:
    answer = clients.ecs().describe_task_definition(taskDefinition=settings.task_family)
    return dict(answer["taskDefinition"])


def test_secrets_reach_the_task_definition_and_the_execution_role_reads_exactly_them(
    plain: AwsSettings,
    aws_clients: AwsClients,
    repo_root: Path,
    made: Made,
) -> None:
    with_secrets = replace(plain, secrets=made.secrets(), kms_key=made.key)

    planned = bootstrap(with_secrets, aws_clients, repo_root, only=STEPS, dry_run=True)
    assert statuses(planned) == dict.fromkeys(STEPS.split(","), "planned")
    with pytest.raises(aws_clients.iam().exceptions.NoSuchEntityException):
        aws_clients.iam().get_role(RoleName=plain.execution_role)

    first = bootstrap(with_secrets, aws_clients, repo_root, only=STEPS)
    assert statuses(first) == dict.fromkeys(STEPS.split(","), "created")
    again = bootstrap(with_secrets, aws_clients, repo_root, only=STEPS)
    assert statuses(again) == dict.fromkeys(STEPS.split(","), "unchanged"), again

    definition = latest(aws_clients, plain)
    assert definition["revision"] == 1
    [container] = definition["containerDefinitions"]
    assert container["secrets"] == [
        {"name": "DBT_ENV_SECRET_GIT_TOKEN", "valueFrom": made.token},
        {"name": "DBT_ENV_SECRET_SNOWFLAKE_PASSWORD", "valueFrom": made.parameter},
        {"name": "SNOWFLAKE_USER", "valueFrom": f"{made.warehouse_partial}:user::"},
    ]
    assert container["environmentFiles"] == [
        {"value": f"arn:aws:s3:::{plain.bucket}/dbt-scheduler/dbt.env", "type": "s3"}
    ]
    assert "environment" not in container or container["environment"] == []
    assert execution_policy(aws_clients, plain) == {
        "Version": "2012-10-17",
        "Statement": [
            *env_file_statements(plain),
            {
                "Sid": "ReadSecretParameters",
                "Effect": "Allow",
                "Action": "ssm:GetParameters",
                "Resource": [
                    f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{plain.task_family}/snowflake_password"
                ],
            },
            {
                "Sid": "ReadSecrets",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                # The full ARN as it is; the partial one as AWS recommends, without its JSON key.
                "Resource": sorted([made.token, f"{made.warehouse_partial}-??????"]),
            },
            {"Sid": "DecryptSecrets", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": made.key},
        ],
    }
    assert (
        made.parameter == f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{plain.task_family}/snowflake_password"
    )
    # The task role gains nothing, and the ops box's run-time policy does not grow.
    task_policies = aws_clients.iam().list_role_policies(RoleName=plain.task_role)["PolicyNames"]
    assert task_policies == ["dbt-scheduler-artifacts"]
    assert runtime_policy(with_secrets) == runtime_policy(plain)

    # Secrets and key removed: their statements go, a new revision has no `secrets`.
    removed = bootstrap(plain, aws_clients, repo_root, only=STEPS)
    assert statuses(removed) == {
        "image": "unchanged",
        "iam": "updated",
        "log-group": "unchanged",
        "task-definition": "updated",
    }
    assert f"replace inline policy {EXECUTION_POLICY_NAME}" in removed[1].detail
    assert "container dbt: secrets" in removed[3].detail
    assert execution_policy(aws_clients, plain) == {
        "Version": "2012-10-17",
        "Statement": env_file_statements(plain),
    }
    definition = latest(aws_clients, plain)
    assert definition["revision"] == 2
    assert definition["containerDefinitions"][0].get("secrets", []) == []
    assert statuses(bootstrap(plain, aws_clients, repo_root, only=STEPS)) == dict.fromkeys(
        STEPS.split(","), "unchanged"
    )
    assert latest(aws_clients, plain)["revision"] == 2


def test_the_order_of_aws_secrets_makes_no_new_revision(
    plain: AwsSettings,
    aws_clients: AwsClients,
    repo_root: Path,
    made: Made,
) -> None:
    pairs = made.secrets()
    forward = replace(plain, secrets=pairs, image="example.org/dbt@sha256:" + "c" * 64)
    backward = replace(forward, secrets=tuple(reversed(pairs)))
    assert statuses(bootstrap(forward, aws_clients, repo_root, only="iam,task-definition")) == {
        "iam": "created",
        "task-definition": "created",
    }
    for _ in range(2):
        assert statuses(bootstrap(backward, aws_clients, repo_root, only="iam,task-definition")) == {
            "iam": "unchanged",
            "task-definition": "unchanged",
        }
    assert latest(aws_clients, plain)["revision"] == 1


def test_a_secret_in_another_region_is_looked_up_there(
    plain: AwsSettings,
    aws_clients: AwsClients,
    repo_root: Path,
) -> None:
    elsewhere = "us-east-1"
    secret = (
        AwsClients(replace(plain, region=elsewhere))
        .client("secretsmanager")
        .create_secret(Name=f"{plain.task_family}/far", SecretString="x")["ARN"]
    )
    assert f":{elsewhere}:" in secret
    partial = secret.rsplit("-", 1)[0]
    for written in (partial, secret):
        results = bootstrap(replace(plain, secrets=(("FAR", written),)), aws_clients, repo_root, only="iam")
        assert not results[0].failed, results
        statements = {s["Sid"]: s for s in execution_policy(aws_clients, plain)["Statement"]}
        expected = f"{partial}-??????" if written == partial else secret
        assert statements["ReadSecrets"]["Resource"] == [expected]


def test_a_missing_secret_fails_the_iam_step_before_anything_is_written(
    plain: AwsSettings,
    aws_clients: AwsClients,
    repo_root: Path,
) -> None:
    missing = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{plain.task_family}/nowhere"
    with_missing = replace(plain, secrets=(("DBT_ENV_SECRET_X", missing),), image="example.org/dbt:1")
    for _ in range(2):
        results = bootstrap(with_missing, aws_clients, repo_root, only="iam,task-definition")
        assert statuses(results) == {"iam": "failed", "task-definition": "skipped"}
        assert results[0].detail == (
            f"aws.secrets.DBT_ENV_SECRET_X: Secrets Manager has no secret {missing}: create it "
            "(aws secretsmanager create-secret --name …) or correct the ARN"
        )
    with pytest.raises(aws_clients.iam().exceptions.NoSuchEntityException):
        aws_clients.iam().get_role(RoleName=plain.execution_role)


def test_a_name_in_both_the_env_file_and_aws_secrets_fails_the_env_file_step(
    plain: AwsSettings, aws_clients: AwsClients, repo_root: Path, made: Made
) -> None:
    assert plain.env_file is not None
    both = replace(plain, secrets=made.secrets())
    for text, names in (
        (
            f"{PLAIN_ENV}DBT_ENV_SECRET_SNOWFLAKE_PASSWORD={PASSWORD}\n",
            "DBT_ENV_SECRET_SNOWFLAKE_PASSWORD is",
        ),
        (
            f"SNOWFLAKE_USER=loader\n{PLAIN_ENV}DBT_ENV_SECRET_GIT_TOKEN=x\n",
            "DBT_ENV_SECRET_GIT_TOKEN, SNOWFLAKE_USER are",
        ),
    ):
        plain.env_file.write_text(text)
        results = bootstrap(both, aws_clients, repo_root, only="env-file")
        assert statuses(results) == {"env-file": "failed"}
        assert results[0].detail == (
            f"{plain.env_file}: {names} also in aws.secrets: "
            "keep a secret in aws.secrets only and remove it from the env file"
        )
        assert PASSWORD not in results[0].detail
    assert plain.bucket not in [b["Name"] for b in aws_clients.s3().list_buckets()["Buckets"]]


def test_the_bootstrap_policy_lets_the_iam_step_look_up_secrets_and_nothing_else_grows() -> None:
    secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dbt/snowflake"
    parameter = "arn:aws:ssm:eu-west-1:123456789012:parameter/dbt/snowflake_password"
    with_secrets = replace(
        README_SETTINGS,
        secrets=(("A", f"{secret}:user::"), ("B", parameter), ("C", secret)),
        kms_key="arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    )
    plain, grown = bootstrap_policy(README_SETTINGS)["Statement"], bootstrap_policy(with_secrets)["Statement"]
    assert [s for s in grown if s.get("Sid") != "FindSecrets"] == plain
    assert [s for s in grown if s.get("Sid") == "FindSecrets"] == [
        {
            "Sid": "FindSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:DescribeSecret",
            "Resource": [secret, f"{secret}-??????"],
        }
    ]
    only_ssm = replace(README_SETTINGS, secrets=(("B", parameter),))
    assert bootstrap_policy(only_ssm) == bootstrap_policy(README_SETTINGS)
    assert runtime_policy(with_secrets) == runtime_policy(README_SETTINGS)


def test_the_readme_shows_the_statements_the_code_writes(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    after = readme.split("adds exactly these statements to the execution role's inline", 1)[1]
    shown = json.loads(after.split("```json\n", 1)[1].split("```", 1)[0])
    yaml_block = readme.split("# 2. jobs.yaml\n", 1)[1].split("```", 1)[0]
    aws = yaml.safe_load(yaml_block)["aws"]
    parsed = parse_config({"aws": aws, "jobs": {}}, base_dir=tmp_path).aws  # the example is valid
    assert parsed is not None and len(parsed.secrets) == 2 and parsed.kms_key == aws["kms_key"]
    secrets = sorted(aws["secrets"].values())
    written = execution_role_policy(
        aws["bucket"],
        "dbt-scheduler/dbt.env",
        parameters=[arn for arn in secrets if ":ssm:" in arn],
        # The example's secret ARN is a full one (with -AbCdEf): granted without its JSON key.
        secrets=[arn.split(":token::")[0] for arn in secrets if ":secretsmanager:" in arn],
        kms_key=aws["kms_key"],
    )
    assert written["Statement"][2:] == shown
