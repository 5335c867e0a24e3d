"""The docker runner: the job image's docker/run_commands.sh in a local container.

`docker run` (or `podman run`) stays attached, so the container's output streams
into run.log like a local run's, and its exit code is the run's: the same
contract as the local runner (run_commands.sh exits 10/11/12/127 when the run
never got to dbt). What the container needs crosses three ways:

- the job's variables (env_file, env and the scheduler's own, see
  `lib.run_env.container_variables`) in a 0600 `--env-file` that lives only as
  long as the run; a value with a line break (DBT_COMMANDS) cannot be written in
  an env file, so it is named with `--env NAME` and its value is handed to the
  engine in its own environment: never on a command line `ps` shows;
- the run folder, bind-mounted at /artifacts, where run_commands.sh copies
  run_results.json and manifest.json (DBT_ARTIFACTS_DIR);
- the job's project_dir at /project and profiles_dir at /profiles, read-only
  (a git job clones inside the container instead) — except a project with
  packages.yml or dependencies.yml: `dbt deps` writes dbt_packages/ into it;
- the job's partial-parse cache (ctx.cache_dir) at /cache, so dbt's parse is
  kept between runs as with the local runner.

Who the container runs as: `--user <uid>:<gid>` of the scheduler itself, so the
artifacts it writes into the run folder belong to the daemon, which can read and
delete them, whatever uid the image's own user has. With rootless podman that
uid would map to a sub-uid on the host: `--userns=keep-id` keeps it the
daemon's. Rootless Docker maps container root to the daemon's user: give
`docker.extra_args: ["--user", "0:0"]` there; a `--user`/`-u` in extra_args
always replaces ours.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, NamedTuple

from lib.dbt_results import load_node_results
from lib.durations import format_duration
from lib.markers import parse_marker
from lib.models import DockerSettings, RunOutcome, RunStatus
from lib.run_env import EnvFileError, container_variables, job_cache_variables, read_env_file
from lib.runners.base import RunContext, classify_exit, follow_process
from lib.runners.runlog import RunLog, with_note

# The local runner's output watcher: one place that masks, logs and reads markers.

Popen = Callable[..., subprocess.Popen]

ARTIFACTS_MOUNT = "/artifacts"
PROJECT_MOUNT = "/project"
PROFILES_MOUNT = "/profiles"
CACHE_MOUNT = "/cache"
CONTAINER_PREFIX = "dbt-scheduler"
# docker/podman's own exit codes for `run`: 125 the engine failed (no such image,
# bad flag, no daemon), 126 the entrypoint cannot be executed, 127 it does not exist.
ENGINE_ERROR = 125
ENTRYPOINT_ERRORS = (126, 127)
# How long `<engine> run` may take to exit once its container is stopped, and how
# long `stop`, `kill` and `rm` may take on top of their own grace periods.
EXIT_GRACE = 10.0
COMMAND_TIMEOUT = 30.0
# Lines the engines print after the error itself ("Run 'docker run --help' for more information").
_HELP_HINT = re.compile(r"^(Run|See) '[^']*--help'")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class DockerRunner:
    """Runs a job in a local container; the timeout and cancel stop it (`<engine> stop`).

    The container is never started with `--rm`: through the docker CLI to a podman
    service, `--rm` loses the exit code (CONTRIBUTING.md, "Behaviour of the tools": Containers). It is
    removed with `<engine> rm -f` once the run is over, whatever happened.
    """

    def __init__(
        self,
        settings: DockerSettings,
        base_env: Mapping[str, str] | None = None,
        popen: Popen = subprocess.Popen,
        stop_timeout: int = 10,
    ) -> None:
        self.settings = settings
        # The engine's own environment (PATH, DOCKER_HOST, CONTAINERS_CONF…); unlike the
        # local runner's base_env, none of it is passed into the container.
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.popen = popen
        self.stop_timeout = stop_timeout

    def run(self, ctx: RunContext) -> RunOutcome:
        """Runs the job's image once, attached, and classifies the exit like the local runner.

        Before the container runs, `failed_to_start` with the reason: a missing
        env_file, a folder that cannot be mounted, no engine on PATH, or the
        engine's own message when `run` fails (exit 125: no such image, bad
        extra_args, no daemon; 126/127 with no run_commands.sh output: the
        image's entrypoint is missing). On timeout or cancel the container is
        stopped (SIGTERM, then SIGKILL after `stop_timeout` seconds); the outcome is
        then timed_out or cancelled. The container name is reported through
        ctx.on_external_id as soon as `run` starts.
        """
        job = ctx.request.job
        image = job.image or self.settings.image
        name = container_name(job.name, ctx.request.run_id)
        log_path = ctx.run_dir / "run.log"
        ctx.run_dir.mkdir(parents=True, exist_ok=True)

        with RunLog(log_path) as log:

            def not_started(message: str) -> RunOutcome:
                message = ctx.masker(message)
                log.write(message + "\n")
                return RunOutcome(RunStatus.FAILED_TO_START, reason=message, log_path=log_path)

            launch = self._prepare(ctx, name, image)
            if isinstance(launch, str):
                return not_started(launch)
            try:
                try:
                    process = self.popen(
                        launch.args,
                        env=launch.env,
                        cwd=str(ctx.run_dir),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,  # the engine's own errors belong in run.log too
                    )
                except OSError as exc:
                    return not_started(f"could not start {launch.args[0]}: {exc}")
                with contextlib.suppress(Exception):  # history is informative, never fatal here
                    ctx.on_external_id(name, None)
                try:
                    followed = follow_process(
                        process, log, ctx, stop=lambda: self._stop(process, launch, name)
                    )
                finally:
                    _remove_container(launch, name, log)
            finally:
                launch.env_file.unlink(missing_ok=True)  # it holds the job's secrets

        exit_code, timed_out, cancelled, watcher = followed
        nodes = load_node_results(ctx.run_dir)
        tail = list(watcher.tail)
        if timed_out:
            status = RunStatus.TIMED_OUT
            reason = f"exceeded its timeout of {format_duration(job.timeout)}: the container was stopped"
        elif cancelled:
            status, reason = RunStatus.CANCELLED, ctx.cancel.reason
        elif exit_code == ENGINE_ERROR or (exit_code in ENTRYPOINT_ERRORS and not _script_ran(tail)):
            status = RunStatus.FAILED_TO_START
            reason = _start_failure(self.settings.engine, image, exit_code, tail)
        else:
            status, reason = classify_exit(
                exit_code,
                nodes=nodes,
                error_marker=watcher.error_marker,
                log_tail=tail,
                job_name=job.name,
            )
        return RunOutcome(
            status=status,
            reason=ctx.masker(with_note(reason, log)),
            exit_code=exit_code,
            log_path=log_path,
            nodes=nodes or (),
            git_sha=watcher.git_sha,
            external_id=name,
        )

    # ------------------------------------------------------------------ building the command

    def _prepare(self, ctx: RunContext, name: str, image: str) -> _Launch | str:
        """The `<engine> run` command with its env file written, or why it cannot run."""
        engine = self.settings.engine
        try:
            variables = self._variables(ctx)
        except EnvFileError as exc:
            return str(exc)
        mounts = self._mounts(ctx)
        if isinstance(mounts, str):
            return mounts
        env = dict(self.base_env)
        search_path = env.get("PATH", os.defpath)
        executable = shutil.which(engine, path=search_path)
        if executable is None:
            return (
                f"{engine} is not installed or not on PATH ({search_path}): install it, "
                "or set docker.engine to docker or podman"
            )
        env_file, by_name = _write_env_file(ctx.run_dir, variables, env)
        args = [
            executable,
            "run",
            "--init",  # reaps zombies and forwards `stop`'s SIGTERM in images without tini
            "--name",
            name,
            "--env-file",
            str(env_file),
            *(arg for variable in by_name for arg in ("--env", variable)),
            *self._user_args(engine),
            *mounts,
            *self.settings.extra_args,
            image,
        ]
        return _Launch(args, env, env_file)

    def _variables(self, ctx: RunContext) -> dict[str, str]:
        """env_file < job.env < the scheduler's variables, with the container's own paths."""
        job = ctx.request.job
        env = read_env_file(job)
        env.update(
            container_variables(
                job,
                ctx.request,
                project_dir=PROJECT_MOUNT if job.project_dir is not None else None,
                artifacts_dir=ARTIFACTS_MOUNT,
            )
        )
        if job.profiles_dir is not None:
            env["DBT_PROFILES_DIR"] = PROFILES_MOUNT
        if ctx.cache_dir is not None:
            env.update(job_cache_variables(job, Path(CACHE_MOUNT)))
        return env

    def _mounts(self, ctx: RunContext) -> list[str] | str:
        """The `-v` arguments, or a message naming a folder that cannot be mounted."""
        job = ctx.request.job
        where = f"jobs.{job.name}"
        binds: list[tuple[Path, str, bool, str]] = [(ctx.run_dir, ARTIFACTS_MOUNT, False, "the run folder")]
        if job.git is None and job.project_dir is not None:
            # `dbt deps` writes dbt_packages/ and package-lock.yml into the project
            # (dbt has no setting to put them elsewhere), so a project with packages
            # is mounted writable, as the local runner uses it in place.
            has_packages = any((job.project_dir / f).is_file() for f in ("packages.yml", "dependencies.yml"))
            binds.append((job.project_dir, PROJECT_MOUNT, not has_packages, f"{where}.project_dir"))
        if job.profiles_dir is not None:
            binds.append((job.profiles_dir, PROFILES_MOUNT, True, f"{where}.profiles_dir"))
        if ctx.cache_dir is not None:
            # The job's cache folder (partial parse, git checkout). Created here, owned
            # by the daemon: a missing bind source would be created by a docker daemon as root.
            ctx.cache_dir.mkdir(parents=True, exist_ok=True)
            binds.append((ctx.cache_dir, CACHE_MOUNT, False, "the job's cache folder"))
        args: list[str] = []
        for host, target, read_only, what in binds:
            host = host.resolve()
            if not host.is_dir():
                return f"{what}: {host} is not a folder: docker cannot mount it"
            if ":" in str(host) or "," in str(host):
                return f"{what}: {host} contains ':' or ',', which docker -v cannot mount: move it"
            args += ["-v", f"{host}:{target}{':ro' if read_only else ''}"]
        return args

    def _user_args(self, engine: str) -> list[str]:
        """`--user` of this process, unless extra_args already chooses one (see the module doc)."""
        extra = self.settings.extra_args
        if any(a == "--user" or a.startswith("--user=") or a.startswith("-u") for a in extra):
            return []
        args = ["--user", f"{os.getuid()}:{os.getgid()}"]
        is_podman = Path(engine).name == "podman"
        has_userns = any(arg == "--userns" or arg.startswith("--userns=") for arg in extra)
        if is_podman and os.geteuid() != 0 and not has_userns:
            args.append("--userns=keep-id")
        return args

    def stop_container(self, name: str) -> bool:
        """Stop and remove a run's container a killed scheduler left behind (`<engine>
        stop -t N`, then `rm -f`); True when there was one to stop. Never raises."""
        engine = shutil.which(self.settings.engine, path=self.base_env.get("PATH", os.defpath))
        if engine is None:
            return False
        launch = _Launch([engine], dict(self.base_env), Path())
        code, _ = _engine(launch, ["stop", "-t", str(self.stop_timeout), name], self.stop_timeout)
        _engine(launch, ["rm", "-f", name], 0)
        return code == 0

    # ------------------------------------------------------------------ following the run

    def _stop(self, process: subprocess.Popen, launch: _Launch, name: str) -> None:
        """`<engine> stop -t N`: SIGTERM to the container's init, SIGKILL after N seconds.

        Signalling the attached `run` process instead would not do: the docker CLI
        only forwards the signal to a daemon. If the container does not exist yet
        (the image is still being pulled) `stop` fails, and the `run` process itself
        is terminated, then killed.
        """
        _engine(launch, ["stop", "-t", str(self.stop_timeout), name], self.stop_timeout)
        for end in (None, process.terminate, process.kill):
            if end is not None:
                with contextlib.suppress(ProcessLookupError):
                    end()
            try:
                process.wait(timeout=EXIT_GRACE)
                return
            except subprocess.TimeoutExpired:
                continue


class _Launch(NamedTuple):
    args: list[str]  # `<engine> run … image`, the engine's full path first
    env: dict[str, str]  # the engine's environment, with the values passed by name
    env_file: Path


def container_name(job: str, run_id: str) -> str:
    """`dbt-scheduler-<job>-<run_id>`, with anything docker refuses in a name turned into '-'."""
    return _NAME_UNSAFE.sub("-", f"{CONTAINER_PREFIX}-{job}-{run_id}")


def _write_env_file(
    run_dir: Path, variables: Mapping[str, str], engine_env: dict[str, str]
) -> tuple[Path, list[str]]:
    """Writes the one-line values into a 0600 env file; the others go into `engine_env`.

    docker and podman read an env file line by line, literally (no quotes, no
    escapes), so a value holding a line break is handed over by name instead:
    `--env NAME` makes the engine copy NAME from its own environment.
    """
    fd, path = tempfile.mkstemp(prefix=".container-", suffix=".env", dir=run_dir)  # mode 0600
    by_name: list[str] = []
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for key, value in variables.items():
            if "\n" in value or "\r" in value:
                by_name.append(key)
                engine_env[key] = value
            else:
                out.write(f"{key}={value}\n")
    return Path(path), by_name


def _engine(launch: _Launch, args: list[str], grace: float) -> tuple[int, str]:
    """Runs `<engine> args` to completion; (exit code, output). Never raises."""
    try:
        done = subprocess.run(
            [launch.args[0], *args],
            env=launch.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=grace + COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return done.returncode, (done.stderr or done.stdout).strip()


def _remove_container(launch: _Launch, name: str, log: IO[str]) -> None:
    code, output = _engine(launch, ["rm", "-f", name], 0)
    # "no such container": it was never created (bad image, bad flag); nothing to remove.
    if code != 0 and "no such container" not in output.lower():
        log.write(f"[dbt-scheduler] could not remove container {name}: {output}\n")


def _script_ran(tail: list[str]) -> bool:
    """Whether run_commands.sh printed anything: then an exit 126/127 is its own, not the engine's."""
    return any(parse_marker(line) is not None for line in tail)


def _start_failure(engine: str, image: str, exit_code: int, tail: list[str]) -> str:
    """The engine's own message for a container that never ran the job."""
    lines = [line.strip() for line in tail if line.strip() and not _HELP_HINT.match(line.strip())]
    errors = [line for line in lines if "error" in line.lower()]
    message = (errors or lines or ["no output"])[-1][:300]
    if exit_code == ENGINE_ERROR:
        return f"{engine} could not start image {image} (exit {exit_code}): {message}"
    return (
        f"image {image}: its entrypoint could not be run (exit {exit_code}): {message}; "
        "build it from docker/Dockerfile or check docker.image / the job's image"
    )
