"""dbt's printed errors, read from real captured logs (tests/data/logs/, run_commands.sh
around real dbt 1.11 failing early) and from dbt's JSON log format."""

from __future__ import annotations

import io
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lib.clock import SystemClock
from lib.dbt_log import dbt_error, freshness_runtime_errors, split_by_command
from lib.models import Job, RunRequest, RunStatus, TriggerKind
from lib.runners.base import LOG_TAIL_LINES, OutputWatcher, RunContext, classify_exit
from lib.secrets import SecretMasker
from lib.triggers import parse_every

LOGS = Path(__file__).parent / "data" / "logs"
FRESHNESS_LOG = Path(__file__).parent / "data" / "artifacts" / "freshness" / "run.log"


def lines_of(name: str) -> list[str]:
    return (LOGS / name).read_text(encoding="utf-8").splitlines()


# Each captured log and the reason a run that failed like that gets.
EXPECTED = {
    "badtarget.log": "Runtime Error: The profile 'shop' does not have a target named 'nowhere'. "
    "The valid target names for this profile are: - dev - prod",
    "compile.log": "Compilation Error: Model 'model.shop.broken' (models/marts/broken.sql) depends on a "
    "node named 'nope' which was not found",
    "jinja.log": "Compilation Error in model broken (models/marts/broken.sql): unexpected '}', expected ')' "
    "line 1 select {{ oops( }}",
    "baddir.log": 'IO Error: Cannot open file "/nonexistent/dir/shop.duckdb": No such file or directory',
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dbt_error_of_real_early_failures(name: str) -> None:
    assert dbt_error(lines_of(name)) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classify_exit_gives_dbt_error_not_the_last_line(name: str) -> None:
    status, reason = classify_exit(2, nodes=None, error_marker=None, log_tail=lines_of(name), job_name="shop")
    assert status is RunStatus.FAILED
    assert reason == EXPECTED[name]


def test_missing_env_var_still_names_the_fix() -> None:
    _, reason = classify_exit(
        2, nodes=None, error_marker=None, log_tail=lines_of("prodnoenv.log"), job_name="shop"
    )
    assert (
        reason == "dbt needs environment variable SNOWFLAKE_ACCOUNT: set it in jobs.shop.env or its env_file"
    )


# What dbt-snowflake prints when the account cannot be reached (dbt-snowflake issues).
SNOWFLAKE = """\
[run_commands] STEP command 1/1: dbt build
12:00:01  Running with dbt=1.11.16
12:00:02  Registered adapter: snowflake=1.11.0
12:00:03  Found 5 models, 3 seeds, 17 data tests, 511 macros
12:00:33  Encountered an error:
Runtime Error
  Database Error
    250001 (08001): Failed to connect to DB: xy12345.eu-west-1.snowflakecomputing.com:443. \
Could not connect to Snowflake backend after 2 attempt(s).Aborting
12:00:33  Done. PASS=0 WARN=0 ERROR=0 SKIP=0 NO-OP=0 TOTAL=0
[run_commands] EXIT 2
"""


def test_a_connection_error_is_dbt_error_in_text_and_json_format() -> None:
    expected = (
        "Runtime Error: Database Error: 250001 (08001): Failed to connect to DB: "
        "xy12345.eu-west-1.snowflakecomputing.com:443. Could not connect to Snowflake backend "
        "after 2 attempt(s).Aborting"
    )
    assert dbt_error(SNOWFLAKE.splitlines()) == expected
    # --log-format json: the same text in info.msg, one object a line.
    block = SNOWFLAKE.splitlines()[4:8]  # "Encountered an error:" and the lines after it
    msg = "\n".join([block[0].split("  ", 1)[1], *block[1:]])
    as_json = [
        json.dumps(
            {"info": {"name": "MainReportVersion", "level": "info", "msg": "Running with dbt=1.11.16"}}
        ),
        json.dumps({"info": {"name": "MainEncounteredError", "level": "error", "msg": msg}}),
        json.dumps({"info": {"name": "StatsLine", "level": "info", "msg": "Done. PASS=0 WARN=0 ERROR=0"}}),
    ]
    assert dbt_error(as_json) == expected


def test_no_dbt_error_falls_back_to_the_last_line() -> None:
    assert dbt_error(["12:00:00  Running with dbt=1.11.16", "Killed"]) is None
    _, reason = classify_exit(
        137 + 1, nodes=None, error_marker=None, log_tail=["something broke badly"], job_name="j"
    )
    assert reason == "exit code 138 (dbt wrote no run_results.json): something broke badly"


def test_split_by_command_and_freshness_runtime_errors() -> None:
    lines = FRESHNESS_LOG.read_text(encoding="utf-8").splitlines()
    segments = split_by_command(lines)
    assert list(segments) == [1]
    assert not any(line.startswith("[run_commands]") for line in segments[1])
    errors = freshness_runtime_errors(segments[1])
    assert list(errors) == ["raw.missing"]  # ERROR STALE (raw_customers) is in sources.json
    assert errors["raw.missing"].startswith("Catalog Error: Table with name missing does not exist!")
    assert "LINE 5" not in errors["raw.missing"]


def test_output_watcher_keeps_dbt_error_in_tail_past_a_long_traceback(tmp_path: Path) -> None:
    """baddir.log has 240 lines, most a Python traceback after dbt's error: the tail
    (200 lines) must still hold dbt's error so the reason is it."""
    raw = (LOGS / "baddir.log").read_bytes()
    assert len(raw.splitlines()) > LOG_TAIL_LINES
    watcher = watcher_over(tmp_path, raw)
    _, reason = classify_exit(2, nodes=None, error_marker=None, log_tail=list(watcher.tail), job_name="shop")
    assert reason == EXPECTED["baddir.log"]
    assert "Traceback" in (tmp_path / "run.log").read_text()  # run.log keeps everything


def watcher_over(tmp_path: Path, raw: bytes, masker: SecretMasker | None = None) -> OutputWatcher:
    job = Job(name="shop", trigger=parse_every("1 hour", ZoneInfo("UTC")), timezone=ZoneInfo("UTC"))
    ctx = RunContext(
        request=RunRequest(job, "r1", TriggerKind.MANUAL),
        run_dir=tmp_path,
        clock=SystemClock(),
        masker=masker or SecretMasker(),
        on_line=lambda line: None,
    )
    with open(tmp_path / "run.log", "w", encoding="utf-8") as log:
        watcher = OutputWatcher(io.BytesIO(raw), log, ctx)
        watcher.start(on_eof=lambda: None)
        watcher.join()
    return watcher


def test_output_watcher_strips_colour_codes_before_logging_and_masking(tmp_path: Path) -> None:
    lines: list[str] = []
    raw = b"\x1b[0m12:00:01  1 of 2 OK created \x1b[32mOK\x1b[0m\r\n" + b"pass: hun\x1b[1mter2\x1b[0m\n"
    job = Job(name="shop", trigger=parse_every("1 hour", ZoneInfo("UTC")), timezone=ZoneInfo("UTC"))
    ctx = RunContext(
        request=RunRequest(job, "r1", TriggerKind.MANUAL),
        run_dir=tmp_path,
        clock=SystemClock(),
        masker=SecretMasker.from_env({"DBT_ENV_SECRET_X": "hunter2"}),
        on_line=lines.append,
    )
    with open(tmp_path / "run.log", "w", encoding="utf-8") as log:
        watcher = OutputWatcher(io.BytesIO(raw), log, ctx)
        watcher.start(on_eof=lambda: None)
        watcher.join()
    text = (tmp_path / "run.log").read_text()
    assert "\x1b" not in text and all("\x1b" not in line for line in [*lines, *watcher.tail])
    assert "12:00:01  1 of 2 OK created OK" in text
    assert "hunter2" not in text  # a colour code inside the secret does not hide it from the masker
