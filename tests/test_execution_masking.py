"""RunService masks what a run brings back before anything stores or shows it: node
messages, the reason, the dbt artifacts kept with the run and the compiled SQL taken
from them — whatever the runner (a FakeRunner here writes what dbt would)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.app import App
from lib.config import Config
from lib.dbt_results import load_node_results
from lib.models import RunOutcome, RunRecord, RunStatus, TriggerKind
from lib.runners.base import RunContext
from tests.fakes import FakeRunner

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
SECRETS = {
    "DBT_ENV_SECRET_PEM": PEM,
    "DBT_ENV_SECRET_PW": r"s3cr(e)t.+*?[x]{2}",  # regex metacharacters, literally
}


def leaks(text: str) -> list[str]:
    pieces = [piece for value in SECRETS.values() for piece in (value, *value.splitlines())]
    return [piece for piece in pieces if len(piece) >= 4 and piece in text]


def dbt_like_run(ctx: RunContext) -> RunOutcome:
    """What a failing dbt run leaves: run_results.json whose node message and compiled code
    quote the secrets (a database error echoing a value), and the same in the reason."""
    quoted = " / ".join(SECRETS.values())
    results = {
        "results": [
            {
                "unique_id": "model.shop.orders",
                "status": "error",
                "message": f"Database Error: near {quoted}",
                "compiled_code": f"select '{quoted}' as leak",
                "execution_time": 0.1,
            }
        ]
    }
    (ctx.run_dir / "run_results.json").write_text(json.dumps(results))
    (ctx.run_dir / "manifest.json").write_text(
        json.dumps({"nodes": {"model.shop.orders": {"original_file_path": "models/orders.sql"}}})
    )
    nodes = load_node_results(ctx.run_dir) or ()
    return RunOutcome(RunStatus.FAILED, reason=f"1 error: {quoted}", exit_code=1, nodes=nodes)


def test_node_messages_artifacts_and_compiled_sql_are_masked_for_every_reader(
    make_config: Callable[..., Config], make_app: Callable[..., App], tmp_path: Path
) -> None:
    config = make_config({"nightly": {"schedule": "0 5 * * *", "env": SECRETS}})
    app = make_app(config, FakeRunner(dbt_like_run))
    heard: list[RunRecord] = []
    app.service.listeners.append(heard.append)
    job = config.jobs["nightly"]
    records = [app.service.execute(app.service.new_request(job, TriggerKind.MANUAL)) for _ in range(2)]

    for record in records:
        assert record.outcome.status is RunStatus.FAILED
        assert not leaks(record.outcome.reason)
        assert record.outcome.nodes[0].message == "Database Error: near ***** / *****"
        assert record.run_dir is not None
        files = [p for p in record.run_dir.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"run_results.json", "report.json", "report.md"}
        assert any(p.parent.name != record.run_dir.name and p.suffix == ".sql" for p in files)  # compiled/
        for path in files:
            assert not leaks(path.read_text()), path
        kept = json.loads((record.run_dir / "run_results.json").read_text())  # still valid JSON
        assert kept["results"][0]["compiled_code"] == "select '***** / *****' as leak"
    assert [r.run_id for r in heard] == [r.run_id for r in records]
    assert all(not leaks(r.outcome.nodes[0].message or "") for r in heard)
    dump = "\n".join(sqlite3.connect(config.state_dir / "history.db").iterdump())
    assert not leaks(dump) and "*****" in dump


def test_an_ecs_jobs_masker_knows_the_aws_env_files_secrets(
    make_config: Callable[..., Config], make_app: Callable[..., App], tmp_path: Path
) -> None:
    """An ECS task's environment is aws.env_file: its DBT_ENV_SECRET_* values are masked in
    what the scheduler stores of the task (the CloudWatch copy), other values are not."""
    env_file = tmp_path / "dbt.env"
    env_file.write_text("DBT_ENV_SECRET_SNOWFLAKE_PASSWORD=hunter2-Zq9\nSNOWFLAKE_USER=svc_loader\n")
    aws: dict[str, Any] = {"region": "eu-west-1", "bucket": "b", "env_file": str(env_file)}
    config = make_config(
        {
            "on_ecs": {
                "schedule": "0 5 * * *",
                "runner": "ecs",
                "git": "https://example.com/shop.git",
                "project_dir": None,
            },
            "local": {"schedule": "0 5 * * *"},
        },
        aws=aws,
    )
    app = make_app(config)
    ecs_mask = app.service.masker_for(config.jobs["on_ecs"])
    assert ecs_mask("pw hunter2-Zq9 for svc_loader") == "pw ***** for svc_loader"
    assert app.service.masker_for(config.jobs["local"])("hunter2-Zq9") == "hunter2-Zq9"


def test_a_failed_runs_kept_work_folder_is_masked_too(
    make_config: Callable[..., Config], make_app: Callable[..., App]
) -> None:
    """dbt masks a secret only whole: the lines of a PEM a model printed reach its own log
    and run_results.json in work/, which a failed run keeps for debugging."""

    def leaves_work(ctx: RunContext) -> RunOutcome:
        work = ctx.run_dir / "work"
        (work / "logs").mkdir(parents=True)
        (work / "target" / "compiled" / "shop").mkdir(parents=True)
        lines = "\n".join(f"12:00:00  {line}" for line in PEM.splitlines())
        (work / "logs" / "dbt.log").write_text(lines)
        (work / "target" / "run_results.json").write_text(json.dumps({"message": PEM}))
        (work / "target" / "compiled" / "shop" / "orders.sql").write_text(
            f"-- {SECRETS['DBT_ENV_SECRET_PW']}"
        )
        (work / "shop.duckdb").write_bytes(b"\x00binary, left alone\xff")
        return RunOutcome(RunStatus.FAILED, reason="1 error", exit_code=1)

    config = make_config({"nightly": {"schedule": "0 5 * * *", "env": SECRETS}})
    app = make_app(config, FakeRunner(leaves_work))
    job = config.jobs["nightly"]
    for _ in range(2):
        record = app.service.execute(app.service.new_request(job, TriggerKind.MANUAL))
        assert record.run_dir is not None
        work = record.run_dir / "work"
        for path in (work / "logs" / "dbt.log", work / "target" / "run_results.json"):
            assert "*****" in path.read_text() and not leaks(path.read_text()), path
        assert (work / "target" / "compiled" / "shop" / "orders.sql").read_text() == "-- *****"
        assert (work / "shop.duckdb").read_bytes() == b"\x00binary, left alone\xff"
