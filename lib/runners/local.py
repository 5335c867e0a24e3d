"""The local runner: docker/run_commands.sh as a child process of the scheduler.

The embedded default: it runs on the ops box itself with the dbt found on PATH
(or next to the scheduler's Python), so a newcomer sees a real run with no cloud.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from lib.dbt_results import load_node_results
from lib.durations import format_duration
from lib.models import RunOutcome, RunStatus
from lib.run_env import EnvFileError, job_environment, scheduler_variables
from lib.runners.base import RunContext, classify_exit, follow_process
from lib.runners.runlog import RunLog, with_note
from lib.shipped import run_commands_script

RUN_COMMANDS = run_commands_script()
# How long each polite signal gets before the next, harsher one when stopping a run.
# SIGINT first, to run_commands.sh alone: it passes SIGINT on to dbt, which treats it
# as Ctrl-C and cancels the queries it has open in the warehouse, and sends SIGTERM
# itself after its own 15 s grace. Sent to the whole group, dbt would get SIGINT twice
# and a second Ctrl-C interrupts its cancellation. SIGTERM and SIGKILL go to the group.
STOP_SEQUENCE = ((signal.SIGINT, 25.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))

Popen = Callable[..., subprocess.Popen]


class LocalRunner:
    """Runs a job as a local process group; the timeout and cancel stop the whole group."""

    def __init__(
        self,
        script: Path = RUN_COMMANDS,
        base_env: Mapping[str, str] | None = None,
        popen: Popen = subprocess.Popen,
        extra_path: Path | None = None,
        stop_sequence: tuple[tuple[signal.Signals, float], ...] = STOP_SEQUENCE,
        keep_work_dir: bool = False,
    ) -> None:
        self.script = script
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.popen = popen
        # A venv's dbt is found without activating the venv: its bin dir goes first on PATH.
        self.extra_path = extra_path
        self.stop_sequence = stop_sequence
        self.keep_work_dir = keep_work_dir

    def run(self, ctx: RunContext) -> RunOutcome:
        job = ctx.request.job
        log_path = ctx.run_dir / "run.log"
        work_dir = ctx.run_dir / "work"
        try:
            env = job_environment(job, self.base_env)
        except EnvFileError as exc:
            return RunOutcome(RunStatus.FAILED_TO_START, reason=str(exc), log_path=None)
        env.update(scheduler_variables(job, ctx.request, ctx.run_dir, work_dir, ctx.cache_dir))
        if self.extra_path is not None:
            env["PATH"] = f"{self.extra_path}{os.pathsep}{env.get('PATH', os.defpath)}"

        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLog(log_path) as log:
            try:
                process = self.popen(
                    ["bash", str(self.script)],
                    env=env,
                    cwd=str(ctx.run_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so a stop reaches dbt too
                    pass_fds=ctx.inherit_fds,
                )
            except OSError as exc:
                message = f"could not start bash {self.script}: {exc}"
                log.write(ctx.masker(message) + "\n")
                return RunOutcome(RunStatus.FAILED_TO_START, reason=message, log_path=log_path)

            ctx.on_process(process.pid)
            exit_code, timed_out, cancelled, watcher = follow_process(
                process, log, ctx, stop=lambda: self._stop(process, ctx)
            )

        nodes = load_node_results(ctx.run_dir)
        if timed_out:
            status, reason = (
                RunStatus.TIMED_OUT,
                f"exceeded its timeout of {format_duration(job.timeout)}: the run was stopped",
            )
        elif cancelled:
            status, reason = RunStatus.CANCELLED, ctx.cancel.reason
        else:
            status, reason = classify_exit(
                exit_code,
                nodes=nodes,
                error_marker=watcher.error_marker,
                log_tail=list(watcher.tail),
                job_name=job.name,
            )
        if status is RunStatus.SUCCEEDED and not self.keep_work_dir:
            # The clone and warehouse files of a good run are not worth the disk; a failed
            # run keeps them (compiled SQL helps debugging).
            shutil.rmtree(work_dir, ignore_errors=True)
        return RunOutcome(
            status=status,
            reason=ctx.masker(with_note(reason, log)),
            exit_code=exit_code,
            log_path=log_path,
            nodes=nodes or (),
            git_sha=watcher.git_sha,
        )

    def _stop(self, process: subprocess.Popen, ctx: RunContext) -> None:
        """Signal the whole process group, escalating until it is gone."""
        for sig, grace in self.stop_sequence:
            try:
                if sig == signal.SIGINT:
                    os.kill(process.pid, sig)
                else:
                    os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
