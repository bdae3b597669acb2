"""Regenerate docs/ui.png from the real page: start `bfvr ui`, open it in headless Chromium (selenium + the
system chromedriver, as tests/test_ui.py does), restore the first seconds of a real clip with the default
model and save a screenshot of the page (900 px wide).

    BFVR_SHARED=../shared python scripts/ui_screenshot.py [CLIP] [--preview SECONDS] [-o docs/ui.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wait(cond, timeout: float, what: str):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
        except Exception as e:  # noqa: BLE001 - not there yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what} (last: {last!r})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = Path(os.environ.get("BFVR_SHARED", REPO.parent / "shared"))
    ap.add_argument("clip", nargs="?", default=str(shared / "data/faces/lp_driving_d18.mp4"))
    ap.add_argument("--preview", type=float, default=2.0, help="seconds to restore (0 = the whole clip)")
    ap.add_argument("-o", "--output", default=str(REPO / "docs" / "ui.png"))
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bfvr.cli", "ui", "--port", str(port), "--temp-dir", tmp,
               "--samples", str(Path(args.clip).parent)]
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 - closed with the folder
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        driver = None
        try:
            def answers():
                if server.poll() is not None:
                    raise SystemExit(f"bfvr ui exited: {(Path(tmp) / 'server.log').read_text()}")
                return urllib.request.urlopen(url, timeout=2).read()

            wait(answers, 600, "the server")
            opts = webdriver.ChromeOptions()
            opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
            for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                      "--disable-gpu", "--mute-audio"):
                opts.add_argument(a)
            driver_exe = shutil.which("chromedriver") or "/usr/bin/chromedriver"
            driver = webdriver.Chrome(service=Service(driver_exe), options=opts)
            d = driver
            d.get(url)
            wait(lambda: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"), 60, "the upload box")
            upload = d.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
            upload.send_keys(str(Path(args.clip).resolve()))
            wait(lambda: "frames" in d.find_element(By.ID, "input-info").text, 120, "the input info")
            box = d.find_element(By.CSS_SELECTOR, "#preview input")
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(str(args.preview), Keys.TAB)
            d.find_element(By.ID, "restore-btn").click()
            status = wait(lambda: (t := d.find_element(By.ID, "status").text).startswith(("Done:", "⚠"))
                          and t, 1800, "the restore")
            if not status.startswith("Done:"):
                raise SystemExit(status)
            wait(lambda: d.execute_script("const i = document.querySelector('#profile img');"
                                          "return i && i.complete && i.naturalWidth > 0"), 60, "the profile")
            time.sleep(2)
            # the page down to the before/after slider (the run's JSON below it is left out), 900 px wide
            top = d.execute_script("return document.querySelector('#run-info').getBoundingClientRect().top"
                                   " + window.scrollY")
            d.set_window_size(1400, int(top) + 90)  # + the browser's own height
            time.sleep(1)
            png = d.get_screenshot_as_png()
            import cv2
            import numpy as np

            im = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[: int(top) - 8]
            im = cv2.resize(im, (900, round(im.shape[0] * 900 / im.shape[1])), interpolation=cv2.INTER_AREA)
            cv2.imwrite(args.output, im, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            print(f"{args.output}: {status}")
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            server.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
