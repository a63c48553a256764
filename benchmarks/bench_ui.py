"""munit ui latency: slider move -> new image, on the server alone and in headless Chromium; JSON.

Starts `munit ui` (the shipped model by default, one torch thread unless OMP_NUM_THREADS says
otherwise), opens the page in Debian's headless Chromium through selenium, picks examples/cat.png,
keeps a style and moves a slider step by step, each move waiting for its image: the page's own
timer runs from the input event to the decoded, painted image. Also times the compute in this
process (Studio.render, one code) and a fast drag (moves that supersede each other). With
--screenshot it leaves the page with a grid, kept styles and a walk, and saves a PNG of it.

    python benchmarks/bench_ui.py --moves 40 --screenshot docs/ui.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run")


def summary(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
            "min_ms": round(ms[0], 1), "max_ms": round(ms[-1], 1)}


def server_side(model: str | None, precision: str, size: int | None, moves: int) -> dict:
    """Studio.render for one code at the page's size, in this process (content cached)."""
    import torch

    from munit_cli.checkpoint import load_generators
    from munit_cli.runtime import check_precision
    from munit_cli.weights import resolve_model
    from munit_cli.web.session import Studio

    dev = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(load_generators(resolve_model(model)), dev, check_precision(precision, dev), Path(tmp), size=size)
        photo = studio.add_photo((ROOT / "examples" / "cat.png").read_bytes(), "cat.png")
        t = time.perf_counter()
        studio.render(photo, "a2b", studio.codes({"random": {"n": 8, "seed": 0}}))
        first_grid = (time.perf_counter() - t) * 1000  # content encode + 8 styles, cold
        code = studio.codes({"random": {"n": 1, "seed": 1}})
        times = []
        for k in range(moves + 3):
            code[0, 3] = -2 + 4 * k / (moves + 2)
            t = time.perf_counter()
            studio.render(photo, "a2b", code)
            times.append((time.perf_counter() - t) * 1000)
        grid = []
        for _ in range(3):
            t = time.perf_counter()
            studio.render(photo, "a2b", studio.codes({"random": {"n": 8, "seed": 2}}))
            grid.append((time.perf_counter() - t) * 1000)
        return {"precision": studio.precision, "size": studio.size, "photo": list(photo.hw),
                "first_grid_with_encode_ms": round(first_grid, 1), "decode_8_styles": summary(grid),
                "decode_1_style": summary(times[3:])}


def browser(args, url: str, shot: Path | None) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = args.chromium
    profile = tempfile.mkdtemp(prefix="bench-ui-profile-")
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={args.width},{args.height}"):
        opts.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(service=Service(executable_path=args.chromedriver), options=opts)
    wait = WebDriverWait(driver, 300, poll_frequency=0.02)
    js = driver.execute_script
    try:
        driver.get(url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        driver.find_element(By.ID, "file").send_keys(str(ROOT / "examples" / "cat.png"))
        cells = lambda: driver.find_elements(By.CSS_SELECTOR, "#grid .cell img")
        wait.until(lambda d: len(cells()) == 8 and all((i.get_attribute("src") or "").startswith("data:") for i in cells()))
        driver.find_elements(By.CSS_SELECTOR, "#grid .cell")[args.keep[0]].click()
        slider = driver.find_elements(By.CSS_SELECTOR, "#sliders input")[3]
        for _ in range(3):  # warm-up
            n = js("return window.munitStats.editor.length")
            slider.send_keys(Keys.ARROW_RIGHT)
            wait.until(lambda d: js("return window.munitStats.editor.length") > n)
        js("window.munitStats.editor.length = 0")
        for k in range(args.moves):  # one move at a time, each waiting for its image
            slider.send_keys(Keys.ARROW_LEFT if (k // 20) % 2 else Keys.ARROW_RIGHT)
            wait.until(lambda d: js("return window.munitStats.editor.length") > k)
        stats = js("return window.munitStats.editor")
        result = {"sequential": summary([s["total_ms"] for s in stats]),
                  "server_ms": summary([s["server_ms"] for s in stats]),
                  "compute_ms": summary([s["compute_ms"] for s in stats])}
        # a drag: a move every ~16 ms for 3 s, not waiting for images; how many images it showed
        js("window.munitStats.editor.length = 0")
        t, moves = time.perf_counter(), 0
        while time.perf_counter() - t < 3:
            slider.send_keys(Keys.ARROW_LEFT if (moves // 40) % 2 else Keys.ARROW_RIGHT)
            moves += 1
            time.sleep(0.016)
        t_end = time.perf_counter()
        wait.until(lambda d: not js("return window.munitBusy()"))
        settle = (time.perf_counter() - t_end) * 1000
        drag = js("return window.munitStats.editor")
        result["drag"] = {"seconds": round(t_end - t, 2), "moves": moves, "images_shown": len(drag),
                          "images_per_s": round(len(drag) / (t_end - t), 1),
                          "move_to_image": summary([s["total_ms"] for s in drag]),
                          "last_image_after_drag_end_ms": round(settle, 1)}
        if shot:
            for k in args.keep[1:]:
                driver.find_elements(By.CSS_SELECTOR, "#grid .cell")[k].click()
            driver.find_elements(By.CSS_SELECTOR, "#kept .cell")[0].click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#walk .cell img")) >= 2)
            wait.until(lambda d: not js("return window.munitBusy()"))
            height = js("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": args.width, "height": max(args.height, height), "deviceScaleFactor": 1, "mobile": False})
            time.sleep(0.5)
            shot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(shot))
            result["screenshot"] = str(shot)
        return result
    finally:
        driver.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model (default: the shipped one)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--size", type=int, default=None, help="photo size (default: the model's, 128 for the shipped one)")
    ap.add_argument("--moves", type=int, default=40, help="slider moves timed")
    ap.add_argument("--screenshot", type=Path, default=None, help="save a PNG of the page here")
    ap.add_argument("--keep", default="2,5,6", help="grid cells to keep for the screenshot (the first one is edited)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args()
    args.keep = [int(k) for k in args.keep.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    out = {"cpu": cpu, "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
           "server": server_side(args.model, args.precision, args.size, args.moves)}
    cmd = [sys.executable, "-m", "munit_cli", "ui", "--port", "0", "--device", "cpu", "--precision", args.precision]
    cmd += (["--model", args.model] if args.model else []) + (["--size", str(args.size)] if args.size else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        out["browser"] = browser(args, url, args.screenshot)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
