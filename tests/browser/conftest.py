"""A real headless Chromium for the browser tests, driven by Selenium through Debian's chromedriver.

Nothing is downloaded: the browser and its driver are the ``chromium`` and ``chromium-driver`` packages
(``make test-browser`` installs them), found on PATH or in ``CHROMIUM``/``CHROMEDRIVER``. chromedriver
runs in a process group of its own, with Chromium inside it, and the whole group is killed when the
session ends, also after a failure or Ctrl-C.

``CALLBELL_SCREENSHOTS=<dir>`` (``make screenshots``) makes ``tests.browser.helpers.screenshot`` save PNGs there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.remote.webdriver import WebDriver

WINDOW = (1100, 800)


def _which(env: str, *names: str) -> str:
    found = os.environ.get(env) or next(filter(None, map(shutil.which, names)), None)
    if not found:
        pytest.fail(f"{names[0]} not found: run `make test-browser`, which installs it, or set {env}")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the session; each test loads its own page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which("CHROMIUM", "chromium", "chromium-browser")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root, e.g. in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium Manager from trying to download one.
    service = Service(
        executable_path=_which("CHROMEDRIVER", "chromedriver"), popen_kw={"start_new_session": True}
    )
    # A CI job that is cancelled gets SIGTERM, which would end pytest without any finalizer: turn it
    # into the KeyboardInterrupt of a Ctrl-C, so the browser and the Airflow servers are stopped.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        signal.signal(signal.SIGTERM, previous)
        process = service.process
        try:
            driver.quit()
        finally:
            if process is not None:  # whatever quit() left behind: chromedriver's group, Chromium in it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
