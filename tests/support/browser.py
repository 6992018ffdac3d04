"""Debian's Chromium, headless, driven by selenium through the system chromedriver.

WebGL runs on SwiftShader (``--use-angle=swiftshader --enable-unsafe-swiftshader``),
so a trame VtkLocalView really draws without a GPU.  Each browser gets a
fresh ``--user-data-dir`` under the test's tmp folder and is quit at teardown
(chromedriver stops its Chromium; the driver process is ours).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1200,800")


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) from PATH, or None when either is missing."""
    browser = next((shutil.which(name) for name in CHROMIUM_CANDIDATES if shutil.which(name)), None)
    driver = shutil.which(CHROMEDRIVER) or (CHROMEDRIVER if Path("/usr/bin/chromedriver").exists() else None)
    return (browser, driver) if browser and driver else None


def start_chromium(profile: Path, log: Path):
    """A selenium WebDriver on a fresh headless Chromium; pytest.skip when Chromium or selenium is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        pytest.skip("chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    browser, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver, log_output=str(log))
    return webdriver.Chrome(service=service, options=options)


@pytest.fixture
def chromium(tmp_path):
    """A headless Chromium (selenium WebDriver) with its own profile under tmp_path; quit at teardown."""
    driver = start_chromium(tmp_path / "chromium-profile", tmp_path / "chromedriver.log")
    try:
        yield driver
    finally:
        driver.quit()


def canvas_drawn(driver, folder: Path, name: str):
    """(fraction drawn, screenshot bytes) of the first canvas, saved as ``folder/name``; None while there is none."""
    from selenium.webdriver.common.by import By

    from support import png

    canvases = driver.find_elements(By.CSS_SELECTOR, "canvas")
    if not canvases:
        return None
    shot = canvases[0].screenshot_as_png
    fraction, _background = png.drawn_fraction(shot)
    (folder / name).write_bytes(shot)
    return fraction, shot
