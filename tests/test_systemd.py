"""The systemd unit: the directives the README promises, and systemd's own verifier and
security analysis when present (scripts/install_test_tools.sh installs them)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lib.daemon import MAX_SLEEP

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "dbt-scheduler.service"
# The bound for `systemd-analyze security` (0 safest … 10); the unit was 9.2 before.
MAX_EXPOSURE = 4.5

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def service() -> configparser.SectionProxy:
    # strict=False: a directive given twice (SystemCallFilter=) keeps its last value here.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser["Service"]


def runnable_copy(tmp_path: Path) -> Path:
    """The unit pointing at executables that exist here, so only the unit itself is judged."""
    text = UNIT.read_text().replace("/opt/dbt-scheduler/.venv/bin/python", "/bin/true")
    unit = tmp_path / "dbt-scheduler.service"
    unit.write_text(text)
    return unit


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


def test_unit_is_type_notify_with_a_watchdog_the_loop_feeds_without_extra_wake_ups() -> None:
    svc = service()
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    watchdog = int(svc["WatchdogSec"].removesuffix("s"))
    # The loop pings at half WatchdogSec and waits at most MAX_SLEEP anyway: at 2 x MAX_SLEEP
    # or more the watchdog costs the idle daemon no wake-up of its own.
    assert watchdog >= 2 * MAX_SLEEP
    assert svc["Restart"] == "on-failure"  # a watchdog kill is a failure: restarted


def test_unit_reads_the_secrets_file_and_sandboxes_the_service() -> None:
    svc = service()
    assert svc["EnvironmentFile"] == "-/etc/dbt-scheduler/secrets.env"  # optional, read by root
    assert svc["UMask"] == "0027"
    for directive, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictNamespaces": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures": "native",
        "SystemCallErrorNumber": "EPERM",
    }.items():
        assert svc[directive] == value, directive
    # ProtectSystem=strict leaves the state directory writable only through StateDirectory=.
    assert svc["StateDirectory"] == "dbt-scheduler"
    assert "MemoryDenyWriteExecute" not in svc  # left off on purpose: see the unit's comment


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    unit = runnable_copy(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in done.stderr.splitlines()
        if "dbt-scheduler.service" in line and "Documentation" not in line
    ]
    assert problems == [], done.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_rates_the_unit_at_most_4_5(tmp_path: Path) -> None:
    unit = runnable_copy(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} {found.group(2)}:\n{done.stdout}"
    # systemd's own threshold check agrees (its scale is the exposure times ten).
    threshold = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit)],
        capture_output=True,
        timeout=60,
    )
    assert threshold.returncode == 0
