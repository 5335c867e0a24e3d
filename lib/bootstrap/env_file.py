"""Step `env-file`: check the local .env against ECS's rules, then put it in S3.

ECS reads env files with its own, much simpler parser than python-dotenv (the agent's
`readEnvVarsFromFile`, agent/taskresource/envFiles/envfile.go): a line starting with
`#` is a comment, a line without `=` is silently ignored, the name is everything
before the first `=` and the value everything after it, verbatim — quotes, spaces
and ` # comments` included — and a line with an empty value is skipped (the
variable is unset in the task). The local runner reads the same file with
python-dotenv, which strips quotes and inline comments. A line the two read
differently would give a job different settings locally and on ECS, so it is an
error here, located as `file:line` and never quoting a value.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from dotenv.parser import parse_stream

from lib.bootstrap.base import Plan, StepContext, StepResult, error_code

NAME = "env-file"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# bufio.Scanner's default token limit: the ECS agent fails the whole file on a longer line.
MAX_LINE_BYTES = 64 * 1024
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256 so a re-run can skip identical uploads
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


@dataclass(frozen=True)
class EnvFileCheck:
    """The outcome of checking a local env file. `values` are kept only for masking."""

    path: Path
    names: tuple[str, ...] = ()
    sha256: str = ""
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    content: bytes = field(default=b"", repr=False)
    values: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """`3 keys, sha256 1a2b3c4d5e6f`: what may be printed about the file."""
        return f"{len(self.names)} keys, sha256 {self.sha256[:12]}"


def check_env_file(path: Path) -> EnvFileCheck:
    """Checks `path` against ECS's env-file rules; every problem is `file:line: what, fix`.

    Errors: a name not ending in `.env`, bytes that are not UTF-8, a line ECS would
    ignore or read differently from python-dotenv (no `=`, `export `, spaces around
    `=`, a quoted value, an inline comment, a value spanning lines), an invalid name,
    a name set twice, a line longer than 64 KiB. Warnings: an empty value (ECS skips
    the line). Messages name variables but never print a value.
    """
    errors: list[str] = []
    warnings: list[str] = []
    if not path.name.endswith(".env"):
        errors.append(
            f"{path}: the file name must end in .env (an ECS env-file rule): rename it, e.g. to dbt.env"
        )
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return EnvFileCheck(path, errors=(*errors, f"{path}: file not found: create it or fix aws.env_file"))
    except OSError as exc:
        return EnvFileCheck(path, errors=(*errors, f"{path}: cannot read: {exc.strerror}"))
    digest = hashlib.sha256(content).hexdigest()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        column = exc.start - (content.rfind(b"\n", 0, exc.start) + 1) + 1
        errors.append(
            f"{path}:{line}: not UTF-8 (byte 0x{content[exc.start]:02x} at column {column}): "
            "ECS env files must be UTF-8, save the file as UTF-8"
        )
        return EnvFileCheck(path, sha256=digest, errors=tuple(errors), content=content)

    for number, raw in enumerate(text.splitlines(), start=1):
        if len(raw.encode("utf-8")) > MAX_LINE_BYTES:
            errors.append(f"{path}:{number}: longer than 64 KiB: the ECS agent cannot read such a line")

    names: list[str] = []
    values: list[str] = []
    first_seen: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        lines = binding.original.string.splitlines()
        start = binding.original.line
        while lines and not lines[0].strip():  # python-dotenv folds blank lines into the next binding
            lines.pop(0)
            start += 1
        where = f"{path}:{start}"
        if binding.error:
            errors.append(f"{where}: python-dotenv cannot parse this line: write it as NAME=value")
            continue
        if binding.key is None:  # blank lines and comments
            for offset, line in enumerate(lines):
                if not line.startswith("#") and "=" in line:
                    errors.append(
                        f"{path}:{start + offset}: an indented comment: ECS treats only lines "
                        "starting with # as comments, remove the leading spaces"
                    )
            continue
        key = binding.key
        if binding.value is None:
            errors.append(f"{where}: no '=' (ECS ignores such a line): write it as NAME=value")
            continue
        if len(lines) > 1:
            errors.append(f"{where}: {key}'s value spans several lines: ECS reads one NAME=value per line")
            continue
        ecs_name, _, ecs_value = lines[0].rstrip("\r").partition("=") if lines else ("", "", "")
        values.append(binding.value)
        if ecs_name != key:
            if ecs_name.lstrip().startswith("export "):
                fix = "remove `export `: ECS would read the name as 'export …'"
            elif ecs_name.strip() == key:
                fix = "remove the spaces around the name and '=': ECS keeps them in the name"
            else:
                fix = "write it as NAME=value with a bare name"
            errors.append(f"{where}: {key}: {fix}")
            continue
        if not ENV_NAME.match(key):
            errors.append(
                f"{where}: {key!r} is not a valid variable name: use letters, digits and _, "
                "not starting with a digit"
            )
            continue
        if ecs_value != binding.value:
            errors.append(
                f"{where}: {key}: python-dotenv and ECS read this value differently (ECS keeps quotes, "
                "escapes, surrounding spaces and ` # comments` as part of the value): write the value "
                "bare, without quotes or a trailing comment"
            )
            continue
        if key in first_seen:
            errors.append(f"{where}: {key} is already set on line {first_seen[key]}: set it once")
            continue
        first_seen[key] = start
        if ecs_value == "":
            warnings.append(f"{where}: {key} is empty: ECS skips such a line, so {key} is unset in the task")
        names.append(key)
    return EnvFileCheck(
        path,
        names=tuple(names),
        sha256=digest,
        errors=tuple(errors),
        warnings=tuple(warnings),
        content=content,
        values=tuple(values),
    )


def ensure_env_file(ctx: StepContext) -> StepResult:
    """Validates aws.env_file, makes sure the bucket exists, is private and encrypted,
    and uploads the file when its content differs from the object's. A name that is also
    in aws.secrets fails the step before anything is written.

    Bucket: created in aws.region when missing; all four public-access blocks on;
    default encryption SSE-S3 (AES256) when the bucket has none (an existing aws:kms
    default is kept, with a note). Object: uploaded with ServerSideEncryption=AES256 and
    its sha256 in the metadata; a re-run compares that sha256 (or the ETag, which is
    the MD5 of a single-part SSE-S3 upload) and the encryption, so an identical file is
    `unchanged`. created = new bucket or object, updated = replaced object or changed
    bucket settings.
    """
    settings = ctx.settings
    plan = Plan(NAME, ctx.dry_run)
    assert settings.env_file is not None  # run_steps checks it
    check = check_env_file(settings.env_file)
    for warning in check.warnings:
        plan.warn(warning)
    if not check.ok:
        return plan.fail("\n".join(check.errors))
    # ECS does not document which value a task gets for a name that is both in its env
    # file and among its secrets: one place per variable.
    both = sorted(set(check.names) & {name for name, _ in settings.secrets})
    if both:
        return plan.fail(
            f"{settings.env_file}: {', '.join(both)} {'is' if len(both) == 1 else 'are'} also in "
            "aws.secrets: keep a secret in aws.secrets only and remove it from the env file"
        )

    s3 = ctx.clients.s3()
    bucket, key = ctx.bucket, settings.env_file_key
    location = f"s3://{bucket}/{key}: {check.summary()}"
    bucket_exists = _ensure_bucket(ctx, s3, bucket, plan)

    current: dict[str, Any] | None = None
    if bucket_exists:
        try:
            current = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) not in _MISSING:
                raise
    upload = True
    if current is None:
        plan.create("upload env file")
    elif not _same_object(current, check):
        plan.change("upload env file (content changed)")
    elif current.get("ServerSideEncryption") != "AES256":
        plan.change("upload env file again with SSE AES256")
    else:
        upload = False
    if upload and not ctx.dry_run:
        # SSE-S3 on the object itself: the execution role then needs no kms:Decrypt,
        # whatever the bucket's default encryption says.
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=check.content,
            ServerSideEncryption="AES256",
            ContentType="text/plain; charset=utf-8",
            Metadata={SHA256_METADATA: check.sha256},
        )
    return plan.result(location)


def _ensure_bucket(ctx: StepContext, client: Any, bucket: str, plan: Plan) -> bool:
    """Creates/fixes the bucket (or plans it); returns whether it existed before."""
    exists = True
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("403", "AccessDenied"):
            raise RuntimeError(
                f"bucket {bucket} exists but this account cannot use it (S3 bucket names are global: "
                "pick another aws.bucket, or grant the ops box s3:ListBucket on it)"
            ) from None
        if code not in _MISSING:
            raise
        exists = False
    if not exists:
        plan.create(f"create bucket {bucket}")
        if not ctx.dry_run:
            kwargs: dict[str, object] = {"Bucket": bucket}
            # us-east-1 is the one region that rejects a LocationConstraint.
            if ctx.settings.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.settings.region}
            client.create_bucket(**kwargs)

    blocked = False
    if exists:
        try:
            block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            blocked = all(block.get(flag) for flag in _PUBLIC_ACCESS_FLAGS)
        except ClientError as exc:
            if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
    if not blocked:
        plan.change("block public access")
        if not ctx.dry_run:
            client.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=dict.fromkeys(_PUBLIC_ACCESS_FLAGS, True)
            )

    algorithm = None
    if exists:
        try:
            rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            algorithm = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if rules else None
        except ClientError as exc:
            if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
                raise
    if algorithm is None:
        plan.change("default encryption AES256")
        if not ctx.dry_run:
            client.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
    elif algorithm != "AES256":
        plan.note(
            f"bucket default encryption {algorithm} kept (the env file itself is uploaded with AES256; "
            "artifacts the task writes need kms:GenerateDataKey on the task role)"
        )
    return exists


_PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def _same_object(head: dict[str, Any], check: EnvFileCheck) -> bool:
    stored = (head.get("Metadata") or {}).get(SHA256_METADATA)
    if stored:
        return bool(stored == check.sha256)
    # Uploaded by something else: a single-part SSE-S3 object's ETag is its MD5.
    etag = str(head.get("ETag", "")).strip('"')
    return etag == hashlib.md5(check.content, usedforsecurity=False).hexdigest()
