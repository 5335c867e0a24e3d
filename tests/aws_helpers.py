"""A real moto server over HTTP on 127.0.0.1, shared by the AWS tests.

In-process (ThreadedMotoServer) so tests can reach into moto's backend for what the
API cannot do, e.g. set a container's exit code (see CONTRIBUTING.md, "Behaviour of the tools": moto).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from lib.aws.clients import AwsClients
from lib.models import AwsSettings

REGION = "eu-west-1"
ACCOUNT = "123456789012"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """http://127.0.0.1:PORT of a moto server running for the whole test session."""
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[name] = value
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_settings(moto_endpoint: str, request: pytest.FixtureRequest) -> AwsSettings:
    """Settings pointing at the moto server, with names unique to the test (moto state is shared)."""
    suffix = str(abs(hash(request.node.nodeid)) % 10**8)
    return AwsSettings(
        region=REGION,
        endpoint_url=moto_endpoint,
        cluster=f"dbt-{suffix}",
        bucket=f"dbt-bucket-{suffix}",
        execution_role=f"exec-{suffix}",
        task_role=f"task-{suffix}",
        ecr_repository=f"dbt-{suffix}",
        log_group=f"/ecs/dbt-{suffix}",
        task_family=f"dbt-{suffix}",
        poll_interval=1.0,
        start_retry_backoff=1.0,
    )


@pytest.fixture
def aws_clients(aws_settings: AwsSettings) -> AwsClients:
    return AwsClients(aws_settings)


def reset_moto(endpoint: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()


_AMI: dict[str, str] = {}


def register_container_instance(clients: AwsClients, cluster: str) -> str:
    """An EC2 instance registered in `cluster`, so run_task with launch type EC2 can place tasks."""
    ec2 = clients.client("ec2")
    if "ami" not in _AMI:  # listing moto's AMIs takes seconds: once per session
        _AMI["ami"] = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    image_id = _AMI["ami"]
    instance = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]
    document = json.dumps({"instanceId": instance["InstanceId"]})
    answer = clients.ecs().register_container_instance(cluster=cluster, instanceIdentityDocument=document)
    return str(answer["containerInstance"]["containerInstanceArn"])


def moto_ecs_backend() -> Any:
    from moto.ecs.models import ecs_backends

    return ecs_backends[ACCOUNT][REGION]


def with_(settings: AwsSettings, **changes: Any) -> AwsSettings:
    return replace(settings, **changes)
