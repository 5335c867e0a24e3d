#!/usr/bin/env python3
"""Uploads a dbt run's artifacts to S3: `upload_artifacts.py DIR s3://bucket/prefix/`.

Copies DIR/run_results.json, DIR/manifest.json and DIR/git_sha (the commit SHA
run_commands.sh checked out, one line), those that exist, to s3://bucket/prefix/<name>
with server-side encryption (AES256), every DBT_ENV_SECRET_* value of its environment
masked in them first (lib/secrets.py, which the image carries beside this script). The
ECS runner reads git_sha from there, so the run's SHA does not depend on reading its
CloudWatch log. The prefix is a
folder: a missing trailing '/' is added. Prints one line per uploaded file (and
one when there is nothing to upload); exits 0.

On failure prints one line, `upload_artifacts: ERROR …`, on stderr and exits 1
(2 for a bad command line). No line ever holds credentials: botocore's messages
name the bucket and the error code, never the keys.

Runs in the job image (docker/run_commands.sh calls it after the dbt commands)
with the Python that has dbt, so it needs only the standard library and boto3.
Credentials and region come from boto3's usual chain (the ECS task role, AWS_*
variables). boto3 ≥ 1.28 also reads AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_S3)
by itself, which is how the tests point it at a moto server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

# What to mask is defined once, in lib/secrets.py: the image copies it to /app/lib/ beside
# this script; in a clone it is one folder up.
_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE if (_HERE / "lib" / "secrets.py").is_file() else _HERE.parent))
from lib.secrets import SecretMasker, mask_artifacts  # noqa: E402

# run_results.<i>.json and sources.<i>.json: each command's own results (run_commands.sh
# keeps one per command), so a report covers every command of an ECS run too.
ARTIFACTS = (
    "run_results.json",
    "run_results.*.json",
    "sources.json",
    "sources.*.json",
    "manifest.json",
    "git_sha",
)
PREFIX = "upload_artifacts:"
USAGE = "usage: upload_artifacts.py DIR s3://bucket/prefix/"


class UploadError(Exception):
    """A one-line reason the upload failed."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` → ("bucket", "a/b/"); `s3://bucket` → ("bucket", "")."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def upload(
    directory: Path,
    uri: str,
    client: object | None = None,
    on_uploaded: Callable[[str, str], None] = lambda name, target: None,
) -> list[str]:
    """Uploads the artifacts found in `directory`; returns the s3:// URI of each, in order.

    `on_uploaded(name, target)` is called as each file lands. Raises UploadError
    naming the file and the cause (the files before it stay uploaded); ValueError
    for a bad URI.
    """
    bucket, prefix = parse_s3_uri(uri)
    # The task's DBT_ENV_SECRET_* values (from the env file) never reach S3: node
    # messages and compiled code in the artifacts can quote what the run printed.
    try:
        mask_artifacts(directory, SecretMasker.from_env(os.environ))
    except OSError as exc:
        raise UploadError(f"cannot mask the artifacts in {directory}: {exc}") from None
    files = [path for pattern in ARTIFACTS for path in sorted(directory.glob(pattern)) if path.is_file()]
    if not files:
        return []
    if client is None:
        client = _s3_client()
    uploaded = []
    for path in files:
        key = f"{prefix}{path.name}"
        target = f"s3://{bucket}/{key}"
        try:
            # upload_file switches to a multipart upload for large files (a big
            # project's manifest.json can be 100 MB+); ExtraArgs apply to both.
            client.upload_file(  # type: ignore[attr-defined]
                str(path),
                bucket,
                key,
                ExtraArgs={"ServerSideEncryption": "AES256", "ContentType": _content_type(path)},
            )
        except Exception as exc:  # botocore raises many types; each becomes one line
            # boto3 wraps the S3 error as "Failed to upload <local path> to <bucket/key>: <error>";
            # the error alone says it (the target is in our own message).
            wrapped = type(exc).__name__ == "S3UploadFailedError" and exc.__context__ is not None
            cause = exc.__context__ if wrapped else exc
            raise UploadError(f"uploading {path.name} to {target} failed: {_one_line(cause)}") from None
        uploaded.append(target)
        on_uploaded(path.name, target)
    return uploaded


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(f"{PREFIX} ERROR {USAGE}", file=sys.stderr)
        return 2
    directory, uri = Path(args[0]), args[1]
    try:
        parse_s3_uri(uri)
    except ValueError as exc:
        print(f"{PREFIX} ERROR {exc}: {USAGE}", file=sys.stderr)
        return 2
    if not directory.is_dir():
        print(f"{PREFIX} ERROR {directory} is not a folder", file=sys.stderr)
        return 1
    try:
        uploaded = upload(
            directory, uri, on_uploaded=lambda name, target: print(f"{PREFIX} uploaded {name} to {target}")
        )
    except UploadError as exc:
        print(f"{PREFIX} ERROR {exc}", file=sys.stderr)
        return 1
    if not uploaded:
        print(f"{PREFIX} nothing to upload: no {', '.join(ARTIFACTS[:-1])} or {ARTIFACTS[-1]} in {directory}")
    return 0


def _s3_client() -> object:
    try:
        import boto3
    except ImportError:
        raise UploadError(f"boto3 is not installed for {sys.executable}: pip install boto3") from None
    try:
        return boto3.client("s3")
    except Exception as exc:
        raise UploadError(f"cannot create an S3 client: {_one_line(exc)}") from None


def _content_type(path: Path) -> str:
    return "application/json" if path.suffix == ".json" else "text/plain"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


if __name__ == "__main__":
    raise SystemExit(main())
