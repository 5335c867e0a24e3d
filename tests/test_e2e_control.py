"""The control plane end to end: the real daemon, `run-now` and `cancel` over its socket.

A stand-in for docker/run_commands.sh (DBT_SCHEDULER_RUN_COMMANDS) takes dbt's place: it
prints lines, stamps when it starts and ends, and traps SIGINT the way dbt does, so these
tests are about the control plane, not dbt's seconds. The two-user test creates Unix
users (`useradd`) and runs the daemon as a service user of its own, the way systemd does.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import os
import pty
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lib import procs
from lib.dbt_results import strip_ansi
from tests.daemon_helpers import REPO, history_rows, running_daemon, stand_in_project, wait_for

pytestmark = pytest.mark.timeout(240)

RUN_SCRIPT = """trap 'echo "stand-in got SIGINT"; echo "[run_commands] EXIT 130"; exit 130' INT
echo "[run_commands] STEP command 1/1: dbt build"
[ -n "$STAMPS" ] && echo "start $(date +%s.%N)" >> "$STAMPS/$DBT_SCHEDULER_RUN_ID"
case "$DBT_SCHEDULER_JOB" in
  slow*) steps=600 ;;
  *) steps=${STEPS:-5} ;;
esac
for i in $(seq 1 "$steps"); do echo "working $i of $DBT_SCHEDULER_JOB"; sleep 0.1; done
[ -n "$STAMPS" ] && echo "end $(date +%s.%N)" >> "$STAMPS/$DBT_SCHEDULER_RUN_ID"
echo "[run_commands] EXIT 0"
"""


def cli(
    config: Path, *args: str, user: str | None = None, python: str = sys.executable, **kw: Any
) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", user, "--"] if user else []
    return subprocess.run(
        [*prefix, python, "scheduler.py", "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def popen_cli(config: Path, *args: str, **kw: Any) -> subprocess.Popen:
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "scheduler.py", "--config", str(config), *args],
        cwd=REPO,
        text=True,
        start_new_session=True,
        **kw,
    )


def write_config(folder: Path, project: Path, jobs: dict[str, str], top: str = "") -> Path:
    config = folder / "jobs.yaml"
    config.write_text(
        f"state_dir: {folder / 'state'}\nshutdown_grace: 30s\n{top}jobs:\n"
        + "".join(f"  {name}:\n    {spec}\n    project_dir: {project}\n" for name, spec in jobs.items())
    )
    return config


def started(log: Path) -> bool:
    return "dbt-scheduler started" in log.read_text()


def row(state: Path, run_id: str) -> dict[str, Any]:
    return next(r for r in history_rows(state) if r["run_id"] == run_id)


def stop_runs_left(state: Path) -> None:
    """Kill the process group of every run history knows, when a failed test left one."""
    for r in history_rows(state):
        if r["process_pid"] and procs.group_alive(r["process_pid"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r["process_pid"], signal.SIGKILL)


# ---------------------------------------------------------------------- two Unix users


@pytest.fixture
def users() -> Iterator[dict[str, str]]:
    """A service user with its own group (the daemon's), two teammates in that group and one
    outsider: created for the test, removed after it."""
    if os.geteuid() != 0:
        pytest.skip("creating Unix users (useradd) needs root")
    missing = [tool for tool in ("useradd", "userdel", "groupdel", "runuser") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    tag = f"{os.getpid() % 100000}"
    names = {"svc": f"dsvc{tag}", "alice": f"dalice{tag}", "bob": f"dbob{tag}", "carol": f"dcarol{tag}"}
    created: list[str] = []
    try:
        subprocess.run(
            ["useradd", "--system", "--user-group", "-M", "-s", "/usr/sbin/nologin", names["svc"]], check=True
        )
        created.append(names["svc"])
        for who in ("alice", "bob", "carol"):
            groups = ["-G", names["svc"]] if who != "carol" else []
            subprocess.run(["useradd", "--user-group", "-M", *groups, names[who]], check=True)
            created.append(names[who])
        yield names
    finally:
        for name in created:
            subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", names["svc"]], check=False, capture_output=True)


def python_for_everyone(user: str) -> tuple[str, dict[str, str]]:
    """An interpreter `user` may run, with this venv's packages: the venv's own when it can,
    else the system's python of the same minor version given the venv's site-packages (a
    pyenv interpreter under /root is not executable by anyone else); skip when neither is."""
    probe = "import yaml, rich, lib.cli"
    site = os.pathsep.join(p for p in sys.path if p.endswith("site-packages"))
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        (sys.executable, {}),
        *((c, {"PYTHONPATH": site}) for c in (f"/usr/bin/{minor}", f"/usr/local/bin/{minor}")),
    ]
    for python, env in candidates:
        if not os.path.exists(python):
            continue
        ran = subprocess.run(
            ["runuser", "-u", user, "--", python, "-c", probe],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            timeout=60,
        )
        if ran.returncode == 0:
            return python, env
    pytest.skip(f"no {minor} with this venv's packages that another user may run")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder other users can read (pytest's tmp_path is 0700 to root)."""
    folder = Path(tempfile.mkdtemp(prefix="dbts-ctl-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        stop_runs_left(folder / "state")
        shutil.rmtree(folder, ignore_errors=True)


def test_run_now_by_two_unix_users_goes_through_the_daemon_and_records_each_user(
    users: dict[str, str], shared_dir: Path
) -> None:
    project, script = stand_in_project(shared_dir, RUN_SCRIPT)
    for path in (shared_dir, project, project / "dbt_project.yml", script):
        path.chmod(0o755 if path.is_dir() or path == script else 0o644)
    config = write_config(shared_dir, project, {"j": "schedule: '0 6 1 1 *'"})
    config.chmod(0o644)
    svc = pwd.getpwnam(users["svc"])
    state = shared_dir / "state"
    state.mkdir(mode=0o750)
    os.chown(state, svc.pw_uid, svc.pw_gid)  # as systemd's StateDirectory= makes it
    log = shared_dir / "daemon.log"
    python, python_env = python_for_everyone(users["svc"])
    env = {"DBT_SCHEDULER_RUN_COMMANDS": str(script), **python_env}
    with running_daemon(config, log, env=env, user=users["svc"], python=python) as daemon:
        wait_for(lambda: started(log), 30, "the daemon to start")
        sock = state / "control.sock"
        mode = sock.stat()
        assert stat.S_ISSOCK(mode.st_mode) and stat.S_IMODE(mode.st_mode) == 0o660
        assert (mode.st_uid, grp.getgrgid(mode.st_gid).gr_name) == (svc.pw_uid, users["svc"])
        outputs = []
        for who in ("alice", "bob", "alice", "bob"):
            done = cli(
                config, "run-now", "j", user=users[who], python=python, env={**os.environ, **python_env}
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"submitted to the daemon as {users[who]}" in done.stderr
            outputs.append(done.stdout)
        # Someone outside the daemon's group is told how to get in, not run in-process.
        outsider = cli(
            config, "run-now", "j", user=users["carol"], python=python, env={**os.environ, **python_env}
        )
        assert outsider.returncode == 2, outsider.stdout + outsider.stderr
        assert "permission denied" in outsider.stderr and users["svc"] in outsider.stderr
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    rows = [r for r in history_rows(state) if r["job"] == "j"]
    assert [(r["trigger"], r["triggered_by"], r["outcome"]) for r in rows] == [
        ("manual", users[who], "succeeded") for who in ("alice", "bob", "alice", "bob")
    ]
    for out, r in zip(outputs, rows, strict=True):
        assert "working 5 of j" in out  # the run's lines, followed from the daemon
        assert "j succeeded" in out and f"run {r['run_id']} · manual by " in out  # the summary
    assert not (state / "control.sock").exists()  # removed on the way out


# ---------------------------------------------------------------------- the terminal goes away


def test_sighup_to_a_following_run_now_leaves_the_run_going_and_it_is_recorded(tmp_path: Path) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    config = write_config(tmp_path, project, {"j": "schedule: '0 6 1 1 *'"})
    state, log = tmp_path / "state", tmp_path / "daemon.log"
    env = {"DBT_SCHEDULER_RUN_COMMANDS": str(script), "STEPS": "30"}
    with running_daemon(config, log, env=env) as daemon:
        wait_for(lambda: started(log), 30, "the daemon to start")
        for _attempt in (1, 2):
            follower = popen_cli(config, "run-now", "j")
            try:
                wait_for(
                    lambda: sum(r["outcome"] == "running" for r in history_rows(state)) == 1,
                    30,
                    "the run to start",
                )
                [running] = [r for r in history_rows(state) if r["outcome"] == "running"]
                follower.send_signal(signal.SIGHUP)
                assert follower.wait(timeout=30) == 129
            finally:
                if follower.poll() is None:
                    os.killpg(follower.pid, signal.SIGKILL)
                follower.wait()
            assert row(state, running["run_id"])["outcome"] == "running"  # the CLI left; the run did not
            run_id = running["run_id"]
            wait_for(lambda: row(state, run_id)["outcome"] != "running", 30, "the run to end")  # noqa: B023
            done = row(state, running["run_id"])
            assert (done["outcome"], done["trigger"]) == ("succeeded", "manual"), done
            assert "working 30 of j" in Path(done["log_path"]).read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    assert len([r for r in history_rows(state) if r["outcome"] == "succeeded"]) == 2


# ---------------------------------------------------------------------- max_parallel


def intervals(stamps: Path) -> list[tuple[float, float]]:
    found = []
    for path in stamps.iterdir():
        marks = dict(line.split() for line in path.read_text().splitlines())
        found.append((float(marks["start"]), float(marks["end"])))
    return sorted(found)


def peak_concurrency(spans: Sequence[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def test_max_parallel_holds_for_scheduled_and_submitted_runs_together(tmp_path: Path) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    jobs = {
        "s1": "every: 2 seconds",
        "s2": "every: 2 seconds",
        "m1": "schedule: '0 6 1 1 *'",
        "m2": "schedule: '0 6 1 1 *'",
    }
    config = write_config(tmp_path, project, jobs, top="max_parallel: 1\n")
    state, log = tmp_path / "state", tmp_path / "daemon.log"
    env = {"DBT_SCHEDULER_RUN_COMMANDS": str(script), "STAMPS": str(stamps), "STEPS": "5"}
    with running_daemon(config, log, env=env) as daemon:
        wait_for(lambda: started(log), 30, "the daemon to start")
        for _round in (1, 2):
            # Both run-nows at once, while the scheduled jobs keep the one slot busy.
            followers = [popen_cli(config, "run-now", job) for job in ("m1", "m2")]
            for follower in followers:
                out, err = follower.communicate(timeout=90)
                assert follower.returncode == 0, out + err
                assert "succeeded" in out
        wait_for(
            lambda: (
                sum(r["trigger"] == "schedule" and r["outcome"] == "succeeded" for r in history_rows(state))
                >= 3
            ),
            60,
            "scheduled runs besides the submitted ones",
        )
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    rows = history_rows(state)
    manual = [r for r in rows if r["trigger"] == "manual"]
    assert sorted(r["job"] for r in manual) == ["m1", "m1", "m2", "m2"]
    assert all(r["outcome"] == "succeeded" for r in manual)
    spans = intervals(stamps)
    assert len(spans) >= 7  # 4 submitted, 3 scheduled at least
    assert peak_concurrency(spans) == 1, spans
    assert "for a free slot (max_parallel 1)" in log.read_text()  # someone did wait


# ---------------------------------------------------------------------- cancel


def test_cancel_through_the_socket_stops_dbt_by_sigint_and_without_a_daemon_run_now_runs_here(
    tmp_path: Path,
) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    config = write_config(
        tmp_path, project, {"slow": "schedule: '0 6 1 1 *'", "quick": "schedule: '0 6 1 1 *'"}
    )
    state, log = tmp_path / "state", tmp_path / "daemon.log"
    env = {"DBT_SCHEDULER_RUN_COMMANDS": str(script)}
    os.environ.update(env)  # the in-process run-now at the end needs the stand-in too
    try:
        with running_daemon(config, log, env=env) as daemon:
            wait_for(lambda: started(log), 30, "the daemon to start")
            for _attempt in (1, 2):
                follower = popen_cli(config, "run-now", "slow")
                wait_for(lambda: any(r["outcome"] == "running" for r in history_rows(state)), 30, "the run")
                [running] = [r for r in history_rows(state) if r["outcome"] == "running"]
                run_log_path = Path(running["run_dir"]) / "run.log"
                wait_for(
                    lambda path=run_log_path: path.is_file() and "working 3" in path.read_text(),
                    30,
                    "the run's output",
                )
                cancelled = cli(config, "cancel", "slow")
                assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
                assert f"slow run {running['run_id']} cancelled" in cancelled.stdout
                out, err = follower.communicate(timeout=60)
                assert follower.returncode == 1, out + err
                assert "slow cancelled" in out and "cancelled by root (scheduler.py cancel)" in out
                done = row(state, running["run_id"])
                assert (done["outcome"], done["reason"]) == (
                    "cancelled",
                    "cancelled by root (scheduler.py cancel)",
                )
                run_log = Path(done["log_path"]).read_text()
                assert "stand-in got SIGINT" in run_log  # dbt's path: SIGINT first
                assert "did not stop within" not in run_log  # and SIGINT was enough
                nothing = cli(config, "cancel", "slow")
                assert nothing.returncode == 4 and "nothing running or waiting" in nothing.stderr
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        assert not (state / "control.sock").exists()
        no_daemon = cli(config, "cancel", "slow")
        assert no_daemon.returncode == 5 and "no daemon runs on state_dir" in no_daemon.stderr
        # No daemon: run-now runs in this process, as it always did (twice).
        for _attempt in (1, 2):
            here = cli(config, "run-now", "quick")
            assert here.returncode == 0, here.stdout + here.stderr
            assert "submitted to the daemon" not in here.stderr and "quick succeeded" in here.stdout
        # A daemon killed with SIGKILL leaves its socket: run-now sees no one answers it.
        with running_daemon(config, tmp_path / "daemon2.log", env=env) as daemon:
            wait_for(lambda: started(tmp_path / "daemon2.log"), 30, "the daemon to start again")
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        assert (state / "control.sock").exists()
        stale = cli(config, "run-now", "quick")
        assert stale.returncode == 0 and "submitted to the daemon" not in stale.stderr, stale.stderr
    finally:
        for key in env:
            os.environ.pop(key, None)
    quick = [r for r in history_rows(state) if r["job"] == "quick"]
    assert [r["outcome"] for r in quick] == ["succeeded"] * 3


def test_ctrl_c_on_a_terminal_asks_before_cancelling(tmp_path: Path) -> None:
    project, script = stand_in_project(tmp_path, RUN_SCRIPT)
    config = write_config(
        tmp_path, project, {"slow1": "schedule: '0 6 1 1 *'", "slow2": "schedule: '0 6 1 1 *'"}
    )
    state, log = tmp_path / "state", tmp_path / "daemon.log"
    with running_daemon(config, log, env={"DBT_SCHEDULER_RUN_COMMANDS": str(script)}) as daemon:
        wait_for(lambda: started(log), 30, "the daemon to start")
        answers = {}
        for answer, job in (("n", "slow1"), ("y", "slow2")):
            master, slave = pty.openpty()
            follower = popen_cli(config, "run-now", job, stdin=slave, stdout=slave, stderr=slave)
            os.close(slave)
            try:
                seen = _read_until(master, "submitted to the daemon", follower)
                run_id = seen.split("run-now: run ", 1)[1].split()[0]
                wait_for(lambda: row(state, run_id)["outcome"] == "running", 30, "the run")  # noqa: B023
                follower.send_signal(signal.SIGINT)
                _read_until(master, "cancel the run? [y/N]", follower)
                os.write(master, f"{answer}\n".encode())
                answers[answer] = (follower.wait(timeout=60), run_id, strip_ansi(_drain(master)))
            finally:
                if follower.poll() is None:
                    os.killpg(follower.pid, signal.SIGKILL)
                    follower.wait()
                os.close(master)
        code, kept, said = answers["n"]
        assert code == 130 and f"scheduler.py cancel slow1 --run {kept}" in said, said
        assert row(state, kept)["outcome"] == "running"  # "no": the run goes on in the daemon
        code, gone, said = answers["y"]
        assert code == 1 and "slow2 cancelled" in said, said
        assert row(state, gone)["reason"] == "cancelled by root (Ctrl-C in run-now)"
        assert cli(config, "cancel", "slow1", "--run", kept).returncode == 0
        assert row(state, kept)["reason"] == "cancelled by root (scheduler.py cancel)"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0


def _read_until(fd: int, needle: str, process: subprocess.Popen, timeout: float = 60) -> str:
    text, deadline = "", time.monotonic() + timeout
    while needle not in text:
        assert time.monotonic() < deadline and process.poll() is None, text
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            with contextlib.suppress(OSError):
                text += os.read(fd, 65536).decode(errors="replace")
    return text


def _drain(fd: int) -> str:
    text = ""
    for _ in itertools.count():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            return text
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other end closed
            return text
        if not chunk:
            return text
        text += chunk.decode(errors="replace")
    return text
