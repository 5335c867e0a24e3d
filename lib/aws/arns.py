"""The ARNs jobs.yaml names for ECS secrets and their KMS key, parsed in one place.

`aws.secrets` values are what ECS takes as a container secret's `valueFrom` (ECS developer
guide, "Pass sensitive data to an Amazon ECS container"):

- an SSM Parameter Store parameter, `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME` (the
  parameter `/dbt/x` is `…:parameter/dbt/x`, with one slash);
- a Secrets Manager secret, `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`, optionally
  followed by `:JSON-KEY:VERSION-STAGE:VERSION-ID` (a field may be empty, its colon stays)
  to inject one key of a JSON secret, or another version of it.

ECS also takes a bare parameter name, but the execution role's policy must name the exact
resources it may read, so jobs.yaml wants the ARN. `aws.kms_key` is a key ARN
(`arn:aws:kms:REGION:ACCOUNT:key/KEY-ID`): IAM authorises kms:Decrypt on the key an alias
points to, never on the alias, so an alias ARN is refused.

Pure: the config check (lib/config/keys.py) and the IAM documents (lib/bootstrap/) call
these on plain strings; nothing here talks to AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b…
_PARTITION = r"aws(?:-[a-z]+)*"
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_ACCOUNT = r"\d{12}"
_ARN = re.compile(
    r"arn:(?P<partition>[^:]*):(?P<service>[^:]*):(?P<region>[^:]*):(?P<account>[^:]*):(?P<rest>.*)"
)
_WHERE = re.compile(rf"{_PARTITION}:[a-z0-9-]+:{_REGION}:{_ACCOUNT}")
# What SSM allows in a parameter name: letters, digits, `_ . -`, and `/` between levels.
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
# What Secrets Manager allows in a secret name.
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]+")
_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}")
# Whitespace or a control character: no ARN holds one, and IAM would not match it.
_BLANK_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")

SSM = "ssm"
SECRETS_MANAGER = "secretsmanager"
# IAM's wildcard for the 6 random characters Secrets Manager appends to a secret's name in
# its ARN (`…:secret:dbt/pw-AbCdEf`): `…:secret:NAME-??????` matches the secret named NAME
# and no other, since every secret's ARN is its name, `-` and six characters — also when
# it is deleted and made again under that name (Secrets Manager user guide, "Limiting
# access to specific secrets", which recommends it over `NAME-*`).
SECRET_SUFFIX = "-??????"
_EXAMPLE_PARAMETER = "arn:aws:ssm:eu-west-1:123456789012:parameter/dbt/snowflake_password"
_EXAMPLE_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dbt/snowflake-AbCdEf"


@dataclass(frozen=True)
class SecretArn:
    """One `aws.secrets` value: the service it is in, and the ARN IAM authorises reading it on.

    `resource` is the parameter's ARN, or the secret's ARN without the
    `:JSON-KEY:VERSION-STAGE:VERSION-ID` suffix (GetSecretValue is authorised on the
    secret, whichever key or version is read). `json_suffix` is that suffix as written.
    """

    service: str  # SSM | SECRETS_MANAGER
    value_from: str  # as written: the task definition's valueFrom
    resource: str
    partition: str
    region: str
    account: str
    json_suffix: str = ""


def parse_secret_arn(text: str) -> SecretArn:
    """The parameter or secret `text` names; ValueError with the fix when it names neither."""
    if _BLANK_OR_CONTROL.search(text):
        raise ValueError(f"{text!r} contains whitespace or a control character, which no ARN holds")
    match = _ARN.fullmatch(text)
    if match is None:
        raise ValueError(_not_an_arn(text))
    service, rest = match["service"], match["rest"]
    if service not in (SSM, SECRETS_MANAGER):
        raise ValueError(
            f"{text!r} names a resource of {service or 'no service'}: ECS reads secrets from SSM Parameter "
            f"Store ({_EXAMPLE_PARAMETER}) or Secrets Manager ({_EXAMPLE_SECRET})"
        )
    if not _WHERE.fullmatch(f"{match['partition']}:{service}:{match['region']}:{match['account']}"):
        raise ValueError(
            f"{text!r} is not a valid ARN: its partition, Region and account are written like "
            "arn:aws:…:eu-west-1:123456789012:…"
        )
    where = {"partition": match["partition"], "region": match["region"], "account": match["account"]}
    if service == SSM:
        return SecretArn(SSM, text, _parameter_resource(text, rest), **where)
    return _secret(text, rest, where)


def _not_an_arn(text: str) -> str:
    name = text.lstrip("/")
    if name and ":" not in text:
        return (
            f"{text!r} is a name, not an ARN: give the full ARN, "
            f"arn:aws:ssm:REGION:ACCOUNT:parameter/{name} or "
            f"arn:aws:secretsmanager:REGION:ACCOUNT:secret:{name} "
            "(the execution role's policy names the exact resources it may read)"
        )
    return f"{text!r} is not an ARN: give the parameter's or secret's full ARN, e.g. {_EXAMPLE_PARAMETER}"


def _parameter_resource(text: str, rest: str) -> str:
    kind, _, name = rest.partition("/")
    if kind != "parameter" or not name:
        raise ValueError(f"{text!r} is not a parameter ARN: write arn:aws:ssm:REGION:ACCOUNT:parameter/NAME")
    if name.startswith("/"):
        fixed = text.replace("parameter//", "parameter/", 1)
        raise ValueError(
            f"{text!r} has two slashes after parameter: the ARN of the parameter /{name.lstrip('/')} "
            f"is {fixed}"
        )
    if not _PARAMETER_NAME.fullmatch(name):
        raise ValueError(
            f"{text!r}: {name!r} is not a parameter name (letters, digits, _ . - and / between levels; "
            "a version or label selector is not taken)"
        )
    return text


def _secret(text: str, rest: str, where: dict[str, str]) -> SecretArn:
    kind, _, after = rest.partition(":")
    if kind != "secret" or not after:
        raise ValueError(
            f"{text!r} is not a secret ARN: write arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME"
        )
    name, *fields = after.split(":")
    if fields and len(fields) != 3:
        raise ValueError(
            f"{text!r}: after the secret's name ECS takes :JSON-KEY:VERSION-STAGE:VERSION-ID, all three "
            f"(an empty one keeps its colon), e.g. {_EXAMPLE_SECRET}:password::"
        )
    if not _SECRET_NAME.fullmatch(name):
        raise ValueError(f"{text!r}: {name!r} is not a secret name (letters, digits and /_+=.@-)")
    base = text[: len(text) - len(after) + len(name)]
    suffix = text[len(base) :]
    return SecretArn(SECRETS_MANAGER, text, base, json_suffix=suffix, **where)


def parse_kms_key_arn(text: str) -> str:
    """`text` when it is a KMS key ARN; ValueError with the fix otherwise (an alias, a bare id)."""
    hint = "aws kms describe-key --key-id alias/NAME --query KeyMetadata.Arn prints it"
    if _BLANK_OR_CONTROL.search(text):
        raise ValueError(f"{text!r} contains whitespace or a control character, which no ARN holds")
    match = _ARN.fullmatch(text)
    if match is None or match["service"] != "kms":
        if text.startswith("alias/") or ":alias/" in text:
            raise ValueError(f"{text!r} is an alias: give the key's ARN ({hint})")
        raise ValueError(
            f"{text!r} is not a KMS key ARN: give the key's full ARN, "
            f"arn:aws:kms:REGION:ACCOUNT:key/KEY-ID ({hint})"
        )
    if not _WHERE.fullmatch(f"{match['partition']}:kms:{match['region']}:{match['account']}"):
        raise ValueError(
            f"{text!r} is not a valid ARN: its partition, Region and account are written like "
            "arn:aws:kms:eu-west-1:123456789012:key/…"
        )
    kind, _, key_id = match["rest"].partition("/")
    if kind == "alias":
        raise ValueError(
            f"{text!r} is an alias ARN: kms:Decrypt is authorised on the key an alias points to, "
            f"never on the alias, so give the key's ARN ({hint})"
        )
    if kind != "key" or not _KEY_ID.fullmatch(key_id):
        raise ValueError(
            f"{text!r} is not a KMS key ARN: write arn:aws:kms:REGION:ACCOUNT:key/KEY-ID "
            "(a key id is a UUID, or mrk-… for a multi-Region key)"
        )
    return text
