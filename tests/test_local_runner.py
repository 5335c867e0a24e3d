"""The local runner with real bash processes (small stand-in scripts, no dbt): env, timeout, cancel."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

from lib.clock import SystemClock
from lib.models import Job, RunRequest, RunStatus, TriggerKind
from lib.runners.base import CancelToken, RunContext
from lib.runners.local import LocalRunner
from lib.secrets import SecretMasker
from lib.triggers import parse_every

FAST_STOP = ((signal.SIGINT, 1.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0))


def make_job(tmp_path: Path, **kw: object) -> Job:
    base: dict[str, object] = {
        "name": "j",
        "trigger": parse_every("1 hour", ZoneInfo("UTC")),
        "timezone": ZoneInfo("UTC"),
        "project_dir": tmp_path,
    }
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


def run(
    tmp_path: Path,
    script: str,
    job: Job | None = None,
    cancel: CancelToken | None = None,
    masker: SecretMasker | None = None,
    base_env: dict[str, str] | None = None,
    lines: list[str] | None = None,
):
    path = tmp_path / "script.sh"
    path.write_text(script)
    runner = LocalRunner(
        script=path, base_env=base_env or {"PATH": os.environ["PATH"]}, stop_sequence=FAST_STOP
    )
    job = job or make_job(tmp_path)
    ctx = RunContext(
        request=RunRequest(job, "r1", TriggerKind.MANUAL),
        run_dir=tmp_path / "run",
        clock=SystemClock(),
        masker=masker or SecretMasker(),
        on_line=(lines.append if lines is not None else (lambda line: None)),
        cancel=cancel or CancelToken(),
    )
    return runner.run(ctx)


def test_environment_precedence_and_scheduler_variables(tmp_path: Path) -> None:
    env_file = tmp_path / "job.env"
    env_file.write_text("FROM_FILE=file\nBOTH=file\n")
    job = make_job(
        tmp_path, env_file=env_file, env={"BOTH": "job"}, target="prod", commands=("dbt run", "dbt test")
    )
    outcome = run(
        tmp_path,
        'echo "BOTH=$BOTH FILE=$FROM_FILE BASE=$BASE TARGET=$DBT_TARGET PROJECT=$DBT_PROJECT_DIR"\n'
        'printf "%s\\n" "$DBT_COMMANDS" | wc -l\n',
        job=job,
        base_env={"PATH": os.environ["PATH"], "BASE": "base", "BOTH": "base"},
    )
    log = outcome.log_path.read_text()  # type: ignore[union-attr]
    assert f"BOTH=job FILE=file BASE=base TARGET=prod PROJECT={tmp_path}" in log
    assert log.splitlines()[1].strip() == "2"
    assert outcome.status is RunStatus.SUCCEEDED
    assert outcome.reason == "dbt succeeded but wrote no run_results.json"


def test_output_is_masked_streamed_and_markers_read(tmp_path: Path) -> None:
    lines: list[str] = []
    outcome = run(
        tmp_path,
        'echo "[run_commands] GIT_SHA 0123456789abcdef0123456789abcdef01234567"\n'
        'echo "password is $DBT_ENV_SECRET_PW"\n'
        'echo "[run_commands] ERROR git fetch failed: check jobs.j.git.ref" \n'
        "exit 11\n",
        job=make_job(tmp_path, env={"DBT_ENV_SECRET_PW": "s3cr3t-value"}),
        masker=SecretMasker(["s3cr3t-value"]),
        lines=lines,
    )
    assert "password is *****" in lines
    assert "s3cr3t-value" not in outcome.log_path.read_text()  # type: ignore[union-attr]
    assert outcome.git_sha == "0123456789abcdef0123456789abcdef01234567"
    assert outcome.status is RunStatus.FAILED_TO_START
    assert outcome.reason == "git fetch failed: check jobs.j.git.ref"
    assert outcome.exit_code == 11


def test_missing_env_var_is_named_with_the_fix(tmp_path: Path) -> None:
    outcome = run(tmp_path, "echo \"  Env var required but not provided: 'SNOWFLAKE_ACCOUNT'\"\nexit 2\n")
    assert outcome.status is RunStatus.FAILED
    assert outcome.reason == (
        "dbt needs environment variable SNOWFLAKE_ACCOUNT: set it in jobs.j.env or its env_file"
    )


def test_missing_env_file_fails_to_start(tmp_path: Path) -> None:
    job = make_job(tmp_path, env_file=tmp_path / "gone.env")
    outcome = run(tmp_path, "echo never\n", job=job)
    assert outcome.status is RunStatus.FAILED_TO_START
    assert "gone.env does not exist" in outcome.reason


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"trap '' INT TERM\n(trap '' INT TERM; sleep 60) &\necho $! > {pid_file}\nwait\n"
    outcome = run(tmp_path, script, job=make_job(tmp_path, timeout=0.5))
    assert outcome.status is RunStatus.TIMED_OUT
    assert "exceeded its timeout of 0.5s" in outcome.reason
    child = int(pid_file.read_text())
    # The grandchild that ignored SIGINT/SIGTERM got SIGKILL too: gone, or a zombie
    # waiting for a PID 1 that does not reap (as in some containers).
    assert not is_alive(child)


def is_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "zombie" not in state


def test_cancel_stops_the_run(tmp_path: Path) -> None:
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel).start()
    outcome = run(tmp_path, "sleep 30\n", cancel=cancel)
    assert outcome.status is RunStatus.CANCELLED


def test_plain_failure_quotes_the_last_line(tmp_path: Path) -> None:
    outcome = run(tmp_path, "echo 'something broke badly'\nexit 3\n")
    assert outcome.status is RunStatus.FAILED
    assert outcome.reason == "exit code 3 (dbt wrote no run_results.json): something broke badly"


def test_unstartable_script_is_failed_to_start(tmp_path: Path) -> None:
    runner = LocalRunner(script=tmp_path / "x.sh", base_env={"PATH": "/nonexistent"})
    ctx = RunContext(
        request=RunRequest(make_job(tmp_path), "r1", TriggerKind.MANUAL),
        run_dir=tmp_path / "run",
        clock=SystemClock(),
        masker=SecretMasker(),
    )
    runner.popen = lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("bash"))  # type: ignore[assignment]
    outcome = runner.run(ctx)
    assert outcome.status is RunStatus.FAILED_TO_START
    assert "could not start bash" in outcome.reason
