"""`scheduler.py bootstrap` through the CLI, in a subprocess, against the moto server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lib.aws.clients import AwsClients
from lib.bootstrap import bootstrap_policy, runtime_policy
from lib.models import AwsSettings

REPO = Path(__file__).resolve().parents[1]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), "bootstrap", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def write_config(tmp_path: Path, settings: AwsSettings) -> Path:
    (tmp_path / "prod.env").write_text(
        "SNOWFLAKE_ACCOUNT=acme\nDBT_ENV_SECRET_SNOWFLAKE_PASSWORD=s3cr3t-pw\n"
    )
    config = tmp_path / "jobs.yaml"
    config.write_text(
        f"aws:\n  region: {settings.region}\n  endpoint_url: {settings.endpoint_url}\n"
        f"  bucket: {settings.bucket}\n  cluster: {settings.cluster}\n  env_file: prod.env\n"
        f"  execution_role: {settings.execution_role}\n  task_role: {settings.task_role}\n"
        f"  log_group: {settings.log_group}\n  task_family: {settings.task_family}\n"
        f"  ecr_repository: {settings.ecr_repository}\n"
        "jobs:\n  nightly:\n    schedule: '0 6 * * *'\n    runner: ecs\n"
        "    git: {url: 'https://github.com/acme/dbt.git'}\n"
    )
    return config


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, aws_settings: AwsSettings, aws_clients: AwsClients
) -> None:
    aws_clients.ecs().create_cluster(clusterName=aws_settings.cluster)
    done = cli(write_config(tmp_path, aws_settings), "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("env-file", "iam", "log-group", "task-definition"):
        assert step in done.stdout
    assert "dry run" in done.stdout
    assert "s3cr3t-pw" not in done.stdout + done.stderr
    buckets = [b["Name"] for b in aws_clients.s3().list_buckets()["Buckets"]]
    assert aws_settings.bucket not in buckets


def test_ops_policy_prints_the_runtime_and_the_bootstrap_policy(
    tmp_path: Path, aws_settings: AwsSettings
) -> None:
    config = write_config(tmp_path, aws_settings)
    runtime = cli(config, "--ops-policy", "runtime")
    assert runtime.returncode == 0, runtime.stderr
    assert json.loads(runtime.stdout) == runtime_policy(aws_settings)  # one document, pipe-able
    provisioning = cli(config, "--ops-policy", "bootstrap")
    assert json.loads(provisioning.stdout) == bootstrap_policy(aws_settings)
    both = cli(config, "--ops-policy")
    assert both.returncode == 0
    first, second = both.stdout.split("\n# bootstrap:")
    assert first.startswith("# runtime: attach to the ops box")
    assert json.loads(first.split("\n", 1)[1]) == runtime_policy(aws_settings)
    assert json.loads(second.split("\n", 1)[1]) == bootstrap_policy(aws_settings)
    assert cli(config, "--ops-policy", "admin").returncode == 2


def test_bootstrap_without_an_aws_section_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "jobs.yaml"
    config.write_text("jobs: {}\n")
    done = cli(config)
    assert done.returncode == 2
    assert "bootstrap needs an `aws:` section" in done.stderr
