"""pyproject.toml: `pip install .` gives a working `dbt-scheduler` command, and the
package's dependencies are the pinned requirements*.txt the Makefile installs."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.dbt_helpers import REPO_ROOT, make_fake_dbt

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirements_file(name: str) -> set[str]:
    """The requirements a file lists itself (comments and `-r` includes left out), normalised."""
    lines = (REPO_ROOT / name).read_text(encoding="utf-8").splitlines()
    return {norm(line) for line in lines if line.strip() and not line.lstrip().startswith(("#", "-r"))}


def norm(requirement: str) -> str:
    parsed = Requirement(requirement)
    extras = f"[{','.join(sorted(parsed.extras))}]" if parsed.extras else ""
    specifier = ",".join(sorted(str(s) for s in parsed.specifier))
    return f"{parsed.name.lower()}{extras}{specifier}"


def extra(name: str) -> set[str]:
    return {norm(r) for r in PYPROJECT["optional-dependencies"][name] if not r.startswith("dbt-scheduler")}


def test_the_package_depends_on_exactly_the_daemons_requirements() -> None:
    assert {norm(r) for r in PYPROJECT["dependencies"]} == requirements_file("requirements.txt")


def test_the_extras_are_the_dbt_and_dev_requirements() -> None:
    assert extra("duckdb") == requirements_file("requirements-dbt.txt")
    assert extra("dev") == requirements_file("requirements-dev.txt")
    assert "dbt-scheduler[duckdb]" in PYPROJECT["optional-dependencies"]["dev"]
    # The job image's pins, so a job behaves alike on every runner.
    image = requirements_file("docker/requirements.txt")
    assert extra("snowflake") <= image
    assert {r for r in image if r.startswith("dbt-core")} == {r for r in extra("snowflake") if "core" in r}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds (hatchling comes from the package registry)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
         "-w", str(out), str(REPO_ROOT)],
        check=True,
        timeout=300,
    )  # fmt: skip
    (built,) = out.glob("dbt_scheduler-*.whl")
    return built


def test_the_wheel_carries_the_code_and_the_run_script_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "lib/_shipped/run_commands.sh" in names
    assert "lib/cli.py" in names and "lib/runners/local.py" in names
    # The web UI's templates and static files travel with the code (lib/web/pages.py finds them there).
    assert {"lib/web/templates/base.html", "lib/web/static/style.css", "lib/web/static/log.js"} <= set(names)
    top = {name.split("/")[0] for name in names}
    assert top == {"lib", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    shipped = zipfile.ZipFile(wheel).read("lib/_shipped/run_commands.sh")
    assert shipped == (REPO_ROOT / "docker" / "run_commands.sh").read_bytes()
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "dbt-scheduler = lib.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_pip_install_gives_a_dbt_scheduler_command_that_runs_jobs(wheel: Path, tmp_path: Path) -> None:
    """A clean venv, the wheel and its dependencies, run far from the clone: the command
    validates a jobs.yaml and runs a local job twice with the run script the package carries
    (a stand-in `dbt` on PATH: the base package has no dbt, that is the `[duckdb]` extra)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=600)

    project = tmp_path / "project"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: shop\nversion: '1.0'\nprofile: shop\n")
    (tmp_path / "jobs.yaml").write_text(
        f"state_dir: {tmp_path / 'state'}\njobs:\n  nightly:\n    schedule: '0 5 * * *'\n"
        f"    project_dir: {project}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{make_fake_dbt(tmp_path / 'bin')}{os.pathsep}{env.get('PATH', os.defpath)}"
    command = [str(env_dir / "bin" / "dbt-scheduler"), "--config", str(tmp_path / "jobs.yaml")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    assert run("--version").stdout.strip().startswith("dbt-scheduler ")
    assert run("validate").returncode == 0
    for attempt in (1, 2):
        result = run("run-now", "nightly")
        assert result.returncode == 0, (attempt, result.stdout, result.stderr)
    logs = sorted((tmp_path / "state" / "runs" / "nightly").glob("*/run.log"))
    assert len(logs) == 2
    for log in logs:
        text = log.read_text()
        assert "FAKE_DBT ARGV <build>" in text  # run_commands.sh ran the job's default command
        assert "[run_commands] EXIT 0" in text
    probe = "from lib.shipped import run_commands_script; print(run_commands_script())"
    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", probe],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "site-packages/lib/_shipped/run_commands.sh" in where
