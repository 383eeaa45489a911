"""The status pages (issue 25) in a real browser: Debian's headless Chromium, through
Selenium and chromium-driver, against a daemon and the sandbox.

A screenshot of each page is kept: under $SYNCD_TEST_ARTIFACTS when set, else
the test's own directory; the path is printed.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.sandbox.runtime import SandboxConfig
from syncd.sandbox.server import serve_in_thread
from tests.conftest import ADMIN_TOKEN, SandboxHandle
from tests.daemon.harness import DaemonProcess
from tests.world import STANDARD_DESIRED, STANDARD_SEED, World, account, write_secret

HOSTILE = "<script>alert(1)</script>\x1b[2K"
INSTALL = "install chromium and chromium-driver: apt-get install chromium chromium-driver"


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(INSTALL)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: Chromium's sandbox cannot start as root (CI containers).
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1200,1400"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("SYNCD_TEST_ARTIFACTS") or tmp_path / "artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


def screenshot(browser: Any, artifacts: Path, name: str) -> None:
    path = artifacts / f"status-page-{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")


def no_alert(browser: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        browser.switch_to.alert  # noqa: B018 (the property raises when there is none)
    except NoAlertPresentException:
        return True
    return False


def admin_patch(world: World, username: str, **fields: str) -> None:
    response = httpx.patch(
        f"{world.sandbox.url}/api/v1.1/users/{username}/",
        json=fields,
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    )
    assert response.status_code == 200, response.text


def observing_daemon(world: World, start_daemon: Any, **env: str) -> tuple[DaemonProcess, str]:
    """A daemon that observes a world with history: janedoe drifts, johnsmith holds a
    hostile name, ghostuser cannot be read (its token is refused)."""
    world.apply()  # an audit trail to show
    admin_patch(world, "johnsmith", full_name=HOSTILE, location=HOSTILE)
    admin_patch(world, "janedoe", location="Atlantis")
    write_secret(world.credentials_dir / "ghostuser.token", "tok-unknown\n")
    world.desire({**STANDARD_DESIRED, "users": {**STANDARD_DESIRED["users"], "ghostuser": {}}})
    # A short window: every cycle reads every user again, past what apply cached.
    daemon = start_daemon(SYNCD_OBSERVE="true", SYNCD_DRIFT_WINDOW="0.5", **env)
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="partial")
    return daemon, address


def test_the_pages_show_errors_drift_and_hostile_values_as_text(
    world: World, start_daemon: Any, browser: Any, artifacts: Path
):
    from selenium.webdriver.common.by import By

    daemon, address = observing_daemon(world, start_daemon, SYNCD_METRICS_ADDR="127.0.0.1:0")

    browser.get(f"http://{address}/")
    assert browser.title == "status · syncd"
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "active on" in text
    in_error = browser.find_element(By.XPATH, "//h2[@id='in-error']/following-sibling::table[1]")
    assert "ghostuser" in in_error.text
    assert "unauthorized" in in_error.text
    pending = browser.find_element(By.XPATH, "//h2[@id='pending']/following-sibling::p[1]")
    assert "changes for 2 users after the last run (partial)" in pending.text
    assert "update_profile 2" in pending.text
    held = browser.find_element(By.XPATH, "//h2[@id='held']/following-sibling::p[1]")
    assert held.text == "none"
    screenshot(browser, artifacts, "home")

    browser.get(f"http://{address}/users/johnsmith")
    assert no_alert(browser)
    values = browser.find_element(By.XPATH, "//h2[@id='values']/following-sibling::table[1]")
    # The markup is text, and the control character shows as `syncd` prints it.
    assert "<script>alert(1)</script>\\x1b[2K" in values.text
    assert "John Smith" in values.text
    assert browser.find_elements(By.TAG_NAME, "script") == []
    screenshot(browser, artifacts, "user")

    browser.get(f"http://{address}/users/janedoe")
    values = browser.find_element(By.XPATH, "//h2[@id='values']/following-sibling::table[1]")
    # One address after another, not joined by a newline shown as its escape.
    assert "jane.doe@example.com, jane.doe+other@example.com" in values.text
    assert "\\n" not in values.text

    browser.get(f"http://{address}/audit?user=janedoe&result=ok")
    events = browser.find_element(By.TAG_NAME, "table").text
    assert "add_email" in events
    assert "johnsmith" not in events
    screenshot(browser, artifacts, "audit")
    assert daemon.stop() == 0


def test_held_deletions_and_suspensions_show_with_the_commands_that_decide(
    world: World, start_daemon: Any, browser: Any, artifacts: Path
):
    from click.testing import CliRunner
    from selenium.webdriver.common.by import By

    from syncd.cli.main import cli

    # A limit of 0: janedoe's deletion is held, the rest of the plan applied.
    daemon: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0", SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    held_id = daemon.wait_for("deletions_held")["held_id"]
    daemon.wait_for("cycle_finished", result="held")
    state = str(world.state_dir)
    suspended = CliRunner(env=world.state_env()).invoke(
        cli,
        ["suspend", "--reason", "INC-7 <b>", "--user", "johnsmith", "--state-dir", state],
    )
    assert suspended.exit_code == 0, suspended.output

    browser.get(f"http://{address}/")
    held = browser.find_element(By.XPATH, "//h2[@id='held']/following-sibling::table[1]")
    assert "janedoe" in held.text
    assert "old@example.com" in held.text
    assert f"syncd approve {held_id}" in held.text
    guard = browser.find_element(By.XPATH, "//th[text()='deletion guard']/following-sibling::td")
    assert "holds" in guard.text  # the last cycle's, not the suspend's run after it
    by_user = browser.find_element(By.XPATH, "//h2[@id='pending']/following-sibling::table[1]")
    assert "delete old@example.com" in by_user.text
    suspensions = browser.find_element(
        By.XPATH, "//h2[@id='suspensions']/following-sibling::table[1]"
    )
    assert "johnsmith" in suspensions.text
    assert "INC-7 <b>" in suspensions.text  # text, not markup
    screenshot(browser, artifacts, "held")

    browser.get(f"http://{address}/audit?user=johnsmith")
    suspend_row = browser.find_element(By.XPATH, "//td[text()='suspend']/..")
    assert "None" not in suspend_row.text  # a suspension has no target: nothing is shown

    browser.get(f"http://{address}/users/johnsmith")
    suspension = browser.find_element(By.XPATH, "//h2[@id='suspension']/following-sibling::p[1]")
    assert suspension.text.startswith("INC-7 <b>, until resumed by hand")
    assert daemon.stop() == 0


def test_a_token_guards_the_pages_and_the_probes_stay_open(
    world: World, start_daemon: Any, tmp_path: Path
):
    write_secret(tmp_path / "ui.token", "s3cret-ui-token\n")
    daemon: DaemonProcess = start_daemon(
        SYNCD_METRICS_ADDR="127.0.0.1:0", SYNCD_UI_TOKEN_FILE=str(tmp_path / "ui.token")
    )
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="ok")
    refused = httpx.get(f"http://{address}/")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert httpx.get(f"http://{address}/", auth=("any", "wrong")).status_code == 401
    assert httpx.get(f"http://{address}/", auth=("any", "s3cret-ui-token")).status_code == 200
    bearer = {"Authorization": "Bearer s3cret-ui-token"}
    assert httpx.get(f"http://{address}/audit", headers=bearer).status_code == 200
    assert httpx.get(f"http://{address}/healthz").status_code == 200
    assert httpx.get(f"http://{address}/metrics").status_code == 200
    assert "s3cret-ui-token" not in "\n".join(daemon.lines)
    assert daemon.stop() == 0


def test_without_a_token_the_pages_are_off_beyond_loopback(world: World, start_daemon: Any):
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="0.0.0.0:0")  # every interface
    off = daemon.wait_for("status_pages_off")  # once, before it listens
    assert "SYNCD_UI_TOKEN_FILE" in off["reason"]
    port = daemon.wait_for("metrics_listening")["address"].rpartition(":")[2]
    daemon.wait_for("cycle_finished", result="ok")
    page = httpx.get(f"http://127.0.0.1:{port}/")
    assert page.status_code == 404
    assert "the status pages are off" in page.text
    assert "janedoe" not in httpx.get(f"http://127.0.0.1:{port}/users/janedoe").text
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    assert daemon.stop() == 0


def test_on_loopback_the_pages_answer_only_a_host_that_names_loopback(
    world: World, start_daemon: Any
):
    """A web page that rebinds its name to 127.0.0.1 sends that name as Host: no pages;
    Prometheus and a probe may name the listener as they are configured to."""
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="ok")
    port = address.rpartition(":")[2]
    rebound = httpx.get(
        f"http://{address}/users/janedoe", headers={"Host": f"attacker.example:{port}"}
    )
    assert rebound.status_code == 421
    assert rebound.text.count("\n") == 1
    assert "janedoe" not in rebound.text
    for host in (address, f"localhost:{port}", "localhost"):
        page = httpx.get(f"http://{address}/users/janedoe", headers={"Host": host})
        assert page.status_code == 200, host
        assert "janedoe" in page.text
    for path in ("/metrics", "/healthz", "/readyz"):
        assert httpx.get(f"http://{address}{path}", headers={"Host": "10.1.2.3:9100"}).is_success
    assert daemon.stop() == 0


def test_a_standby_serves_the_pages_from_the_shared_state(pg_world: World, start_pg_daemon: Any):
    listening = {"SYNCD_METRICS_ADDR": "127.0.0.1:0"}
    active = start_pg_daemon(**listening)
    active.wait_for("took_over", timeout=20)
    active.wait_for("cycle_finished", result="ok", timeout=20)
    standby = start_pg_daemon(**listening)
    address = standby.wait_for("metrics_listening", timeout=20)["address"]
    standby.wait_for("standby", timeout=20)
    page = httpx.get(f"http://{address}/")
    assert page.status_code == 200
    assert "This instance is a <strong>standby</strong>" in page.text
    assert f"pid {active.pid}" in page.text  # who is active
    assert "<td>run</td><td>ok</td>" in page.text  # the active one's cycle, from the state
    user = httpx.get(f"http://{address}/users/janedoe")
    assert "has not read the desired state" in user.text
    assert "Private Island" in user.text  # live, from the shared cache
    assert "not managed" not in user.text  # unknown here, not claimed unmanaged
    assert standby.stop() == 0
    assert active.stop() == 0


def test_after_a_reload_to_another_api_the_pages_show_that_api(
    world: World, start_daemon: Any, tmp_path: Path
):
    # After a SIGHUP moved api_url, /users/NAME showed the old API's values from the
    # cache, and / "Users in error (0)" above a user who failed on the new API.
    elsewhere = {
        "users": {
            "janedoe": account(["jane.doe@example.com"], "tok-jane-elsewhere", full_name="J"),
            "johnsmith": {**STANDARD_SEED["users"]["johnsmith"], "full_name": "John Elsewhere"},
        }
    }
    config = tmp_path / "syncd.toml"
    config.write_text(f'api_url = "{world.sandbox.url}"\n')
    with serve_in_thread(SandboxConfig(admin_token=ADMIN_TOKEN)) as other_url:
        SandboxHandle(other_url, ADMIN_TOKEN).reset(seed=elsewhere)
        daemon: DaemonProcess = start_daemon(
            SYNCD_CONFIG=str(config),
            SYNCD_API_URL=None,
            SYNCD_OBSERVE="true",
            SYNCD_INTERVAL="3600",
            SYNCD_METRICS_ADDR="127.0.0.1:0",
        )
        address = daemon.wait_for("metrics_listening")["address"]
        assert daemon.wait_for("cycle_finished")["result"] == "drift"  # janedoe's
        assert "John Smith" in httpx.get(f"http://{address}/users/johnsmith").text

        config.write_text(f'api_url = "{other_url}"\n')
        daemon.process.send_signal(signal.SIGHUP)
        assert daemon.wait_for("reloaded")["api_url"] == other_url
        # janedoe's token is not the other API's: she is in error there.
        assert daemon.wait_for("cycle_finished")["result"] == "partial"

        home = httpx.get(f"http://{address}/").text
        assert '<h2 id="in-error">Users in error (1)</h2>' in home
        user = httpx.get(f"http://{address}/users/johnsmith").text
        values = user.partition('<h2 id="values">')[2].partition("<h2")[0]
        full_name = (
            '<th>full_name</th>\n<td class="value">John Smith</td>\n'
            '<td class="value">John Elsewhere</td>'
        )
        assert full_name in values  # desired, and live as the other API answered
        jane = httpx.get(f"http://{address}/users/janedoe").text
        assert "unauthorized" in jane
        assert "San Francisco" not in jane  # the first API's live value
        metrics = httpx.get(f"http://{address}/metrics").text
        assert 'syncd_users_failing{code="unauthorized"} 1.0' in metrics
        assert httpx.get(f"http://{address}/healthz").status_code == 200
        assert daemon.stop() == 0
