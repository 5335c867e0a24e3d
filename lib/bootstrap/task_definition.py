"""Step `task-definition`: the ECS task definition every ECS job runs.

A new revision is registered only when what we would register differs from the
latest ACTIVE revision, compared after dropping what AWS adds on its own (empty
lists, container `cpu: 0`, ARNs, status…): re-running bootstrap does not pile up
identical revisions.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from lib.bootstrap.base import Plan, StepContext, StepResult, error_code
from lib.bootstrap.iam import get_role
from lib.bootstrap.image import find_repository
from lib.bootstrap.policies import object_arn

NAME = "task-definition"
# Read-only fields describe_task_definition returns that register_task_definition does not take.
_OUTPUT_ONLY = {
    "taskDefinitionArn",
    "revision",
    "status",
    "compatibilities",
    "requiresAttributes",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
}
# Values AWS fills in when a field is left out: equal to not writing it.
_CONTAINER_DEFAULTS: dict[str, Any] = {"cpu": 0, "essential": True, "versionConsistency": "enabled"}


def desired_task_definition(
    ctx: StepContext, execution_role_arn: str, task_role_arn: str, image: str
) -> dict[str, Any]:
    """The register_task_definition arguments bootstrap wants (a pure function of settings)."""
    s = ctx.settings
    fargate = s.launch_type == "FARGATE"
    container: dict[str, Any] = {
        "name": s.container_name,
        "image": image,
        "essential": True,
        # Read by the agent with the *execution* role before the container starts.
        "environmentFiles": [{"value": object_arn(ctx.bucket, s.env_file_key), "type": "s3"}],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": s.log_group,
                "awslogs-region": s.region,
                # Streams are named <prefix>/<container>/<task id>.
                "awslogs-stream-prefix": s.log_stream_prefix,
            },
        },
        # An init process as PID 1 forwards StopTask's SIGTERM to run_commands.sh
        # and reaps zombies (dbt starts threads and subprocesses).
        "linuxParameters": {"initProcessEnabled": True},
    }
    if s.secrets:
        # Also read by the agent with the execution role, before the container starts: the
        # values never pass through the scheduler. Sorted by name (AwsSettings keeps them
        # so), so the same settings always register the same revision.
        container["secrets"] = [{"name": name, "valueFrom": arn} for name, arn in sorted(s.secrets)]
    return {
        "family": s.task_family,
        "taskRoleArn": task_role_arn,
        "executionRoleArn": execution_role_arn,
        # FARGATE only supports awsvpc; on EC2, bridge keeps run_task free of subnets.
        "networkMode": "awsvpc" if fargate else "bridge",
        "requiresCompatibilities": ["EC2", "FARGATE"] if fargate else ["EC2"],
        "cpu": str(s.cpu),
        "memory": str(s.memory),
        "containerDefinitions": [container],
    }


def pinned_image(ctx: StepContext, plan: Plan) -> str:
    """The image reference the task definition names: by digest, never a mutable tag.

    `:latest` can move under a registered revision (a push, someone else's push), so
    two tasks of one revision could run different code and a report could not say
    which. The ECR repository's `:latest` (what the image step just pushed) or an
    aws.image in that repository is resolved with describe_images to
    `repository@sha256:…`; an aws.image already written by digest is kept; one
    elsewhere (another registry) is kept with a warning. Raises ValueError with the
    fix when there is nothing to name.
    """
    s = ctx.settings
    if s.image and "@sha256:" in s.image:
        return s.image
    repository = find_repository(ctx.clients.ecr(), s.ecr_repository)
    uri = repository["repositoryUri"] if repository is not None else None
    reference = s.image or f"{uri or _repository_uri(ctx)}:latest"
    name, _, tag = reference.rpartition(":")
    if "/" in tag or not name:  # `host:port/name` without a tag
        name, tag = reference, "latest"
    if uri is None or name != uri:
        if s.image:
            plan.warn(f"aws.image {s.image} names a tag, which can move: pin it as …@sha256:<digest>")
            return s.image
        if ctx.dry_run:
            return f"{name}@sha256:<digest of :{tag} once pushed>"
        raise ValueError(
            f"ECR repository {s.ecr_repository} does not exist: "
            "run `scheduler.py bootstrap --only image` or set aws.image"
        )
    try:
        images = ctx.clients.ecr().describe_images(
            repositoryName=s.ecr_repository, imageIds=[{"imageTag": tag}]
        )["imageDetails"]
    except ClientError as exc:
        if error_code(exc) != "ImageNotFoundException":
            raise
        images = []
    if not images:
        if ctx.dry_run:
            return f"{name}@sha256:<digest of :{tag} once pushed>"
        raise ValueError(f"{name}:{tag} is not in ECR: run `scheduler.py bootstrap --only image` first")
    return f"{name}@{images[0]['imageDigest']}"


def _repository_uri(ctx: StepContext) -> str:
    s = ctx.settings
    return f"{ctx.account()}.dkr.ecr.{s.region}.amazonaws.com/{s.ecr_repository}"


def normalise_task_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """A task definition reduced to what matters, so AWS's own additions compare equal
    (`secrets` compare in name order; no secrets and `secrets: []` are the same)."""
    out = {k: v for k, v in definition.items() if k not in _OUTPUT_ONLY}
    containers = []
    for container in out.get("containerDefinitions", []):
        container = dict(container)
        for key, default in _CONTAINER_DEFAULTS.items():
            container.setdefault(key, default)
            if container[key] == default:
                container.pop(key)
        if container.get("secrets"):  # a list whose order means nothing
            container["secrets"] = sorted(container["secrets"], key=lambda secret: str(secret.get("name")))
        containers.append(container)
    out["containerDefinitions"] = sorted(containers, key=lambda c: str(c.get("name")))
    if "requiresCompatibilities" in out:
        out["requiresCompatibilities"] = sorted(out["requiresCompatibilities"])
    for key in ("cpu", "memory"):
        if key in out and out[key] is not None:
            out[key] = str(out[key])
    return _drop_empty(out)


def _drop_empty(value: Any) -> Any:
    # AWS answers with [] / {} for every list and map left out, and `false` for flags
    # that default to false (enableFaultInjection, readonlyRootFilesystem…).
    if isinstance(value, dict):
        cleaned = {k: _drop_empty(v) for k, v in value.items()}
        # `essential: false` is not a default (essential defaults to true): keep it.
        return {
            k: v
            for k, v in cleaned.items()
            if v not in (None, [], {}) and (v is not False or k == "essential")
        }
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def latest_active(ecs: Any, family: str) -> dict[str, Any] | None:
    """The family's latest ACTIVE revision, or None when it has none."""
    try:
        found = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    except ClientError as exc:
        # "Unable to describe task definition." is a ClientException: no such family.
        if error_code(exc) == "ClientException":
            return None
        raise
    if found.get("status", "ACTIVE") == "ACTIVE":
        return dict(found)
    # AWS resolves a bare family to its latest ACTIVE revision; moto returns the
    # latest whatever its status, so look it up explicitly when that happens.
    pages = ecs.get_paginator("list_task_definitions").paginate(
        familyPrefix=family, status="ACTIVE", sort="DESC"
    )
    for page in pages:
        for arn in page["taskDefinitionArns"]:
            if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family:
                return dict(ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"])
    return None


def ensure_task_definition(ctx: StepContext) -> StepResult:
    """Registers a new revision of aws.task_family when its content changed.

    The image is named by digest (`pinned_image`), so a new push makes a new
    revision and a task never runs an image other than the one registered; the role
    ARNs come from get_role. created = the family had no ACTIVE
    revision; updated = a new revision was registered (the detail names what
    changed); unchanged = the latest ACTIVE revision already matches.
    """
    s = ctx.settings
    plan = Plan(NAME, ctx.dry_run)
    iam = ctx.clients.iam()
    arns = []
    for role_name in (s.execution_role, s.task_role):
        role = get_role(iam, role_name)
        if role is None:
            if not ctx.dry_run:
                return plan.fail(f"role {role_name} does not exist: run `scheduler.py bootstrap --only iam`")
            arns.append(f"arn:aws:iam::{ctx.account()}:role/{role_name}")  # what create_role will give
        else:
            arns.append(str(role["Arn"]))
    try:
        image = pinned_image(ctx, plan)
    except ValueError as exc:
        return plan.fail(str(exc))

    ecs = ctx.clients.ecs()
    wanted = desired_task_definition(ctx, arns[0], arns[1], image)
    current = latest_active(ecs, s.task_family)
    if current is None:
        plan.create("register the first revision")
    else:
        differences = diff_task_definitions(
            normalise_task_definition(current), normalise_task_definition(wanted)
        )
        if not differences:
            return plan.result(f"{s.task_family}:{current['revision']}")
        plan.change(", ".join(differences))
    if ctx.dry_run:
        revision = (current or {}).get("revision", 0) + 1
        return plan.result(f"{s.task_family}:{revision}, image {image}")
    registered = ecs.register_task_definition(**wanted)["taskDefinition"]
    return plan.result(f"{s.task_family}:{registered['revision']}, image {image}")


def diff_task_definitions(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs, for the detail: `cpu 1024 → 2048`, `container dbt: image`."""
    out: list[str] = []
    for key in sorted(set(current) | set(wanted)):
        if key == "containerDefinitions":
            continue
        if current.get(key) != wanted.get(key):
            before, after = current.get(key), wanted.get(key)
            if isinstance(before, str | int | None) and isinstance(after, str | int | None):
                out.append(
                    f"{key} {before if before is not None else '-'} → {after if after is not None else '-'}"
                )
            else:
                out.append(key)
    old = {c.get("name"): c for c in current.get("containerDefinitions", [])}
    new = {c.get("name"): c for c in wanted.get("containerDefinitions", [])}
    for name in sorted(set(old) | set(new), key=str):
        if name not in new:
            out.append(f"container {name} removed")
        elif name not in old:
            out.append(f"container {name} added")
        elif old[name] != new[name]:
            keys = sorted(k for k in set(old[name]) | set(new[name]) if old[name].get(k) != new[name].get(k))
            out.append(f"container {name}: {', '.join(keys)}")
    return out
