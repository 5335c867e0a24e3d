"""The AWS side of an ECS test on the moto server: cluster, instance, task definition, logs, bucket.

The `ecs` fixture (exported through conftest.py) gives each test its own names, and
helpers reach into moto's in-process backend for what the ECS API cannot do.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lib.aws.clients import AwsClients
from lib.models import AwsSettings
from lib.runners.ecs import EcsRunner, artifacts_uri
from tests.aws_helpers import ACCOUNT, moto_ecs_backend, with_

ARTIFACTS = Path(__file__).parent / "data" / "artifacts"
STAYS_RUNNING = {"progression": "manual", "times": 1_000_000}


def set_task_transition(endpoint: str, transition: dict[str, Any] | None) -> None:
    """moto's state manager for ECS tasks (None = back to moto's default: manual, 1)."""
    action, body = ("unset-transition", {"model_name": "ecs::task"})
    if transition is not None:
        action, body = ("set-transition", {"model_name": "ecs::task", "transition": transition})
    request = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/{action}", data=json.dumps(body).encode(), method="POST"
    )
    urllib.request.urlopen(request).read()


def record_calls(clients: AwsClients, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call the ECS client makes from now on
    (one entry per API call: botocore's own HTTP retries are not counted)."""
    calls: list[dict[str, Any]] = []
    clients.ecs().meta.events.register(
        f"before-parameter-build.ecs.{operation}", lambda params, **_: calls.append(dict(params))
    )
    return calls


@dataclass
class Ecs:
    """One test's AWS side: cluster with a container instance, task definition, log group, bucket."""

    endpoint: str
    settings: AwsSettings
    clients: AwsClients

    def runner(self, **kwargs: Any) -> EcsRunner:
        return EcsRunner(self.settings, self.clients, **kwargs)

    def task(self, arn: str) -> dict[str, Any]:
        return self.clients.ecs().describe_tasks(cluster=self.settings.cluster, tasks=[arn])["tasks"][0]

    def finish(
        self,
        arn: str,
        exit_code: int | None = 0,
        reason: str | None = None,
        stop_code: str = "EssentialContainerExited",
    ) -> None:
        """What the container will report once the task is STOPPED (moto's backend, in-process)."""
        task = moto_ecs_backend().tasks[self.settings.cluster][arn]
        container = task.containers[0]
        container.exitCode = exit_code
        if reason is not None:
            container.reason = reason
        task.stop_code = stop_code
        # What AWS says at task level, and what the runner must not report.
        task.stopped_reason = "Essential container in task exited"

    def write_log(self, arn: str, lines: list[str]) -> None:
        logs = self.clients.logs()
        stream = f"{self.settings.log_stream_prefix}/{self.settings.container_name}/{arn.rsplit('/', 1)[-1]}"
        logs.create_log_stream(logGroupName=self.settings.log_group, logStreamName=stream)
        # Stamped just before now (AWS and moto drop events older than 14 days), in
        # batches of at most 10,000 events as AWS requires.
        now_ms = int(datetime.now(UTC).timestamp() * 1000) - len(lines)
        for start in range(0, len(lines), 10_000):
            batch = lines[start : start + 10_000]
            events = [{"timestamp": now_ms + start + i, "message": line} for i, line in enumerate(batch)]
            logs.put_log_events(logGroupName=self.settings.log_group, logStreamName=stream, logEvents=events)

    def upload_artifacts(
        self, folder: Path | None, job: str = "nightly", run_id: str = "r1", git_sha: str | None = None
    ) -> None:
        """Put what run_commands.sh uploads into the run's S3 folder: the dbt artifacts
        in `folder` (if any) and a `git_sha` file (if given)."""
        uri = artifacts_uri(self.settings, job, run_id)
        assert uri is not None
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        for name in ("run_results.json", "manifest.json"):
            if folder is not None:
                body = (folder / name).read_bytes()
                self.clients.s3().put_object(Bucket=bucket, Key=prefix + name, Body=body)
        if git_sha is not None:
            self.clients.s3().put_object(Bucket=bucket, Key=prefix + "git_sha", Body=f"{git_sha}\n".encode())


def register_task_definition(ecs: Ecs, **extra: Any) -> None:
    s = ecs.settings
    container = {
        "name": s.container_name,
        "image": "x",
        "memory": 512,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": s.log_group,
                "awslogs-region": s.region,
                "awslogs-stream-prefix": s.log_stream_prefix,
            },
        },
    }
    container.update(extra.pop("container", {}))
    kwargs = {"requiresCompatibilities": ["EC2"], **extra}
    ecs.clients.ecs().register_task_definition(
        family=s.task_family, containerDefinitions=[container], **kwargs
    )


_AMI: list[str] = []
_SESSION: list[Any] = []


def new_clients(settings: AwsSettings) -> AwsClients:
    """Clients as a daemon builds them, but from one shared boto3 session: a fresh
    session loads every service model again (~0.5 s for the four used here)."""
    if not _SESSION:
        import boto3

        _SESSION.append(boto3.session.Session())
    return AwsClients(settings, session=_SESSION[0])


def register_container_instance(clients: AwsClients, cluster: str) -> None:
    """tests.aws_helpers.register_container_instance, with the AMI read from moto's
    backend once: DescribeImages(Owners=["amazon"]) takes moto 2-4 s every time."""
    ec2 = clients.client("ec2")
    if not _AMI:
        from moto.ec2.models import ec2_backends

        _AMI.append(next(iter(ec2_backends[ACCOUNT][clients.settings.region].amis)))
    instance = ec2.run_instances(ImageId=_AMI[0], MinCount=1, MaxCount=1)["Instances"][0]
    document = json.dumps({"instanceId": instance["InstanceId"]})
    clients.ecs().register_container_instance(cluster=cluster, instanceIdentityDocument=document)


@pytest.fixture
def ecs(aws_settings: AwsSettings, moto_endpoint: str) -> Iterator[Ecs]:
    settings = with_(aws_settings, poll_interval=10.0, start_retries=2, start_retry_backoff=30.0)
    env = Ecs(moto_endpoint, settings, new_clients(settings))
    set_task_transition(moto_endpoint, None)
    env.clients.ecs().create_cluster(clusterName=settings.cluster)
    register_container_instance(env.clients, settings.cluster)
    register_task_definition(env)
    env.clients.logs().create_log_group(logGroupName=settings.log_group)
    env.clients.s3().create_bucket(
        Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": settings.region}
    )
    try:
        yield env
    finally:
        set_task_transition(moto_endpoint, None)
