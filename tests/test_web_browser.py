"""`munit ui` in a real browser: Debian's headless Chromium, driven by selenium through Debian's
chromedriver, loads the page served by the `munit ui` command, uploads examples/cat.png, gets the
grid, drags a slider and sees the image change, walks between two kept styles, downloads the grid
and a style bank that `munit translate --style-file` reads, turns the heads switch on and sees
whole photos with the head pasted back (a large photo as a preview, its download at full size);
a corrupt photo gets a message and the page goes on. Skips with one line where no browser is installed (.ci/run installs one)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="munit ui needs the [ui] extra: pip install -e '.[ui,dev]'")
pytest.importorskip("uvicorn", reason="munit ui needs the [ui] extra: pip install -e '.[ui,dev]'")

from munit_cli.styles import load_style_bank  # noqa: E402
from test_heads import TINY, random_detector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 180  # seconds; generous: the test machine may be busy training
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--no-first-run", "--window-size=1400,1000")


def chrome(tmp_path: Path, downloads: Path):
    """A headless Chromium with a fresh profile, downloads going to `downloads`; or a skip."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("no browser test: selenium is not installed (pip install -e '.[dev]')")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"no browser test: {' and '.join(missing)} not installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium: never look for drivers online
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def serve(tmp_path: Path, model: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`munit ui` on a free port; its address."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "munit_cli", "ui", "-m", str(model), "--port", "0",
                             "--device", "cpu", "--precision", "fp32", *args],
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "server.log", "w"), text=True, env=env)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        pytest.fail(f"munit ui did not start: {(tmp_path / 'server.log').read_text()}")
    return proc, url


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: condition(d))
    except Exception as e:
        status = driver.execute_script("return document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {what} (page status: {status!r})") from e


def wait_file(folder: Path, name: str) -> Path:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        path = folder / name
        if path.is_file() and not list(folder.glob("*.crdownload")) and path.stat().st_size:
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; the folder holds {sorted(p.name for p in folder.iterdir())}")


def test_page_in_headless_chromium(tmp_path, tiny_gen_ckpt):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(tmp_path, downloads)
    det = random_detector(tmp_path / "det.safetensors", threshold=0.0, recipe=TINY)  # finds a head in every photo
    proc, url = serve(tmp_path, tiny_gen_ckpt, "--detector", str(det), "--preview-side", "300")
    try:
        js = driver.execute_script
        driver.get(url)
        wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page")
        assert "tiny.safetensors" in driver.find_element(By.ID, "model-line").text
        assert driver.find_elements(By.CSS_SELECTOR, "#examples [data-example='cat.png']")  # examples/ offered

        driver.find_element(By.ID, "file").send_keys(str(ROOT / "examples" / "cat.png"))
        grid = lambda d: [i.get_attribute("src") or "" for i in d.find_elements(By.CSS_SELECTOR, "#grid .cell img")]
        wait_for(driver, lambda d: len(grid(d)) == 8 and all(s.startswith("data:image/png") for s in grid(d)), "the grid")
        assert len(set(grid(driver))) == 8  # 8 different styles

        driver.find_elements(By.CSS_SELECTOR, "#grid .cell")[2].click()  # keep style 2
        current = lambda d: d.find_element(By.ID, "current-img").get_attribute("src") or ""
        wait_for(driver, lambda d: current(d).startswith("data:image/png"), "the kept style in the editor")
        sliders = driver.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")
        assert len(sliders) == 8 and all(s.is_enabled() for s in sliders)

        before, code_before = current(driver), js("return state.kept[state.direction][0].code.slice()")
        ActionChains(driver).click_and_hold(sliders[3]).move_by_offset(60, 0).release().perform()  # a drag
        wait_for(driver, lambda d: current(d) != before and js("return window.munitStats.editor.length") >= 1,
                 "the image to follow the slider")
        code_after = js("return state.kept[state.direction][0].code.slice()")
        assert code_after[3] > code_before[3] + 0.3 and code_after[:3] == code_before[:3]
        before = current(driver)
        sliders[5].send_keys(Keys.ARROW_LEFT * 5)  # the keyboard moves it too
        wait_for(driver, lambda d: current(d) != before, "the image to follow the keyboard")
        stats = js("return window.munitStats.editor")
        assert all(s["total_ms"] > 0 and s["compute_ms"] > 0 for s in stats)

        driver.find_elements(By.CSS_SELECTOR, "#grid .cell")[5].click()  # a second kept style: a walk appears
        walk = lambda d: d.find_elements(By.CSS_SELECTOR, "#walk .cell img")
        wait_for(driver, lambda d: len(walk(d)) == 6 and all((i.get_attribute("src") or "").startswith("data:")
                                                             for i in walk(d)), "the interpolation strip")

        driver.find_element(By.ID, "save-bank").click()
        bank = load_style_bank(wait_file(downloads, "cat-styles.safetensors"), 8)
        kept = js("return state.kept[state.direction].map(k => k.code)")
        assert torch.equal(bank.codes.flatten(1), torch.tensor(kept, dtype=torch.float32))
        assert bank.domain == "cat" and len(bank) == 2
        assert kept[0][:5] == code_after[:5] and kept[0][5] < code_after[5]  # the edits went into the bank

        driver.find_element(By.ID, "download-grid").click()
        sheet = np.asarray(Image.open(wait_file(downloads, "cat_cat_grid.png")))
        assert sheet.shape[1] > 8 * 48  # the photo and 8 outputs side by side

        heads = driver.find_element(By.ID, "heads")  # the heads switch: whole photos, the head pasted back
        assert heads.is_enabled() and not heads.is_selected()  # off by default for a model of whole images
        # read in one script: the page replaces these elements as the images land
        natural = ("return [...document.querySelectorAll(arguments[0])]"
                   ".map(i => [i.src.slice(-80), i.complete ? i.naturalWidth : 0, i.complete ? i.naturalHeight : 0])")
        small = {src for src, _, _ in js(natural, "#grid .cell img")}
        heads.click()
        wait_for(driver, lambda d: [(w, h) for src, w, h in js(natural, "#grid .cell img") if src not in small]
                 == [(300, 200)] * 8, "the grid of whole photos: cat.png (451 x 300) as a preview, 300 px long")
        wait_for(driver, lambda d: [(w, h) for _, w, h in js(natural, "#current-img, #kept .cell img")] == [(300, 200)] * 3,
                 "the edited and the kept styles as whole photos")
        name = driver.find_element(By.ID, "download-current").get_attribute("download")
        js("arguments[0].click()", driver.find_element(By.ID, "download-current"))  # a preview: rendered at full size
        assert Image.open(wait_file(downloads, name)).size == (451, 300)
        assert "head found in 'cat.png'" in driver.find_element(By.ID, "heads-note").text
        assert driver.find_element(By.ID, "head-box").is_displayed()

        bad = tmp_path / "broken.png"
        bad.write_bytes((ROOT / "examples" / "cat.png").read_bytes()[:3000])
        driver.find_element(By.ID, "file2").send_keys(str(bad))
        status = lambda d: d.find_element(By.ID, "status")
        wait_for(driver, lambda d: "error" in status(d).get_attribute("class"), "the error message")
        assert "broken.png" in status(driver).text and "corrupt or truncated" in status(driver).text
        before = current(driver)
        sliders[0].send_keys(Keys.ARROW_RIGHT * 10)  # the page and the server go on
        wait_for(driver, lambda d: current(d) != before, "an image after the bad upload")

        requested = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        urls = {m["params"]["request"]["url"] for m in requested if m["method"] == "Network.requestWillBeSent"}
        foreign = [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:", "//")) and not u.startswith(url)]
        assert any(u.startswith(url + "api/render") for u in urls)  # the log does hold the page's requests
        assert not foreign, f"the page fetched from elsewhere: {foreign}"
        errors = [e["message"] for e in driver.get_log("browser")
                  if e["level"] == "SEVERE" and "status of 400" not in e["message"]]
        assert not errors, errors
    finally:
        driver.quit()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()
