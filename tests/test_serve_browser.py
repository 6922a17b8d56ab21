"""The viewer page in a real browser: ``polypseg serve`` as a subprocess on a free loopback port, Debian's
Chromium driven headless by Selenium through the system chromedriver.

This test does not skip when Chromium is missing: it fails and says to run ``make browser-deps`` (``make
test`` runs it first). Only ``POLYPSEG_SKIP_BROWSER=1``, set explicitly, skips it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from polypseg.config import load_recipe

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# The canvas's pixels as one number (changes when any pixel does).
CANVAS_HASH = """
const c = document.getElementById(arguments[0]);
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let h = 0;
for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) >>> 0;
return [c.width, c.height, h];
"""


def require_browser() -> None:
    if os.environ.get("POLYPSEG_SKIP_BROWSER") == "1":
        pytest.skip("POLYPSEG_SKIP_BROWSER=1 was set")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: run `make browser-deps` (installs Debian's chromium and "
            "chromium-driver with apt), or set POLYPSEG_SKIP_BROWSER=1 to skip this test",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[dev]'", pytrace=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_browser()
    from polypseg.training import fit

    run = tmp_path_factory.mktemp("browser") / "run"
    overrides = {"epochs": 1, "data.size": 64, "data.batch_size": 8, "model.args.base": 4, "model.args.depth": 2}
    fit(load_recipe("quick", overrides), ["synthetic:n=24,size=64,seed=1"], run, progress=False)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    port, log = free_port(), tmp_path_factory.mktemp("log") / "serve.log"
    model = os.environ.get("POLYPSEG_BROWSER_MODEL", str(tiny_run))  # a better model for the docs' screenshot
    cmd = [sys.executable, "-m", "polypseg", "serve", model, "--port", str(port), "--precision", "32"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"polypseg serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url + "health", timeout=2) as res:
                    if res.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the server did not answer /health:\n{log.read_text()}"
            time.sleep(0.2)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def driver(server: tuple[str, Path]) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1360,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def write_frame(path: Path, h: int = 288, w: int = 360) -> Path:
    """A colonoscopy-like RGB frame of the built-in synthetic set, resized to ``h`` x ``w``, as a PNG."""
    from polypseg.data.synthetic import render_frame

    image, _ = render_frame(seed=4, index=1, size=256)
    cv2.imwrite(str(path), cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)[..., ::-1])
    return path


def test_page_predicts_rethresholds_in_the_browser_and_plays_a_video(driver, server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, log = server
    assert "bound to 127.0.0.1: loopback only" in log.read_text()
    wait = WebDriverWait(driver, 60)
    driver.get(url)
    wait.until(lambda d: d.find_element(By.ID, "model-card").get_attribute("data-loaded") == "true")
    assert "unet" in driver.find_element(By.ID, "model-card").text

    image = write_frame(tmp_path / "frame.png")
    driver.find_element(By.ID, "file-input").send_keys(str(image))
    wait.until(lambda d: d.find_element(By.ID, "result-0").get_attribute("data-state") in ("done", "error"))
    assert driver.find_element(By.ID, "result-0").get_attribute("data-state") == "done", driver.find_element(
        By.ID, "state-0"
    ).text
    if os.environ.get("POLYPSEG_SCREENSHOT"):  # the page as docs/serving.md shows it
        driver.save_screenshot(os.environ["POLYPSEG_SCREENSHOT"])
    w, h, overlay_before = driver.execute_script(CANVAS_HASH, "overlay-0")
    assert (w, h) == (360, 288)  # the overlay is at the image's own size
    mask_before = driver.execute_script(CANVAS_HASH, "mask-0")[2]
    fraction_before = driver.find_element(By.ID, "fraction-0").text
    slider = driver.find_element(By.ID, "threshold-0")
    # move the slider to the end that changes the mask: down to 0.01 if nothing is polyp yet, else up to 0.99
    slider.send_keys(Keys.HOME if fraction_before.startswith("0.00") else Keys.END)
    wait.until(lambda d: d.execute_script(CANVAS_HASH, "mask-0")[2] != mask_before)
    assert driver.execute_script(CANVAS_HASH, "overlay-0")[2] != overlay_before
    assert driver.find_element(By.ID, "fraction-0").text != fraction_before
    assert driver.find_element(By.ID, "threshold-value-0").text in ("0.01", "0.99")
    requests_after = log.read_text().count("POST /predict")
    assert requests_after == 1  # re-thresholding asked the server nothing
    driver.save_screenshot(str(tmp_path / "serve-page.png"))

    video = tmp_path / "clip.webm"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"VP80"), 10, (360, 288))
    frame = cv2.imread(str(image))
    for k in range(40):
        writer.write(np.roll(frame, 4 * k, axis=1))
    writer.release()
    driver.find_element(By.ID, "mode-video").click()
    driver.find_element(By.ID, "video-input").send_keys(str(video))
    wait.until(lambda d: float(d.find_element(By.ID, "video-fps").text) > 0)
    assert driver.execute_script(CANVAS_HASH, "video-overlay")[:2] == [360, 288]
    driver.find_element(By.ID, "video-stop").click()
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe  # no script error, no blocked (outside) request
