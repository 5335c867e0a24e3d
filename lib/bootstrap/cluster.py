"""Step `cluster`: bootstrap does not create the ECS cluster (its capacity — EC2
instances, an Auto Scaling group or FARGATE — is an infrastructure decision), but it
checks that aws.cluster exists and can place EC2 tasks."""

from __future__ import annotations

from lib.bootstrap.base import Plan, StepContext, StepResult

NAME = "cluster"


def check_cluster(ctx: StepContext) -> StepResult:
    """`failed` when the cluster is missing or INACTIVE (with the fix); `unchanged` with
    a warning when launch type is EC2 and no container instance is registered (run_task
    would fail with "No Container Instances were found in your cluster")."""
    s = ctx.settings
    plan = Plan(NAME, ctx.dry_run)
    answer = ctx.clients.ecs().describe_clusters(clusters=[s.cluster])
    clusters = [c for c in answer.get("clusters", []) if c.get("status") == "ACTIVE"]
    if not clusters:
        return plan.fail(
            f"cluster {s.cluster} not found in {s.region}: create it (aws ecs create-cluster "
            f"--cluster-name {s.cluster}) or fix aws.cluster"
        )
    cluster = clusters[0]
    instances = int(cluster.get("registeredContainerInstancesCount", 0))
    if s.launch_type == "EC2" and instances == 0:
        plan.warn(
            f"cluster {s.cluster} has no container instances: EC2 tasks cannot be placed until an "
            "instance running the ECS agent (≥ 1.39.0 for env files) joins it"
        )
    return plan.result(f"{s.cluster}: ACTIVE, {instances} container instance(s), launch type {s.launch_type}")
