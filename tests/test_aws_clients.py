"""One client per service, talking real HTTP to a moto server."""

from __future__ import annotations

import sys

from lib.aws.clients import AwsClients


def test_one_client_per_service_and_it_reaches_moto(aws_clients: AwsClients) -> None:
    assert aws_clients.ecs() is aws_clients.ecs()
    assert aws_clients.s3() is not aws_clients.ecs()
    aws_clients.s3().create_bucket(
        Bucket=aws_clients.settings.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    names = [b["Name"] for b in aws_clients.s3().list_buckets()["Buckets"]]
    assert aws_clients.settings.bucket in names


def test_importing_the_daemon_does_not_import_boto3() -> None:
    import subprocess

    modules = "lib.cli, lib.daemon, lib.app, lib.execution, lib.aws.clients"
    code = f"import sys, {modules}; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
