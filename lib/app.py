"""Composition root: the one place that builds config, clock, history, runners and the run service.

Tests build the same pieces with a FakeClock, fake runners or a moto endpoint;
nothing below reads the clock or the environment on its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lib.clock import Clock, SystemClock
from lib.config import Config, load_config
from lib.execution import RunService
from lib.history import History
from lib.runners.base import Runner
from lib.secrets import SecretMasker

CONFIG_ENV = "DBT_SCHEDULER_CONFIG"
RUN_COMMANDS_ENV = "DBT_SCHEDULER_RUN_COMMANDS"


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, "jobs.yaml"))


@dataclass
class App:
    config: Config
    clock: Clock
    history: History
    service: RunService


def default_runners(config: Config, base_env: Mapping[str, str]) -> dict[str, Runner]:
    """One runner per kind the config uses; heavy ones (boto3) are imported only when needed."""
    from lib.runners.local import RUN_COMMANDS, LocalRunner

    # An operator may wrap the entry script (extra set-up, a different shell); the
    # benchmarks use this to time dispatch without dbt's start-up in the way.
    script = Path(base_env.get(RUN_COMMANDS_ENV) or RUN_COMMANDS)
    # The scheduler's own venv may hold dbt (make demo installs it there): put its bin
    # first on PATH so a daemon started as `.venv/bin/python scheduler.py` finds it.
    runners: dict[str, Runner] = {
        "local": LocalRunner(script=script, base_env=base_env, extra_path=Path(sys.executable).parent)
    }
    used = {job.runner for job in config.jobs.values()}
    if "docker" in used:
        from lib.runners.docker import DockerRunner

        runners["docker"] = DockerRunner(config.docker, base_env=base_env)
    if "ecs" in used and config.aws is not None:
        # boto3 is imported only here: a daemon with local jobs only stays lean.
        from lib.aws.clients import AwsClients
        from lib.runners.ecs import EcsRunner

        runners["ecs"] = EcsRunner(config.aws, AwsClients(config.aws))
    return runners


def build_app(
    config: Config | Path | str | None = None,
    clock: Clock | None = None,
    runners: Mapping[str, Runner] | None = None,
    base_env: Mapping[str, str] | None = None,
) -> App:
    if not isinstance(config, Config):
        config = load_config(config if config is not None else default_config_path())
    clock = clock or SystemClock()
    base_env = dict(os.environ if base_env is None else base_env)
    history = History(config.state_dir / "history.db")
    from lib.notify.dispatcher import build_notifier

    extra_secrets = config.notifications.secret_values
    notifier = build_notifier(config, history, mask=SecretMasker(extra_secrets), clock=clock)
    service = RunService(
        state_dir=config.state_dir,
        runners=runners if runners is not None else default_runners(config, base_env),
        history=history,
        clock=clock,
        base_env=base_env,
        aws_env_file=config.aws.env_file if config.aws is not None else None,
        notifier=notifier,
        extra_secrets=extra_secrets,
    )
    return App(config=config, clock=clock, history=history, service=service)
