"""The systemd unit: the directives the README promises, and systemd's own verifier when present."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "dbt-scheduler.service"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser["Service"]


def test_unit_has_the_operational_directives() -> None:
    svc = service()
    assert svc["User"] == "dbt-scheduler"
    assert svc["StateDirectory"] == "dbt-scheduler"
    assert svc["ExecStartPre"].endswith("scheduler.py validate")
    assert svc["ExecStart"].endswith("scheduler.py run")
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["Restart"] == "on-failure"
    assert svc["KillMode"] == "mixed"  # SIGTERM to the daemon only: jobs get their grace
    assert svc["RestartPreventExitStatus"] == "2"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # Point the unit at executables that exist here, so only the syntax is judged.
    text = UNIT.read_text().replace("/opt/dbt-scheduler/.venv/bin/python", "/bin/true")
    unit = tmp_path / "dbt-scheduler.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in done.stderr.splitlines()
        if "dbt-scheduler.service" in line and "Documentation" not in line
    ]
    assert problems == [], done.stderr
