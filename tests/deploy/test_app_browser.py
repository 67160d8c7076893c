"""examples/app.py in headless Chromium: upload a photo through the page, read the label it displays.

Needs ``selenium`` and a Chromium with its driver on PATH (Debian: ``apt-get install chromium
chromium-driver``); skipped otherwise. ``LEARNKIT_APP_SCREENSHOT=path.png`` also keeps the screenshot.
"""
from __future__ import annotations

import os
import shutil

import pytest

webdriver = pytest.importorskip("selenium.webdriver")


def _browser():
    chromium = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                    None)
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=760,760"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver))


def test_upload_in_the_browser_shows_the_label(app_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    url, learn, photo = app_server
    expected = learn.predict(photo)[0]
    browser = _browser()
    try:
        browser.get(url + "/")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        browser.find_element(By.TAG_NAME, "button").click()
        WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "label").text.strip())
        assert browser.find_element(By.ID, "label").text.strip() == expected
        rows = browser.find_elements(By.CSS_SELECTOR, "#top tr")
        assert len(rows) == 2 and rows[0].text.split()[0] == expected
        shot = tmp_path / "app.png"
        assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"
        if os.environ.get("LEARNKIT_APP_SCREENSHOT"):
            shutil.copy(shot, os.environ["LEARNKIT_APP_SCREENSHOT"])
    finally:
        browser.quit()
