"""JupyterLab as a data scientist uses it: open notebook 01 in a real browser and run all cells.

The test starts ``jupyter lab`` from .venv on 127.0.0.1 with a token, in a fresh project
root (config/ and a copy of the notebook, so the repository's notebook and data are not
touched), and drives headless Chromium (or Chrome) through selenium with the system's
chromedriver. It opens notebook 01, checks that JupyterLab picked the project kernel
"Python (amlkit)" by itself, runs every cell from the Run menu, saves, and finds no error:
none shown on the page, none in the saved notebook, every code cell executed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_data_ingestion.ipynb"
BROWSER = next(
    (
        shutil.which(name)
        for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
        if shutil.which(name)
    ),
    None,
)
DRIVER = shutil.which("chromedriver")
RUN_TIMEOUT_S = 600

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BROWSER is None or DRIVER is None,
        reason="Chromium and chromedriver are needed to drive JupyterLab: "
        "`apt-get install chromium chromium-driver` (.ci/run installs them)",
    ),
]

# User settings for this JupyterLab only: no news or update checks (no network, no toasts
# over the menus) and every cell kept in the page, so the test sees each prompt and output.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A running JupyterLab on a fresh project root: ``(base_url, token, root)``."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "config", root / "config", ignore=shutil.ignore_patterns("schemas"))
    (root / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / NOTEBOOK, root / "notebooks" / NOTEBOOK)
    settings = tmp_path / "lab-settings"
    for plugin, values in SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        path = settings / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "AMLKIT_ROOT": str(root),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
    }
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jupyter-lab"),
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "jupyterlab.log").read_text()
            try:
                if requests.get(f"{base}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not answer within 120 s"
            time.sleep(0.5)
        yield base, token, root
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def browser():
    """Headless Chromium driven by selenium through the system's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _click_menu(driver, menu: str, command: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)
    title = f"//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='{menu}']"
    wait.until(ec.element_to_be_clickable((By.XPATH, title))).click()
    item = f"li.lm-Menu-item[data-command='{command}']"
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, item))).click()


def _kernel(base: str, token: str) -> dict:
    """The notebook's kernel as the server reports it ({} until the session exists)."""
    sessions = requests.get(f"{base}/api/sessions", params={"token": token}, timeout=10).json()
    assert len(sessions) <= 1, sessions
    return sessions[0]["kernel"] if sessions else {}


# Prompt of every code cell ("[3]:", "[*]:", "[ ]:") and the text of every error shown.
PAGE_STATE = """
const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
  .map(p => p.textContent.trim());
const errors = [...document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(o => o.textContent).filter(t => /Traceback|Error/.test(t));
return {prompts, errors};
"""


def test_notebook_01_runs_in_jupyterlab_on_the_project_kernel_without_errors(lab, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, root = lab
    browser.get(f"{base}/lab/tree/notebooks/{NOTEBOOK}?token={token}")
    WebDriverWait(browser, 120).until(
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".jp-KernelName"), "Python (amlkit)")
    )
    WebDriverWait(browser, 120).until(
        lambda _: _kernel(base, token).get("execution_state") == "idle"
    )
    assert _kernel(base, token)["name"] == "amlkit"
    dialogs = browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
    assert not dialogs, f"JupyterLab asked: {dialogs[0].text}"

    _click_menu(browser, "Run", "runmenu:run-all")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        time.sleep(1)
        state = browser.execute_script(PAGE_STATE)
        busy = any("*" in p for p in state["prompts"])
        if not busy and _kernel(base, token).get("execution_state") == "idle":
            break
        assert time.monotonic() < deadline, f"cells still running after {RUN_TIMEOUT_S} s"

    assert state["errors"] == []
    assert state["prompts"] and all(p[1:-2].isdigit() for p in state["prompts"]), state
    _click_menu(browser, "File", "docmanager:save")
    saved = root / "notebooks" / NOTEBOOK
    WebDriverWait(browser, 30).until(
        lambda _: all(
            c.get("execution_count") for c in nbformat.read(saved, 4).cells if c.cell_type == "code"
        )
    )
    cells = [c for c in nbformat.read(saved, 4).cells if c.cell_type == "code"]
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert errors == [], errors[0]["ename"] + ": " + errors[0]["evalue"]
    assert any((root / "data" / "raw" / "penguins").iterdir()), "no raw version was written"
