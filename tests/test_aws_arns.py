"""lib/aws/arns.py: the ARN forms aws.secrets and aws.kms_key take, and the fix for each other one."""

from __future__ import annotations

import pytest

from lib.aws.arns import SECRETS_MANAGER, SSM, parse_kms_key_arn, parse_secret_arn

PARAMETER = "arn:aws:ssm:eu-west-1:123456789012:parameter/dbt/snowflake_password"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dbt/snowflake-AbCdEf"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("text", "service", "resource", "suffix"),
    [
        (PARAMETER, SSM, PARAMETER, ""),
        (
            "arn:aws:ssm:us-east-1:123456789012:parameter/flat",
            SSM,
            "arn:aws:ssm:us-east-1:123456789012:parameter/flat",
            "",
        ),
        (
            "arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/a/b.c-d_e",
            SSM,
            "arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/a/b.c-d_e",
            "",
        ),
        (SECRET, SECRETS_MANAGER, SECRET, ""),
        (f"{SECRET}:password::", SECRETS_MANAGER, SECRET, ":password::"),
        (f"{SECRET}::AWSPREVIOUS:", SECRETS_MANAGER, SECRET, "::AWSPREVIOUS:"),
        (f"{SECRET}:user::0c2d-11", SECRETS_MANAGER, SECRET, ":user::0c2d-11"),
        # A partial ARN (no random suffix) is taken as written: bootstrap finds out which it is.
        (
            "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:prod/db+pw=x@y.z",
            SECRETS_MANAGER,
            "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:prod/db+pw=x@y.z",
            "",
        ),
    ],
)
def test_the_forms_ecs_takes_are_read_with_the_resource_iam_authorises(
    text: str, service: str, resource: str, suffix: str
) -> None:
    ref = parse_secret_arn(text)
    assert (ref.service, ref.value_from, ref.resource, ref.json_suffix) == (service, text, resource, suffix)


def test_an_arn_keeps_its_region_and_account() -> None:
    ref = parse_secret_arn("arn:aws:ssm:us-west-2:210987654321:parameter/x")
    assert (ref.partition, ref.region, ref.account) == ("aws", "us-west-2", "210987654321")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "/dbt/snowflake_password",
            "'/dbt/snowflake_password' is a name, not an ARN: give the full ARN, "
            "arn:aws:ssm:REGION:ACCOUNT:parameter/dbt/snowflake_password or "
            "arn:aws:secretsmanager:REGION:ACCOUNT:secret:dbt/snowflake_password "
            "(the execution role's policy names the exact resources it may read)",
        ),
        ("snowflake_password", "'snowflake_password' is a name, not an ARN: give the full ARN, arn:aws:ssm:"),
        (
            "ssm:dbt/x",
            "'ssm:dbt/x' is not an ARN: give the parameter's or secret's full ARN, e.g. arn:aws:ssm:",
        ),
        (
            "arn:aws:s3:::bucket/key",
            "'arn:aws:s3:::bucket/key' names a resource of s3: ECS reads secrets from",
        ),
        ("arn:aws:ssm:eu-west-1:1234:parameter/x", "is not a valid ARN: its partition, Region and account"),
        ("arn:aws:ssm:europe:123456789012:parameter/x", "is not a valid ARN"),
        ("arn:aws:ssm:eu-west-1:123456789012:document/x", "is not a parameter ARN: write arn:aws:ssm:"),
        ("arn:aws:ssm:eu-west-1:123456789012:parameter/", "is not a parameter ARN"),
        (
            "arn:aws:ssm:eu-west-1:123456789012:parameter//dbt/x",
            "has two slashes after parameter: the ARN of the parameter /dbt/x is "
            "arn:aws:ssm:eu-west-1:123456789012:parameter/dbt/x",
        ),
        ("arn:aws:ssm:eu-west-1:123456789012:parameter/dbt/x:3", "'dbt/x:3' is not a parameter name"),
        ("arn:aws:ssm:eu-west-1:123456789012:parameter/dbt/x/", "'dbt/x/' is not a parameter name"),
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
            "is not a secret ARN: write arn:aws:secretsmanager:",
        ),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:rotation:x", "is not a secret ARN"),
        (
            f"{SECRET}:password",
            "after the secret's name ECS takes :JSON-KEY:VERSION-STAGE:VERSION-ID, all three",
        ),
        (f"{SECRET}:password:", "all three (an empty one keeps its colon)"),
        (f"{SECRET}:a:b:c:d", "all three"),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:dbt/snow flake", "contains whitespace"),
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dbt/snow#flake",
            "'dbt/snow#flake' is not a secret name",
        ),
        (f"{PARAMETER}\n", "contains whitespace or a control character"),
    ],
)
def test_anything_else_is_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_secret_arn(text)
    assert message in str(info.value)


def test_a_kms_key_arn_is_kept_and_a_multi_region_key_too() -> None:
    assert parse_kms_key_arn(KEY) == KEY
    multi = "arn:aws:kms:eu-west-1:123456789012:key/mrk-" + "0" * 32
    assert parse_kms_key_arn(multi) == multi


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "arn:aws:kms:eu-west-1:123456789012:alias/dbt",
            "is an alias ARN: kms:Decrypt is authorised on the key an alias points to, never on the alias, "
            "so give the key's ARN (aws kms describe-key --key-id alias/NAME --query KeyMetadata.Arn "
            "prints it)",
        ),
        ("alias/dbt", "'alias/dbt' is an alias: give the key's ARN (aws kms describe-key"),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", "is not a KMS key ARN: give the key's full ARN"),
        (PARAMETER, "is not a KMS key ARN"),
        ("arn:aws:kms:eu-west-1:123456789012:key/not-a-key-id", "a key id is a UUID, or mrk-"),
        ("arn:aws:kms:eu-west-1:12:key/1234abcd-12ab-34cd-56ef-1234567890ab", "is not a valid ARN"),
        (f" {KEY}", "contains whitespace"),
    ],
)
def test_an_alias_or_a_bare_key_id_is_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_kms_key_arn(text)
    assert message in str(info.value)
