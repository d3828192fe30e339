"""What the browser tests share besides fixtures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


def screenshot(driver: WebDriver, name: str) -> None:
    """Save ``<name>.png`` into ``$CALLBELL_SCREENSHOTS`` when set (``make screenshots``)."""
    folder = os.environ.get("CALLBELL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))
