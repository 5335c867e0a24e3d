"""The web UI in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by
Selenium; nothing downloaded): the real daemon with `web.listen`, the example project on real
dbt (DuckDB). Sign in with a token, open the jobs page, start a run of the example from its
job page, watch its log arrive live, see the run page's nodes table; a screenshot of each
page is saved under the test's tmp dir (and, with DBT_SCHEDULER_SCREENSHOTS=DIR, there too:
how docs/screenshots/ is made). Skipped, saying why, where Chromium or its driver is missing
(scripts/install_test_tools.sh installs both)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_helpers import REPO, history_rows, running_daemon, wait_for
from tests.dbt_helpers import copy_example

pytestmark = pytest.mark.timeout(300)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium (apt-get install chromium: scripts/install_test_tools.sh)"
    if not Path(CHROMEDRIVER).exists():
        return "no chromedriver (apt-get install chromium-driver: scripts/install_test_tools.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements-dev.txt)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_sign_in_run_the_example_and_follow_its_log_live_in_chromium(tmp_path: Path, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser  # type: ignore[assignment]
    shots = [tmp_path / "screenshots"]
    if os.environ.get("DBT_SCHEDULER_SCREENSHOTS"):
        shots.append(Path(os.environ["DBT_SCHEDULER_SCREENSHOTS"]))

    def screenshot(name: str) -> None:
        for folder in shots:
            folder.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(folder / f"{name}.png"))  # type: ignore[attr-defined]

    project = copy_example(tmp_path / "shop")
    port = free_port()
    config = tmp_path / "jobs.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f'web: {{listen: "127.0.0.1:{port}"}}\n'
        "jobs:\n"
        f"  example: {{schedule: '0 6 * * *', project_dir: {project},\n"
        "             description: The example shop on DuckDB}\n"
        f"  nightly_marts: {{schedule: '30 2 * * 1-5', project_dir: {project}, commands: ['dbt seed']}}\n"
    )
    made = subprocess.run(
        [
            sys.executable,
            "scheduler.py",
            "--config",
            str(config),
            "token",
            "create",
            "--user",
            "olga",
            "--role",
            "admin",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    base = f"http://127.0.0.1:{port}"
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    # A page that reloads between two looks at it is looked at again.
    wait = WebDriverWait(
        driver,  # type: ignore[arg-type]
        120,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )
    with running_daemon(config, tmp_path / "daemon.log", {"COLUMNS": "200"}) as daemon:
        wait_for(lambda: _answers(base), 30, "the web server")
        driver.get(f"{base}/")  # type: ignore[attr-defined]
        assert "/login" in driver.current_url  # type: ignore[attr-defined]
        screenshot("login")
        driver.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()  # type: ignore[attr-defined]
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'a[href="/jobs/example"]'))
        assert "olga (admin)" in driver.page_source  # type: ignore[attr-defined]
        for attempt in (1, 2):
            driver.get(f"{base}/jobs/example")  # type: ignore[attr-defined]
            driver.find_element(By.ID, "select").send_keys("raw_orders" if attempt == 2 else "")  # type: ignore[attr-defined]
            driver.find_element(By.CSS_SELECTOR, "form.run-now button").click()  # type: ignore[attr-defined]
            wait.until(lambda d: "/runs/" in d.current_url)
            run_url = driver.current_url  # type: ignore[attr-defined]
            # The log grows on this very page (polling from its offset) while dbt runs: a
            # mark set on the page now is still there when dbt's own lines have arrived.
            wait.until(lambda d: d.find_elements(By.ID, "log"))
            driver.execute_script("window.stillThisPage = true")  # type: ignore[attr-defined]
            wait.until(
                lambda d: (
                    d.execute_script("return window.stillThisPage === true")
                    and "Running with dbt" in d.find_element(By.ID, "log").text
                )
            )
            if attempt == 1:
                screenshot("run-live")
            wait.until(lambda d: d.find_elements(By.ID, "nodes"))  # the page reloaded once the run ended
            assert driver.current_url == run_url  # type: ignore[attr-defined]
            rows = driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")  # type: ignore[attr-defined]
            assert len(rows) >= (5 if attempt == 1 else 1)
            assert "[run_commands] EXIT 0" in driver.find_element(By.ID, "log").text  # type: ignore[attr-defined]
            if attempt == 1:
                screenshot("run")
        driver.get(f"{base}/jobs/example")  # type: ignore[attr-defined]
        screenshot("job")
        driver.get(f"{base}/timeline")  # type: ignore[attr-defined]
        assert driver.find_elements(By.CSS_SELECTOR, "svg.gantt rect")  # type: ignore[attr-defined]
        screenshot("timeline")
        driver.get(f"{base}/audit")  # type: ignore[attr-defined]
        screenshot("audit")
        # Keyboard: the skip link is the first stop, and takes focus to the main content.
        driver.get(f"{base}/")  # type: ignore[attr-defined]
        assert driver.find_elements(By.CSS_SELECTOR, "ol.strip li")  # type: ignore[attr-defined]
        screenshot("jobs")
        from selenium.webdriver.common.keys import Keys

        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # type: ignore[attr-defined]
        assert driver.switch_to.active_element.text == "Skip to content"  # type: ignore[attr-defined]
        # On a phone's width the page fits: the tables scroll inside it, the page does not.
        driver.set_window_size(390, 844)  # type: ignore[attr-defined]
        driver.get(f"{base}/")  # type: ignore[attr-defined]
        overflow = driver.execute_script(  # type: ignore[attr-defined]
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"the jobs page is {overflow}px wider than a phone's screen"
        screenshot("jobs-phone")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    runs = [r for r in history_rows(tmp_path / "state") if r["job"] == "example"]
    assert [(r["triggered_by"], r["outcome"]) for r in runs] == [("olga", "succeeded")] * 2
    assert runs[1]["select_override"] == "raw_orders"
    for name in ("login", "jobs", "run-live", "run", "job", "timeline", "audit", "jobs-phone"):
        assert (tmp_path / "screenshots" / f"{name}.png").stat().st_size > 1000, name


def _answers(base: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False
