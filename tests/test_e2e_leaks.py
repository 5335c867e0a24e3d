"""No secret leaves the places it belongs: one planted in each source, printed by the run
and carried by a node's error message, through run-now and the daemon — then every file
under state_dir (history.db dumped too), the console and the daemon's log are searched.

Local jobs run real dbt on DuckDB (a Python model prints the secrets straight to stdout,
past dbt's own masking, and fails with them in its message). The ECS job runs against
the moto server: its CloudWatch log and its uploaded run_results.json carry the secret
from `aws.env_file`, which only ECS tasks get.

A secret is searched for whole, JSON-escaped and line by line (the forms the masker
hides), so a multi-line PEM key showing one line is a leak too.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lib.config import Config, load_config
from lib.daemon import Daemon
from lib.runners.ecs import EcsRunner
from tests.conftest import START
from tests.daemon_helpers import REPO, history_rows, running_daemon, wait_for
from tests.dbt_helpers import copy_example
from tests.ecs_helpers import Ecs
from tests.fakes import FakeClock, InlineExecutor

pytestmark = pytest.mark.timeout(600)

# One secret per source, each of a different shape.
FROM_SCHEDULER = "sched-Hunter2-single-line-0451"  # single line, in the daemon's own environment
FROM_ENV_FILE = (  # multi-line: a PEM key for Snowflake key-pair auth, in the job's env_file
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
    "MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n"
    "c2VjcmV0IGtleSBtYXRlcmlhbCBub3QgcmVhbA==\n"
    "-----END ENCRYPTED PRIVATE KEY-----"
)
FROM_JOB_ENV = r"s3cr(e)t.+*?[x]{2}|^\d\\end"  # regex metacharacters, in the job's env
FROM_AWS_ENV_FILE = (  # multi-line with regex metacharacters, in aws.env_file (ECS only)
    "-----BEGIN RSA PRIVATE KEY-----\nAAAA+/(ecs)*?[key]{9}|^$\n-----END RSA PRIVATE KEY-----"
)
LOCAL_SECRETS = {
    "DBT_ENV_SECRET_FROM_SCHEDULER": FROM_SCHEDULER,
    "DBT_ENV_SECRET_FROM_ENV_FILE": FROM_ENV_FILE,
    "DBT_ENV_SECRET_FROM_JOB_ENV": FROM_JOB_ENV,
}

# Prints every secret it can see straight to stdout (dbt does not mask what a Python model
# prints) and fails with each of them in its message, the PEM's lines joined so that
# dbt's own whole-value masking does not catch them either.
LEAKY_MODEL = """
import os


def model(dbt, session):
    dbt.config(materialized="table")
    secrets = {k: v for k, v in sorted(os.environ.items()) if k.startswith("DBT_ENV_SECRET_")}
    for name, value in secrets.items():
        print(f"{name}={value}")
        for line in value.splitlines():
            print(f"line of {name}: {line}")
    joined = " | ".join(line for value in secrets.values() for line in value.splitlines())
    if joined:
        raise RuntimeError(f"cannot connect with {joined}")
    return session.sql("select 1 as x")  # dbt-duckdb insists on a returned relation
"""


def forms(secret: str) -> set[str]:
    """The texts a secret can show as: whole, JSON-escaped, and each of its lines."""
    found = {secret, json.dumps(secret)[1:-1], *(line.strip() for line in secret.splitlines())}
    return {form for form in found if len(form) >= 4}


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    return sorted({form for secret in secrets for form in forms(secret) if form in text})


def state_dir_texts(state_dir: Path) -> dict[str, str]:
    """Every file under state_dir as text (bytes decoded leniently), plus history.db dumped."""
    texts = {
        str(path.relative_to(state_dir)): path.read_bytes().decode("utf-8", "replace")
        for path in sorted(state_dir.rglob("*"))
        if path.is_file()
    }
    conn = sqlite3.connect(state_dir / "history.db")
    try:
        texts["history.db (dumped)"] = "\n".join(conn.iterdump())
    finally:
        conn.close()
    return texts


def assert_no_leaks(where: Mapping[str, str], secrets: Iterable[str]) -> None:
    secrets = list(secrets)
    found = {name: leaks(text, secrets) for name, text in where.items()}
    assert not {name: hits for name, hits in found.items() if hits}


# --------------------------------------------------------------------------- local, real dbt


@pytest.fixture
def leaky_config(tmp_path: Path) -> Path:
    project = copy_example(tmp_path / "project")
    (project / "models" / "leaky.py").write_text(LEAKY_MODEL)
    env_file = tmp_path / "job.env"
    env_file.write_text(f'DBT_ENV_SECRET_FROM_ENV_FILE="{FROM_ENV_FILE}"\n')
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "state_dir: state\n"
        "jobs:\n"
        "  shop:\n"
        "    every: 5 seconds\n"
        f"    project_dir: {project}\n"
        f"    profiles_dir: {project}\n"
        "    target: dev\n"
        f"    env_file: {env_file}\n"
        f"    env: {{DBT_ENV_SECRET_FROM_JOB_ENV: '{FROM_JOB_ENV}'}}\n"
        "    commands: ['dbt run --select leaky']\n"
    )
    return config


def scheduler_env() -> dict[str, str]:
    return {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "COLUMNS": "200",
        "DBT_ENV_SECRET_FROM_SCHEDULER": FROM_SCHEDULER,
    }


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scheduler.py", "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=scheduler_env(),
        timeout=300,
    )


def assert_the_run_really_printed_them(state_dir: Path) -> None:
    """The planted secrets did reach the run's output and its node message (masked): the
    search below is not passing because nothing was printed."""
    run_logs = sorted(state_dir.glob("runs/shop/*/run.log"))
    assert run_logs
    for log in run_logs:
        text = log.read_text()
        for name in LOCAL_SECRETS:
            assert f"{name}=*****" in text, (name, text[-2000:])
            assert f"line of {name}: *****" in text
    for report in state_dir.glob("runs/shop/*/report.json"):
        [node] = [n for n in json.loads(report.read_text())["nodes"] if n["status"] == "error"]
        assert "cannot connect with *****" in node["message"], node


def test_local_secrets_from_every_source_never_leak_through_run_now_or_the_daemon(
    leaky_config: Path, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    console: dict[str, str] = {}
    for attempt in (1, 2):
        done = cli(leaky_config, "run-now", "shop")
        assert done.returncode == 1, done.stdout + done.stderr  # the model fails, as planted
        assert "leaky" in done.stdout
        console[f"run-now {attempt}"] = done.stdout + done.stderr

    log_path = tmp_path / "daemon.log"
    with running_daemon(leaky_config, log_path, env=scheduler_env()) as daemon:

        def finished_scheduled() -> int:
            rows = history_rows(state_dir)
            return sum(1 for r in rows if r["trigger"] == "schedule" and r["outcome"] == "failed")

        wait_for(lambda: finished_scheduled() >= 2, 400, "two scheduled runs to finish")
        os.killpg(daemon.pid, signal.SIGTERM)
        assert daemon.wait(timeout=120) == 0
    console["daemon log"] = log_path.read_text()
    for command in (("history", "--json"), ("status",), ("logs", "shop")):
        shown = cli(leaky_config, *command)
        assert shown.returncode == 0, shown.stderr
        console[" ".join(command)] = shown.stdout + shown.stderr

    assert_the_run_really_printed_them(state_dir)
    assert_no_leaks(console, LOCAL_SECRETS.values())
    assert_no_leaks(state_dir_texts(state_dir), LOCAL_SECRETS.values())


# --------------------------------------------------------------------------- ECS, moto


def ecs_run_results(run_id: str) -> dict[str, Any]:
    """run_results.json as run_commands.sh uploads it from the task: a node whose database
    error quotes the aws.env_file secret (JSON-escaped, as dbt writes it)."""
    return {
        "metadata": {"invocation_id": run_id},
        "results": [
            {
                "unique_id": "model.shop.orders",
                "status": "error",
                "message": f"Database Error: password {FROM_AWS_ENV_FILE!r} rejected",
                "compiled_code": f"select '{FROM_AWS_ENV_FILE}' as leak",
                "execution_time": 0.2,
                "failures": None,
                "thread_id": "Thread-1",
                "timing": [],
                "adapter_response": {},
            }
        ],
    }


def plant_in_every_task(ecs: Ecs) -> list[str]:
    """As each task starts: its log prints the secret (whole and line by line), its uploaded
    run_results.json carries it, and it exits 1."""
    started: list[str] = []

    def after_run_task(parsed: dict[str, Any], **_: Any) -> None:
        for task in parsed.get("tasks", []):
            arn = task["taskArn"]
            env = {i["name"]: i["value"] for i in task["overrides"]["containerOverrides"][0]["environment"]}
            bucket, _, prefix = env["DBT_ARTIFACTS_S3_URI"].removeprefix("s3://").partition("/")
            body = json.dumps(ecs_run_results(env["DBT_SCHEDULER_RUN_ID"])).encode()
            ecs.clients.s3().put_object(Bucket=bucket, Key=prefix + "run_results.json", Body=body)
            manifest = json.dumps({"nodes": {"model.shop.orders": {"original_file_path": "m/orders.sql"}}})
            ecs.clients.s3().put_object(Bucket=bucket, Key=prefix + "manifest.json", Body=manifest)
            lines = [f"DBT_ENV_SECRET_AWS={FROM_AWS_ENV_FILE}", *FROM_AWS_ENV_FILE.splitlines()]
            ecs.write_log(arn, ["dbt run starting", *lines, "Done. PASS=0 ERROR=1"])
            ecs.finish(arn, exit_code=1)
            started.append(arn)

    ecs.clients.ecs().meta.events.register("after-call.ecs.RunTask", after_run_task)
    return started


def test_the_aws_env_file_secret_never_leaks_from_an_ecs_run(
    ecs: Ecs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_env = tmp_path / "aws.env"
    aws_env.write_text(f'DBT_ENV_SECRET_AWS="{FROM_AWS_ENV_FILE}"\nDBT_TARGET=prod\n')
    config_path = tmp_path / "jobs.yaml"
    config_path.write_text(
        "state_dir: state\n"
        f"aws: {{region: {ecs.settings.region}, env_file: {aws_env}}}\n"
        "jobs:\n"
        "  shop: {every: 1 hour, runner: ecs, git: {url: 'https://git.example.com/shop.git'}}\n"
    )
    started = plant_in_every_task(ecs)
    import lib.app

    real_build_app = lib.app.build_app

    def with_moto(config: Any = None, clock: Any = None, **_: Any) -> lib.app.App:
        loaded = config if isinstance(config, Config) else load_config(config)
        settings = replace(ecs.settings, env_file=aws_env, poll_interval=0.2)
        loaded = replace(loaded, aws=settings)
        runner = EcsRunner(settings, ecs.clients)
        return real_build_app(loaded, clock=clock, runners={"ecs": runner}, base_env={})

    monkeypatch.setattr(lib.app, "build_app", with_moto)
    from lib.cli import main

    console: dict[str, str] = {}
    for attempt in (1, 2):  # conftest gives pytest back the signal handlers and umask it sets
        assert main(["--config", str(config_path), "run-now", "shop"]) == 1
        out, err = capsys.readouterr()
        console[f"run-now {attempt}"] = out + err

    clock = FakeClock(START)
    app = with_moto(config_path, clock=clock)
    daemon = Daemon(app.config, app.service, clock, executor_factory=lambda n: InlineExecutor())
    with_logs = tmp_path / "daemon-log.txt"
    handler = logging.FileHandler(with_logs)
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        daemon.run_forever(until=START + timedelta(hours=2))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    out, err = capsys.readouterr()
    console["daemon"] = out + err + with_logs.read_text()

    state_dir = tmp_path / "state"
    rows = history_rows(state_dir)
    assert len(started) == 4 and [r["outcome"] for r in rows] == ["failed"] * 4, rows
    for log in state_dir.glob("runs/shop/*/run.log"):  # the secret did come back, masked
        assert "DBT_ENV_SECRET_AWS=*****" in log.read_text()
    for report in state_dir.glob("runs/shop/*/report.json"):
        [node] = json.loads(report.read_text())["nodes"]
        assert "*****" in node["message"]
    assert_no_leaks(console, [FROM_AWS_ENV_FILE])
    assert_no_leaks(state_dir_texts(state_dir), [FROM_AWS_ENV_FILE])
