"""The web console in a real browser: Debian's headless Chromium, driven through its chromedriver
by Selenium, against a running system and the console's own daemon process.

One walk through the console as a person would use it: log in with the link, watch a workflow
wait on a human and then finish without reloading the page, resolve its escalation at the desk,
read a task's conversation and signed history, kill an agent with the page's button. With
``SWARMLOG_SCREENSHOTS=DIR`` the pages are saved there as PNG (``docs/images`` holds the ones
the README shows).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clikit import ROOT, Cli, start_agents

from swarmlog.console.server import login_url
from swarmlog.control.system import console_url

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MISSING = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"browser tests skipped: {', '.join(MISSING)} not installed (Debian's chromium"
        " and chromium-driver: `apt-get install chromium chromium-driver`; .ci/run installs them)",
    ),
]

WAIT = 60.0
"""Seconds a page has to show what the system did (a loaded 2-core machine is slow)."""


@pytest.fixture
def console(cli: Cli, tmp_path: Path) -> Iterator[str]:
    """The console daemon of the test's system (what ``up`` starts); its base URL."""
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarmlog", "console", "--port", "0"],
            env=cli.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + WAIT
        while (url := console_url(cli.settings())) is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the console did not start listening"
            time.sleep(0.05)  # polling a process that is starting
        yield url
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless as root; and no calls home: this machine's network is closed.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,860",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver: Any, name: str) -> None:
    folder = os.environ.get("SWARMLOG_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"console-{name}.png"))


def shows(driver: Any, css: str, text: str | None = None, attribute: str | None = None) -> str:
    """Wait until the page has an element ``css`` (with ``text`` in it, or ``attribute`` equal
    to ``text``); its text (or that attribute), read then: a live redraw may swap the element
    right after, so the test holds what it saw, never the element."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d: Any) -> str | bool:
        try:
            for element in d.find_elements(By.CSS_SELECTOR, css):
                value = element.get_attribute(attribute) if attribute else element.text
                if value is not None and (
                    text is None or (value == text if attribute else text in value)
                ):
                    return str(value)
        except StaleElementReferenceException:  # swapped by a live refresh: look again
            return False
        return False

    shown: str = WebDriverWait(driver, WAIT, poll_frequency=0.1).until(
        found, f"{css} {attribute or 'text'} {text!r} within {WAIT:.0f} s"
    )
    return shown


def test_a_person_watches_steers_and_reads_a_run_in_the_browser(
    cli: Cli, console: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    start_agents(cli, "examples.echo:Echo")
    start_agents(cli, "tests.e2e.picky:Picky")
    start_agents(cli, "examples.assistant:Assistant")
    settings = cli.settings()

    # Without the link's token nothing but the login answers.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(console, timeout=10)
    assert refused.value.code == 401
    refused.value.close()  # it holds the response's socket
    link = login_url(settings)
    assert link is not None
    assert link.startswith(console)
    browser.get(link)
    assert browser.current_url == console  # the token is not left in the address bar

    # Two changes told in one moment: the second comes while the first one's redraw is in
    # flight, and the page is redrawn again after it. (A redraw that replaced the element the
    # second was queued on once dropped it: a run's last change, told so, was never shown.)
    browser.execute_script(
        "window.swarmlogRedraws = 0;"
        "document.body.addEventListener('htmx:afterSwap', () => { window.swarmlogRedraws += 1; });"
        "const live = document.getElementById('live');"
        "htmx.trigger(live, 'sse:changed'); htmx.trigger(live, 'sse:changed');"
    )
    WebDriverWait(browser, WAIT, poll_frequency=0.1).until(
        lambda d: d.execute_script("return window.swarmlogRedraws;") >= 2,
        "a change told while a redraw was in flight was not redrawn",
    )

    # A workflow whose second stage nobody can do: it waits for a human.
    sent = cli(
        "submit", "pipeline", "--stage", "text", "--stage", "check", "--data", "bad", "--json"
    )
    assert sent.returncode == 0, sent.stderr
    wf = json.loads(sent.stdout)["workflow_id"]
    browser.get(f"{console}workflows/{wf}")
    browser.execute_script("window.swarmlogNotReloaded = true;")
    # The page says where the log was when it was drawn: its feed catches it up if the run
    # moved before the browser connected (an escalation in that moment was once never shown).
    feed = browser.find_element(By.TAG_NAME, "body").get_attribute("sse-connect")
    assert feed.startswith("/live?drawn_at="), feed
    assert feed.split("=", 1)[1].isdecimal(), feed
    escalation_id = shows(browser, ".warn a")  # appears while we watch: the page updates itself
    assert shows(browser, "#workflow-status", "running", attribute="data-status")
    assert shows(browser, f'tr[data-task="{wf}-s2"] .status', "escalated", "data-status")
    shoot(browser, "workflow-waiting")

    # At the desk, in a second window: reassign the stage to the echo role.
    watching = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(f"{console}escalations")
    shows(browser, f'tr[data-escalation="{escalation_id}"]')
    shoot(browser, "escalation-desk")
    browser.get(f"{console}escalations/{escalation_id}")
    assert "rejected: the input is bad" in shows(browser, "dd.error")
    browser.find_element(By.ID, "action-reassign").click()
    browser.find_element(By.ID, "role").send_keys("echo")
    browser.find_element(By.ID, "note").send_keys("echo can do it")
    browser.find_element(By.ID, "resolve-button").click()
    assert f"resolved {escalation_id} (reassign)" in shows(browser, "#flash")

    # The first window saw the workflow finish, and never reloaded.
    browser.switch_to.window(watching)
    try:
        shows(browser, "#workflow-status", "succeeded", attribute="data-status")
    except Exception as exc:  # say whether the run or the page is behind
        shown = cli("show", wf)
        raise AssertionError(f"{exc}\nswarmlog show {wf}:\n{shown.stdout}{shown.stderr}") from exc
    shows(browser, f'tr[data-task="{wf}-s2"] .status', "succeeded", attribute="data-status")
    assert browser.execute_script("return window.swarmlogNotReloaded === true;")
    shoot(browser, "workflow-done")
    rows = cli.rows(f"SELECT status FROM workflows WHERE workflow_id = '{wf}'")
    assert rows == [{"status": "succeeded"}]

    # A model-and-tools task: its conversation, its calls, each event's signer and verdict.
    # (Live redraws are shown above: here the CLI waits, so a slow run says how it ended.)
    asked = cli(
        "submit",
        "pipeline",
        "--stage",
        "assist",
        "--data",
        '"What time is it?"',
        "--wait",
        "--timeout",
        "120",
        "--json",
        timeout=150,
    )
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assisted = json.loads(asked.stdout)["workflow_id"]
    browser.get(f"{console}workflows/{assisted}")
    shows(browser, "#workflow-status", "succeeded", attribute="data-status")
    browser.get(f"{console}tasks/{assisted}-s1")
    shows(browser, "#conversation .turn")
    shows(browser, "#calls td", "get_current_time")
    verdicts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#history .verdict")]
    assert verdicts
    assert all(v == "✔ verified" for v in verdicts), verdicts
    shoot(browser, "task-conversation")

    # Kill the echo agent with the page's button; the log and the broker agree.
    browser.get(f"{console}agents")
    browser.find_element(By.ID, "reason-echo-1").send_keys("seen misbehaving")
    browser.find_element(By.CSS_SELECTOR, 'tr[data-agent="echo-1"] button[name="kill"]').click()
    assert "killed echo-1" in shows(browser, "#flash")
    shows(browser, 'tr[data-agent="echo-1"] .status', "killed", attribute="data-status")
    shoot(browser, "agents")
    agents = json.loads(cli("agents", "--json").stdout)["agents"]
    assert {a["agent_id"]: a["status"] for a in agents}["echo-1"] == "killed"

    # And its metrics, where `status --json` says, without a token (a Prometheus scrape).
    status = json.loads(cli("status", "--json").stdout)
    assert status["console_url"] == console
    assert status["metrics_url"] == f"{console}metrics"
    with urllib.request.urlopen(status["metrics_url"], timeout=10) as scraped:
        text = scraped.read().decode()
    assert 'swarmlog_tasks{role="echo",status="succeeded"}' in text
    assert "swarmlog_projector_lag_events" in text
