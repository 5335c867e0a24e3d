"""What a person sees in the terminal: live progress during `run-now` and the
summary at the end of a run.

rich is imported inside the functions that print, never at module level, so the
daemon (and a runner that only wants `parse_marker`) does not pay for importing it
until something is actually printed.

Everything printed here must already be masked: the runner masks each output line
before `RunProgress.on_line`, and a `RunRecord` holds masked text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from lib.dbt_results import dbt_counts, display_name, problem_nodes, skipped_nodes, strip_ansi
from lib.durations import format_duration
from lib.markers import parse_marker
from lib.models import NodeResult, RunRecord, RunStatus

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

# docker/run_commands.sh announces its steps with lines such as
# `[run_commands] STEP command 2/3: dbt build` or `[run_commands] EXIT 1`.
# dbt's own progress: `12:00:01  3 of 15 START sql view model main.stg_orders .... [RUN]`.
_DBT_PROGRESS = re.compile(
    r"^\s*(?:\d\d:\d\d:\d\d(?:\.\d+)?\s+)?(?P<index>\d+) of (?P<total>\d+) "
    r"(?P<verb>START|OK|PASS|WARN|FAIL|ERROR|SKIP|NO-OP|RUN)\b\s*(?P<what>.*?)(?:\s*\.{2,}.*)?$"
)

OUTCOME_STYLES: dict[RunStatus, str] = {
    RunStatus.SUCCEEDED: "bold green",
    RunStatus.FAILED: "bold red",
    RunStatus.TIMED_OUT: "bold red",
    RunStatus.ERROR: "bold red",
    RunStatus.FAILED_TO_START: "bold yellow",
    RunStatus.CANCELLED: "bold yellow",
    RunStatus.SKIPPED: "bold yellow",
}
_NODE_STYLES = {"fail": "red", "error": "red", "warn": "yellow", "skipped": "yellow"}


@dataclass
class ProgressState:
    """Where a run is, as far as its output lines tell: the current run_commands step,
    the dbt node being worked on, the git SHA, errors and the exit code announced.
    Pure: `feed` only updates fields, so tests need no console."""

    step: str = "starting"
    node_index: int | None = None
    node_total: int | None = None
    node_what: str = ""
    git_sha: str | None = None
    exit_code: int | None = None
    errors: list[str] = field(default_factory=list)

    def feed(self, line: str) -> bool:
        """Update from one output line; True when anything changed."""
        marker = parse_marker(line)
        if marker is not None:
            kind, text = marker
            if kind == "STEP":
                self.step = text or self.step
                # A new dbt command numbers its nodes from 1 again.
                self.node_index = self.node_total = None
                self.node_what = ""
            elif kind == "GIT_SHA":
                self.git_sha = text or None
            elif kind == "ERROR":
                self.errors.append(text)
            elif kind == "EXIT":
                try:
                    self.exit_code = int(text)
                except ValueError:
                    return False
            else:
                return False
            return True
        match = _DBT_PROGRESS.match(strip_ansi(line))
        if match is None:
            return False
        self.node_index, self.node_total = int(match["index"]), int(match["total"])
        self.node_what = match["what"].strip()
        return True

    def describe(self) -> str:
        """One status line: `command 1/2: dbt build · node 3 of 15: sql view model …`."""
        text = self.step
        if self.node_index is not None:
            text += f" · node {self.node_index} of {self.node_total}"
            if self.node_what:
                text += f": {self.node_what}"
        if self.exit_code is not None:
            text += f" · exit {self.exit_code}"
        return text


class RunProgress:
    """Live progress for `run-now`: every output line is printed (dim), and on a
    terminal a spinner line below them shows the current step and dbt node.

        with RunProgress(console, "nightly") as progress:
            for line in lines:          # already masked
                progress.on_line(line)

    On a console that is not a terminal (piped, systemd, pytest) there is no spinner
    and no escape code: only the lines are printed, as plain text.
    """

    def __init__(self, console: Console, job_name: str) -> None:
        self.console = console
        self.job_name = job_name
        self.state = ProgressState()
        self._status: Status | None = None

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:
            self._status = self.console.status(self._status_text(), spinner="dots")
            self._status.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def pause(self) -> None:
        """Take the spinner line away (to ask a question on the terminal); `resume` brings it back."""
        if self._status is not None:
            self._status.stop()

    def resume(self) -> None:
        if self._status is not None:
            self._status.start()

    @property
    def git_sha(self) -> str | None:
        """The commit run_commands.sh reported checking out, if any."""
        return self.state.git_sha

    def _status_text(self) -> str:
        from rich.markup import escape

        return f"[bold]{escape(self.job_name)}[/bold] {escape(self.state.describe())}"

    def on_line(self, line: str) -> None:
        """Print one output line and update the status line from it."""
        from rich.text import Text

        # dbt colours its output even when piped; from_ansi turns the codes into
        # styles that a non-terminal console then drops.
        text = Text.from_ansi(line.rstrip("\r\n"), style="dim")
        self.console.print(text, soft_wrap=True, highlight=False)
        if self.state.feed(line) and self._status is not None:
            self._status.update(self._status_text())


def render_summary(record: RunRecord, console: Console) -> None:
    """Print the end-of-run summary: the outcome in colour (green succeeded; red
    failed, timed out, error; yellow failed to start, cancelled, skipped) with the
    duration and exit code, run id/trigger/git SHA, dbt's PASS/WARN/ERROR/SKIP
    counts, the reason, a table of every failed or errored node and then every
    warned one with its message, a table of skipped nodes with the failures that
    caused each skip, then the log path and log link. Text from the record is never
    read as rich markup."""
    from rich.table import Table
    from rich.text import Text

    outcome = record.outcome
    headline = Text()
    headline.append(f"{record.job} ", style="bold")
    headline.append(outcome.status.value.replace("_", " "), style=OUTCOME_STYLES.get(outcome.status, "bold"))
    headline.append(f" in {format_duration(record.duration_s)}")
    if outcome.exit_code is not None:
        headline.append(f" (exit code {outcome.exit_code})")
    console.print(headline, highlight=False)

    facts = Text()
    facts.append(f"run {record.run_id} · {record.trigger.value}")
    if record.triggered_by:
        facts.append(f" by {record.triggered_by}")
    if outcome.git_sha:
        facts.append(f" · git {outcome.git_sha[:12]}")
    if record.target_override:
        facts.append(f" · --target {record.target_override}")
    if record.select_override:
        facts.append(f" · --select {record.select_override}")
    console.print(facts, style="dim", highlight=False)

    nodes = outcome.nodes
    if nodes:
        counts = dbt_counts(nodes)
        line = Text()
        for key, style in (("PASS", "green"), ("WARN", "yellow"), ("ERROR", "red"), ("SKIP", "yellow")):
            line.append(f"{key}={counts[key]}", style=style if counts[key] else "")
            line.append(" ")
        line.append(f"TOTAL={counts['TOTAL']}")
        console.print(line, highlight=False)
    if outcome.reason:
        console.print(Text.assemble(("Reason: ", "bold"), outcome.reason), highlight=False)

    # Failures and errors first, warnings after; dbt's order within each.
    # Which command ran a node matters once there is more than one.
    by_command = len({n.command for n in nodes}) > 1 or len(record.commands) > 1

    def command_cells(node: NodeResult) -> list[Text]:
        return [Text(str(node.command) if node.command is not None else "-")] if by_command else []

    problems = sorted(problem_nodes(nodes), key=lambda node: node.status == "warn")
    if problems:
        table = Table(title="Failed, errored and warned nodes", title_justify="left", expand=False)
        table.add_column("Node", overflow="fold")
        table.add_column("Type")
        if by_command:
            table.add_column("Cmd")
        table.add_column("Status")
        table.add_column("Message", overflow="fold")
        for node in problems:
            status = node.status + (f" {node.failures}" if node.failures else "")
            message = node.message or ""
            if node.compiled_path:
                message += f"\ncompiled SQL: {node.compiled_path}"
            table.add_row(
                Text(display_name(node.unique_id)),
                Text(node.resource_type),
                *command_cells(node),
                Text(status, style=_NODE_STYLES.get(node.status, "")),
                Text(message),
            )
        console.print(table)
    skipped = skipped_nodes(nodes)
    if skipped:
        table = Table(title="Skipped nodes", title_justify="left", expand=False)
        table.add_column("Node", overflow="fold")
        table.add_column("Type")
        if by_command:
            table.add_column("Cmd")
        table.add_column("Skipped because of", overflow="fold")
        for node in skipped:
            causes = ", ".join(display_name(uid) for uid in node.skipped_because) or "-"
            table.add_row(
                Text(display_name(node.unique_id)),
                Text(node.resource_type),
                *command_cells(node),
                Text(causes),
            )
        console.print(table)
    if by_command:
        for index, command in enumerate(record.commands, 1):
            console.print(Text(f"command {index}: {command}", style="dim"), highlight=False, soft_wrap=True)

    if outcome.log_path is not None:
        console.print(
            Text.assemble(("Log: ", "bold"), str(outcome.log_path)), highlight=False, soft_wrap=True
        )
    if outcome.log_url:
        console.print(Text.assemble(("Logs: ", "bold"), outcome.log_url), highlight=False, soft_wrap=True)
