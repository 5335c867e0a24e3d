from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lib import procs
from lib.app import App, build_app
from lib.config import Config, parse_config
from tests.fakes import FakeClock, FakeRunner

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(autouse=True)
def same_process_state_after() -> Iterator[None]:
    """The umask and signal handlers as the test found them. `lib.cli.main` called
    in-process sets what a CLI process should: umask 027 for a command that writes under
    state_dir (later tests' files would be unreadable to others: a container's user then
    cannot run the script a test wrote), and run-now's SIGINT/SIGTERM/SIGHUP handlers."""
    umask = os.umask(0o022)
    os.umask(umask)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    os.umask(umask)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture(autouse=True)
def no_run_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that ran jobs under its tmp_path, kill every run's process group it
    left: a failed assertion, a timeout or a killed daemon/run-now leaves bash + dbt going
    otherwise (each run is its own session), loading the box for all later tests."""
    # Looked up before the test: tmp_path is torn down before this fixture's teardown runs.
    tmp_path: Path | None = (
        request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    )
    yield
    if tmp_path is None:
        return
    for db in tmp_path.glob("**/history.db"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                pids = [
                    row[0]
                    for row in conn.execute("SELECT process_pid FROM runs WHERE process_pid IS NOT NULL")
                ]
        except sqlite3.Error:
            continue  # an older schema, or a file a test broke on purpose
        for pid in pids:
            if procs.group_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def dbt_project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "dbt_project.yml").write_text("name: p\n")
    return proj


@pytest.fixture
def make_config(tmp_path: Path, dbt_project: Path) -> Callable[..., Config]:
    """parse_config over plain dicts; each job gets project_dir unless it says otherwise."""

    def make(jobs: dict[str, dict[str, Any]], **top: Any) -> Config:
        data = {"state_dir": str(tmp_path / "state"), **top, "jobs": {}}
        for name, job in jobs.items():
            data["jobs"][name] = {"project_dir": str(dbt_project), **job}
        return parse_config(data, base_dir=tmp_path)

    return make


@pytest.fixture
def make_app(clock: FakeClock) -> Callable[..., App]:
    def make(config: Config, runner: Any = None) -> App:
        return build_app(config, clock=clock, runners={"local": runner or FakeRunner()}, base_env={})

    return make


@pytest.fixture
def served(make_config: Callable[..., Config], make_app: Callable[..., App]) -> Iterator[Any]:
    """The web app on a real Daemon loop (tests/web_helpers.py; imported only here, so the
    tests that do not use it do not import Starlette)."""
    from tests.web_helpers import serve

    yield from serve(make_config, make_app)


# The moto server fixtures (moto_endpoint, aws_settings, aws_clients) for every AWS test.
from tests.aws_helpers import aws_clients, aws_settings, moto_endpoint  # noqa: E402, F401
from tests.ecs_helpers import ecs  # noqa: E402, F401
