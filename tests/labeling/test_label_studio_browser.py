"""The real Label Studio UI in headless Debian Chromium (selenium + chromedriver): a reviewer logs in,
opens a pushed task and sees the pre-annotated speaker regions; the audio clip loads.

Screenshot artifact: ``reports/tests/label_studio_task.png``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from flywheel.config import get_settings
from labeling.push import push_items

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SEGMENTS = [(0.5, 3.0, "T1"), (2.5, 6.0, "T2"), (7.0, 11.5, "T1"), (9.0, 10.0, "T3")]


@pytest.fixture
def browser(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) is not installed")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian chromium + chromium-driver are missing: run `bash scripts/setup_label_studio.sh`")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


def test_reviewer_sees_pre_annotated_regions(label_studio, ls_settings, make_item, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    t0 = time.monotonic()
    with label_studio.client() as client:
        report = push_items([make_item("browser-1", 12.0, SEGMENTS)], client, ls_settings)
        (task,) = list(client.tasks(report.project_id))
    url, creds = label_studio.settings.url, label_studio.config.creds

    browser.get(f"{url}/user/login/")
    browser.find_element(By.NAME, "email").send_keys(creds.username)
    browser.find_element(By.NAME, "password").send_keys(creds.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: "/user/login" not in d.current_url)

    browser.get(f"{url}/projects/{report.project_id}/data?task={task['id']}")
    region_css = ".lsf-tree__node_type_audioregion .lsf-outliner-item__title"
    try:
        WebDriverWait(browser, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, region_css)) >= len(SEGMENTS)
        )
        # the waveform has decoded (the player shows "Initializing..." until then)
        WebDriverWait(browser, 60).until(
            lambda d: (
                d.find_elements(By.CSS_SELECTOR, ".lsf-audio-tag") and "Initializing" not in d.page_source
            )
        )
    finally:
        shots = get_settings().reports_dir / "tests"
        shots.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(shots / "label_studio_task.png"))
    labels = [e.text.strip() for e in browser.find_elements(By.CSS_SELECTOR, region_css)]
    # Speaker k numbered by first appearance: T1 -> 1, T2 -> 2, T3 -> 3
    assert sorted(labels) == ["Speaker 1", "Speaker 1", "Speaker 2", "Speaker 3"]
    assert "teacher-test-1" in browser.page_source  # the prediction's model version is shown
    # the clip this task plays is served to the logged-in browser (local-files storage)
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.arrayBuffer().then(b => done([r.status, b.byteLength])))"
        ".catch(e => done([0, String(e)]));",
        task["data"]["audio"],
    )
    assert status == [200, 44 + 2 * 12 * 16_000]
    print(f"browser check {time.monotonic() - t0:.1f} s")
