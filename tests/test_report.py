"""lib/report: report.json / report.md files and the rich console output."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console

from lib.dbt_results import load_node_results, summarize
from lib.models import NodeResult, RunOutcome, RunRecord, RunStatus, TriggerKind
from lib.report import RunProgress, parse_marker, record_to_dict, render_summary, write_reports
from lib.report.compiled import compiled_relpath, keep_compiled_sql
from lib.report.console import ProgressState
from lib.report.files import write_atomically
from lib.secrets import MASK, SecretMasker

ARTIFACTS = Path(__file__).parent / "data" / "artifacts"
ROOT = Path(__file__).resolve().parent.parent
CEST = timezone(timedelta(hours=2))
SECRET = "hunter2-very-secret"
RECORD_KEYS = {
    "job",
    "run_id",
    "trigger",
    "triggered_by",
    "scheduled_for",
    "outcome",
    "exit_code",
    "reason",
    "started_at",
    "finished_at",
    "duration_s",
    "git_sha",
    "counts",
    "log_path",
    "log_url",
    "external_id",
    "image",
    "run_dir",
    "target_override",
    "select_override",
    "commands",
    "nodes",
}
NODE_KEYS = {
    "unique_id",
    "name",
    "resource_type",
    "status",
    "message",
    "failures",
    "execution_time",
    "skipped_because",
    "command",
    "compiled_path",
    "freshness",
}


def failing_record(**outcome_changes: object) -> RunRecord:
    nodes = load_node_results(ARTIFACTS / "failing")
    assert nodes is not None
    outcome = RunOutcome(
        status=RunStatus.FAILED,
        reason=summarize(nodes),
        exit_code=1,
        log_path=Path("/var/lib/dbt-scheduler/runs/nightly/20261127-0200/run.log"),
        nodes=nodes,
        git_sha="0123456789abcdef0123",
    )
    return RunRecord(
        job="nightly",
        run_id="20261127-0200-ab12",
        trigger=TriggerKind.SCHEDULE,
        outcome=replace(outcome, **outcome_changes),
        started_at=datetime(2026, 11, 27, 2, 0, 1, tzinfo=CEST),
        finished_at=datetime(2026, 11, 27, 2, 2, 6, 500000, tzinfo=CEST),
        scheduled_for=datetime(2026, 11, 27, 2, 0, tzinfo=CEST),
    )


def manual_record(status: RunStatus = RunStatus.SUCCEEDED, **outcome_changes: object) -> RunRecord:
    return RunRecord(
        job="hourly",
        run_id="r1",
        trigger=TriggerKind.MANUAL,
        outcome=RunOutcome(status=status, **outcome_changes),  # type: ignore[arg-type]
        started_at=datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC),
        finished_at=datetime(2026, 3, 29, 1, 0, 3, tzinfo=UTC),
        triggered_by="alice",
    )


def plain_console() -> Console:
    return Console(record=True, width=120, force_terminal=False, file=io.StringIO())


# --- record_to_dict ---------------------------------------------------------------------


def test_record_to_dict_keys_and_values() -> None:
    data = record_to_dict(failing_record())
    assert set(data) == RECORD_KEYS
    assert data["job"] == "nightly"
    assert data["trigger"] == "schedule"
    assert data["triggered_by"] is None
    assert data["outcome"] == "failed"
    assert data["exit_code"] == 1
    assert data["scheduled_for"] == "2026-11-27T02:00:00+02:00"
    assert data["started_at"] == "2026-11-27T02:00:01+02:00"
    assert data["finished_at"] == "2026-11-27T02:02:06.500000+02:00"
    assert data["duration_s"] == 125.5
    assert data["git_sha"] == "0123456789abcdef0123"
    assert data["log_path"] == "/var/lib/dbt-scheduler/runs/nightly/20261127-0200/run.log"
    assert data["log_url"] is None and data["external_id"] is None and data["run_dir"] is None
    assert data["counts"] == {
        "success": 4,
        "pass": 2,
        "fail": 2,
        "error": 1,
        "warn": 1,
        "skipped": 7,
        "total": 17,
    }
    assert len(data["nodes"]) == 17
    assert all(set(node) == NODE_KEYS for node in data["nodes"])
    customers = next(n for n in data["nodes"] if n["unique_id"] == "model.fixture_shop.customers")
    assert customers == {
        "unique_id": "model.fixture_shop.customers",
        "name": "customers",
        "resource_type": "model",
        "status": "skipped",
        "message": None,
        "failures": None,
        "execution_time": 0.0,
        "skipped_because": ["test.fixture_shop.not_null_stg_orders_order_id.81cfe2fe64"],
        "command": None,
        "compiled_path": None,
        "freshness": None,
    }
    json.dumps(data)  # plain JSON data throughout


def test_record_to_dict_without_nodes_keeps_counts() -> None:
    data = record_to_dict(failing_record(), include_nodes=False)
    assert set(data) == RECORD_KEYS - {"nodes"}
    assert data["counts"]["total"] == 17


def test_record_to_dict_unknowns_are_none() -> None:
    data = record_to_dict(manual_record(RunStatus.SKIPPED, reason="previous run still going"))
    assert data["trigger"] == "manual"
    assert data["triggered_by"] == "alice"
    assert data["scheduled_for"] is None
    assert data["exit_code"] is None
    assert data["git_sha"] is None
    assert data["log_path"] is None
    assert data["nodes"] == []
    assert data["counts"]["total"] == 0
    assert data["started_at"] == "2026-03-29T00:59:59+00:00"


# --- write_reports ------------------------------------------------------------------------


def secret_record() -> RunRecord:
    nodes = (
        NodeResult(
            "model.p.leaky", "error", f"could not connect with password {SECRET} | retry", None, 0.1, "model"
        ),
        NodeResult("model.p.after", "skipped", resource_type="model", skipped_because=("model.p.leaky",)),
    )
    return replace(
        failing_record(),
        outcome=RunOutcome(
            status=RunStatus.FAILED,
            reason=f"1 error (leaky: could not connect with password {SECRET})",
            exit_code=1,
            nodes=nodes,
            log_url="https://deploy:ghp_tokentoken@git.example.com/logs",
            external_id="arn:aws:ecs:eu-west-1:123:task/c/abc",
        ),
    )


def test_write_reports_round_trip(tmp_path: Path) -> None:
    record = failing_record()
    paths = write_reports(record, tmp_path / "runs" / "r1", SecretMasker())
    assert paths == {"json": tmp_path / "runs/r1/report.json", "md": tmp_path / "runs/r1/report.md"}
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == record_to_dict(record)
    assert sorted(p.name for p in (tmp_path / "runs/r1").iterdir()) == ["report.json", "report.md"]


def test_write_reports_masks_secrets_in_both_files(tmp_path: Path) -> None:
    paths = write_reports(secret_record(), tmp_path, SecretMasker([SECRET]))
    for path in paths.values():
        text = path.read_text(encoding="utf-8")
        assert SECRET not in text
        assert "ghp_tokentoken" not in text
        assert MASK in text
    data = json.loads(paths["json"].read_text())
    assert data["reason"] == f"1 error (leaky: could not connect with password {MASK})"
    assert data["nodes"][0]["message"] == f"could not connect with password {MASK} | retry"
    assert data["log_url"] == f"https://{MASK}@git.example.com/logs"


def test_report_markdown(tmp_path: Path) -> None:
    md = write_reports(failing_record(), tmp_path, SecretMasker())["md"].read_text()
    assert md.startswith("# nightly: failed\n")
    assert "| Trigger | schedule |" in md
    assert "| Scheduled for | 2026-11-27T02:00:00+02:00 |" in md
    assert "| Duration | 2m 6s |" in md
    assert "| Exit code | 1 |" in md
    assert "| Git SHA | `0123456789abcdef0123` |" in md
    assert "| Log | `/var/lib/dbt-scheduler/runs/nightly/20261127-0200/run.log` |" in md
    assert "**Reason:** 2 tests failed (not_null_stg_orders_order_id: Got 3 results" in md
    assert "PASS=6 WARN=1 ERROR=3 SKIP=7 TOTAL=17" in md
    assert (
        "| not_null_stg_orders_order_id | test | fail | 3 | Got 3 results, configured to fail if != 0 |" in md
    )
    # failures and errors before warnings
    assert md.index("| not_null_stg_orders_order_id |") < md.index("| accepted_values_stg_orders")
    assert "| customer_name_lengths | model | customer_names |" in md
    assert "| customers | model | not_null_stg_orders_order_id |" in md
    assert "| vip_count | model | vip_customers::test_vip_customers |" in md


def test_report_markdown_escapes_table_cells(tmp_path: Path) -> None:
    md = write_reports(secret_record(), tmp_path, SecretMasker([SECRET]))["md"].read_text()
    assert f"could not connect with password {MASK} \\| retry" in md
    assert "| External id | `arn:aws:ecs:eu-west-1:123:task/c/abc` |" in md
    node = NodeResult("model.p.m", "error", "a <b> & c\nsecond line")
    md = write_reports(replace(manual_record(RunStatus.FAILED, nodes=(node,))), tmp_path, SecretMasker())[
        "md"
    ].read_text()
    assert "| a &lt;b&gt; &amp; c<br>second line |" in md


def test_succeeded_report_has_no_problem_tables(tmp_path: Path) -> None:
    md = write_reports(manual_record(), tmp_path, SecretMasker())["md"].read_text()
    assert "# hourly: succeeded" in md
    assert "| Trigger | manual by alice |" in md
    assert "| Duration | 4s |" in md
    assert "| Log | - |" in md
    assert "##" not in md


def test_rewrite_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    write_reports(failing_record(), tmp_path, SecretMasker())
    write_reports(manual_record(), tmp_path, SecretMasker())
    assert json.loads((tmp_path / "report.json").read_text())["job"] == "hourly"
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md"]


def test_failed_atomic_write_keeps_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


# --- render_summary -----------------------------------------------------------------------


def test_render_summary_failed_run() -> None:
    console = plain_console()
    render_summary(failing_record(log_url="https://console.example/logs/1"), console)
    text = console.export_text()
    assert "\x1b" not in console.file.getvalue()  # type: ignore[attr-defined]
    assert text.startswith("nightly failed in 2m 6s (exit code 1)\n")
    assert "PASS=6 WARN=1 ERROR=3 SKIP=7 TOTAL=17" in text
    assert "Reason: 2 tests failed (not_null_stg_orders_order_id" in text
    for name in ("not_null_stg_orders_order_id", "customer_names", "vip_customers::test_vip_customers"):
        assert name in text
    assert "Got 3 results, configured to fail if != 0" in text
    assert "Binder Error: Referenced column" in text  # the message cell wraps after this
    assert "fail 3" in text
    assert "Skipped because of" in text
    skipped_rows = {
        line.split("│")[1].strip(): line.split("│")[3].strip()
        for line in text.splitlines()
        if line.count("│") == 4 and "skipped" not in line.lower()
    }
    assert skipped_rows["customer_name_lengths"] == "customer_names"
    assert skipped_rows["orders"] == "not_null_stg_orders_order_id"
    assert skipped_rows["vip_count"] == "vip_customers::test_vip_customers"
    assert "Log: /var/lib/dbt-scheduler/runs/nightly/20261127-0200/run.log" in text
    assert "Logs: https://console.example/logs/1" in text


def test_render_summary_succeeded_run_is_short() -> None:
    console = plain_console()
    render_summary(manual_record(git_sha="abc123"), console)
    assert console.export_text() == "hourly succeeded in 4s\nrun r1 · manual by alice · git abc123\n"


def test_render_summary_colours_on_a_terminal() -> None:
    for status, colour in (
        (RunStatus.SUCCEEDED, "32"),
        (RunStatus.FAILED, "31"),
        (RunStatus.TIMED_OUT, "31"),
        (RunStatus.ERROR, "31"),
        (RunStatus.FAILED_TO_START, "33"),
        (RunStatus.CANCELLED, "33"),
        (RunStatus.SKIPPED, "33"),
    ):
        out = io.StringIO()
        render_summary(manual_record(status), Console(file=out, force_terminal=True, width=100))
        first_line = out.getvalue().splitlines()[0]
        assert f"\x1b[1;{colour}m{status.value.replace('_', ' ')}" in first_line


def test_render_summary_does_not_interpret_markup() -> None:
    node = NodeResult("model.p.m", "error", "[bold]not markup[/bold] [RUN]")
    console = plain_console()
    render_summary(manual_record(RunStatus.FAILED, reason="[red]x[/red]", nodes=(node,)), console)
    text = console.export_text()
    assert "[bold]not markup[/bold] [RUN]" in text
    assert "Reason: [red]x[/red]" in text


# --- parse_marker / progress --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "[run_commands] STEP fetch: git clone https://x/y.git",
            ("STEP", "fetch: git clone https://x/y.git"),
        ),
        ("[run_commands] GIT_SHA 0123abcd\n", ("GIT_SHA", "0123abcd")),
        ("[run_commands] STEP deps: dbt deps", ("STEP", "deps: dbt deps")),
        (
            "[run_commands] STEP command 2/3: dbt build --select x",
            ("STEP", "command 2/3: dbt build --select x"),
        ),
        ("[run_commands] STEP artifacts: copying target", ("STEP", "artifacts: copying target")),
        ("[run_commands] ERROR git clone failed", ("ERROR", "git clone failed")),
        ("[run_commands] EXIT 2", ("EXIT", "2")),
        ("  \x1b[0m[run_commands] EXIT 0\r\n", ("EXIT", "0")),
        ("[run_commands] EXIT", ("EXIT", "")),
        ("12:00:01  3 of 15 START sql view model main.stg_orders ... [RUN]", None),
        ("echo [run_commands] STEP x", None),
        ("[run_commands]STEP x", None),
        ("", None),
    ],
)
def test_parse_marker(line: str, expected: tuple[str, str] | None) -> None:
    assert parse_marker(line) == expected


def test_progress_state_follows_steps_and_dbt_nodes() -> None:
    state = ProgressState()
    assert state.describe() == "starting"
    assert state.feed("[run_commands] STEP fetch: git clone") is True
    assert state.feed("[run_commands] GIT_SHA abc123") is True
    assert state.git_sha == "abc123"
    assert state.feed("Cloning into 'repo'...") is False
    state.feed("[run_commands] STEP command 1/2: dbt build")
    state.feed("\x1b[0m12:00:01  3 of 15 START sql view model main.stg_orders ...................... [RUN]")
    assert state.describe() == "command 1/2: dbt build · node 3 of 15: sql view model main.stg_orders"
    state.feed(
        "12:00:02  3 of 15 OK created sql view model main.stg_orders ....... [\x1b[32mOK\x1b[0m in 0.05s]"
    )
    assert (state.node_index, state.node_total) == (3, 15)
    assert state.node_what == "created sql view model main.stg_orders"
    state.feed("12:00:02  14 of 15 SKIP relation main.customers .............. [SKIP]")
    assert state.describe().endswith("node 14 of 15: relation main.customers")
    state.feed("[run_commands] STEP command 2/2: dbt docs generate")
    assert state.describe() == "command 2/2: dbt docs generate"
    state.feed("[run_commands] ERROR dbt build failed")
    state.feed("[run_commands] EXIT 1")
    assert state.errors == ["dbt build failed"]
    assert state.exit_code == 1
    assert state.describe() == "command 2/2: dbt docs generate · exit 1"
    assert state.feed("[run_commands] EXIT soon") is False
    assert state.feed("[run_commands] SOMETHING_NEW x") is False


DBT_LINES = [
    "[run_commands] STEP fetch: using /srv/project",
    "[run_commands] GIT_SHA 0123abcd",
    "[run_commands] STEP command 1/1: dbt build",
    "\x1b[0m12:00:01  1 of 2 START sql view model main.stg_orders ........ [RUN]",
    "\x1b[0m12:00:01  1 of 2 OK created sql view model main.stg_orders ... [\x1b[32mOK\x1b[0m in 0.05s]",
    "12:00:02  2 of 2 FAIL 3 not_null_stg_orders_order_id ..... [FAIL 3 in 0.02s]",
    "[run_commands] EXIT 1",
]


def test_run_progress_on_a_non_terminal_prints_plain_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    with RunProgress(console, "nightly") as progress:
        for line in DBT_LINES:
            progress.on_line(line + "\n")
    assert progress.git_sha == "0123abcd"
    assert progress.state.exit_code == 1
    printed = out.getvalue()
    assert "\x1b" not in printed
    assert printed.splitlines() == [
        "[run_commands] STEP fetch: using /srv/project",
        "[run_commands] GIT_SHA 0123abcd",
        "[run_commands] STEP command 1/1: dbt build",
        "12:00:01  1 of 2 START sql view model main.stg_orders ........ [RUN]",
        "12:00:01  1 of 2 OK created sql view model main.stg_orders ... [OK in 0.05s]",
        "12:00:02  2 of 2 FAIL 3 not_null_stg_orders_order_id ..... [FAIL 3 in 0.02s]",
        "[run_commands] EXIT 1",
    ]


def test_run_progress_long_lines_are_not_wrapped_on_a_non_terminal() -> None:
    out = io.StringIO()
    with RunProgress(Console(file=out, width=40, force_terminal=False), "j") as progress:
        progress.on_line("x" * 100)
    assert out.getvalue() == "x" * 100 + "\n"


def test_run_progress_on_a_terminal_shows_a_status_line() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True)
    with RunProgress(console, "nightly") as progress:
        for line in DBT_LINES:
            progress.on_line(line)
        assert progress._status is not None
    assert progress._status is None
    printed = out.getvalue()
    assert "not_null_stg_orders_order_id" in printed
    assert "nightly" in printed  # the status line was drawn at least once


def test_importing_report_does_not_import_rich() -> None:
    code = (
        "import sys; import lib.report, lib.report.console, lib.report.files, lib.dbt_results; "
        "sys.exit('rich' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr or "rich was imported"


# --- compiled SQL kept, commands, overrides ---------------------------------------------------


def run_folder_with_two_commands(tmp_path: Path) -> Path:
    """A run folder as run_commands.sh leaves it: command 1 passed, command 2 failed."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(ARTIFACTS / "passing" / "run_results.json", run_dir / "run_results.1.json")
    shutil.copy(ARTIFACTS / "failing" / "run_results.json", run_dir / "run_results.2.json")
    shutil.copy(ARTIFACTS / "failing" / "manifest.json", run_dir / "manifest.json")
    return run_dir


def test_compiled_sql_of_warned_and_failed_nodes_is_kept_in_the_run_folder(tmp_path: Path) -> None:
    run_dir = run_folder_with_two_commands(tmp_path)
    nodes = keep_compiled_sql(run_dir, load_node_results(run_dir) or ())
    kept = [n for n in nodes if n.compiled_path]
    problems = [n for n in nodes if n.status in ("warn", "fail", "error")]
    assert kept and {n.unique_id for n in kept} <= {n.unique_id for n in problems}
    assert all(n.status not in ("success", "pass", "skipped") for n in kept)
    raw = json.loads((run_dir / "run_results.2.json").read_text())
    code = {r["unique_id"]: r["compiled_code"] for r in raw["results"]}
    for node in kept:
        path = Path(node.compiled_path or "")
        assert path.is_relative_to(run_dir / "compiled")
        assert path.read_text().strip() == code[node.unique_id].strip()
    # the warned test of command 1 is kept too
    assert any(n.command == 1 and n.status == "warn" and n.compiled_path for n in nodes)

    record = replace(
        failing_record(nodes=nodes, log_path=run_dir / "run.log"),
        run_dir=run_dir,
        commands=("dbt seed", "dbt build"),
        target_override="prod",
        select_override="tag:nightly",
    )
    paths = write_reports(record, run_dir, SecretMasker())
    data = json.loads(paths["json"].read_text())
    assert data["commands"] == ["dbt seed", "dbt build"]
    assert (data["target_override"], data["select_override"]) == ("prod", "tag:nightly")
    kept_json = [n for n in data["nodes"] if n["compiled_path"]]
    assert kept_json and all(Path(n["compiled_path"]).is_file() for n in kept_json)
    md = paths["md"].read_text()
    assert "| Target (run-now) | `prod` |" in md and "| Select (run-now) | `tag:nightly` |" in md
    assert "| Commands | 1. `dbt seed`<br>2. `dbt build` |" in md
    assert "| Node | Type | Command | Status | Failures | Message |" in md
    assert "| not_null_stg_orders_order_id | test | 2 | fail | 3 |" in md
    relative = Path(kept_json[0]["compiled_path"]).relative_to(run_dir).as_posix()
    assert f"]({relative})" in md  # a link that opens from the run folder


def test_compiled_relpath_follows_dbt_layout() -> None:
    manifest = {
        "nodes": {
            "test.shop.nn.abc": {
                "package_name": "shop",
                "original_file_path": "models/staging/_staging.yml",
                "path": "nn.sql",
            },
            "model.shop.m": {"package_name": "shop", "original_file_path": "models/marts/m.sql"},
            "model.shop.evil": {"package_name": "..", "original_file_path": "/etc/../../passwd.sql"},
        }
    }
    assert str(compiled_relpath("test.shop.nn.abc", manifest)) == "shop/models/staging/_staging.yml/nn.sql"
    assert str(compiled_relpath("model.shop.m", manifest)) == "shop/models/marts/m.sql"
    assert ".." not in compiled_relpath("model.shop.evil", manifest).parts
    assert str(compiled_relpath("model.shop.x", None)) == "model/model.shop.x.sql"


def test_console_summary_shows_commands_overrides_and_kept_sql(tmp_path: Path) -> None:
    run_dir = run_folder_with_two_commands(tmp_path)
    nodes = keep_compiled_sql(run_dir, load_node_results(run_dir) or ())
    record = replace(
        failing_record(nodes=nodes),
        commands=("dbt seed", "dbt build"),
        select_override="tag:nightly",
    )
    console = Console(file=io.StringIO(), width=250, force_terminal=False)
    render_summary(record, console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "--select tag:nightly" in out
    assert "Cmd" in out and "command 2: dbt build" in out
    assert "compiled SQL: " + str(run_dir / "compiled") in out


def test_record_from_dict_gives_back_the_record_report_json_was_made_from() -> None:
    from lib.report.files import record_from_dict

    record = failing_record()
    assert record_from_dict(json.loads(json.dumps(record_to_dict(record)))) == record
