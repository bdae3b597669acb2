"""`bfvr ui` driven in a real headless Chromium (selenium + the system chromedriver) on real face clips.

The server runs as a subprocess (`python -m bfvr.cli ui`) on a free local port with its own --temp-dir,
so the tests can look into the UI's folders. Screenshots go to tests/artifacts/ (gitignored).
Skips with the reason when gradio, selenium, chromium or chromedriver is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO, run_cli

pytestmark = pytest.mark.ui

ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _need_browser() -> None:
    for mod in ("gradio", "selenium"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed (pip install -e '.[ui,test]')")
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(exe):
            pytest.skip(f"{exe} not found (apt-get install chromium chromium-driver)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, temp: Path, samples: Path | None, *extra: str, tmpdir: bool = False) -> None:
        """`tmpdir`: no --temp-dir, the server's TMPDIR is `temp` (where it makes its ``bfvr-ui-*``)."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.temp = temp
        args = [sys.executable, "-m", "bfvr.cli", "ui", "--port", str(self.port),
                *([] if tmpdir else ["--temp-dir", str(temp)]), *extra]
        env = {**os.environ, "TMPDIR": str(temp)} if tmpdir else None
        if samples is not None:
            args += ["--samples", str(samples)]
        self.log = temp.parent / f"ui-{self.port}.log"
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=temp.parent,
                                     env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"bfvr ui exited: {self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"bfvr ui did not answer on {self.url}: {self.log.read_text()}")
        roots = list(temp.glob("bfvr-ui-*"))
        assert len(roots) == 1, roots
        self.root = roots[0]

    def run_dirs(self) -> set[Path]:
        return set(self.root.glob("sessions/*/run-*"))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module", autouse=True)
def own_temp_dir(tmp_path_factory):
    """What these tests start (the server, chromedriver and Chromium, gradio_client) makes its temporary
    files in this module's pytest folder, not in the system temp dir, where they were left behind:
    TMPDIR for the processes, `tempfile.tempdir` here, GRADIO_TEMP_DIR and the clients' download folder."""
    import tempfile

    d = tmp_path_factory.mktemp("systemp")
    old = {k: os.environ.get(k) for k in ("TMPDIR", "GRADIO_TEMP_DIR")}
    old_tempdir = tempfile.tempdir
    os.environ["TMPDIR"], os.environ["GRADIO_TEMP_DIR"] = str(d), str(d / "gradio")
    tempfile.tempdir = str(d)
    try:
        yield d
    finally:
        tempfile.tempdir = old_tempdir
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def server(tmp_path_factory, faces_dir):
    _need_browser()
    s = Server(tmp_path_factory.mktemp("ui") / "temp", faces_dir)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(server, downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--autoplay-policy=no-user-gesture-required", "--disable-gpu", "--mute-audio"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


# ---------------------------------------------------------------------------------------------- helpers

def _wait(cond, timeout: float, what: str, interval: float = 0.25):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
        except Exception as e:  # noqa: BLE001 - element not there yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _text(d, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(d.find_element(By.ID, elem_id).text.split())


def _open(d, server) -> None:
    from selenium.webdriver.common.by import By

    d.get(server.url)
    _wait(lambda: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"), 60, "the upload box")
    _wait(lambda: d.find_element(By.ID, "restore-btn").is_displayed(), 30, "the Restore button")


def _upload(d, path: Path) -> None:
    """Put `path` in the upload box (first pressing its clear button when a file is there, as a user does)."""
    from selenium.webdriver.common.by import By

    if not d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"):
        d.find_element(By.CSS_SELECTOR, "#upload button[aria-label=Clear]").click()
    _wait(lambda: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"), 10, "an empty upload box")
    d.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))


def _choose(d, elem_id: str, option: str) -> None:
    """Pick `option` in a Gradio dropdown the way a user does: open it, type, click the option."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = d.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(option)
    opt = _wait(lambda: [o for o in d.find_elements(By.CSS_SELECTOR, f"#{elem_id} li[role=option]")
                         if (o.get_attribute("aria-label") or "").startswith(option + " ")], 10, "option "
                f"{option}")
    opt[0].click()
    _wait(lambda: d.find_element(By.CSS_SELECTOR,
                                 f"#{elem_id} input").get_attribute("value").startswith(option),
          10, f"{option} selected")


def _radio(d, elem_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    d.find_element(By.CSS_SELECTOR, f"#{elem_id} input[value='{value}']").click()


def _set_number(d, elem_id: str, value: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = d.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)


def _screenshot(d, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    h = d.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    d.set_window_size(1400, min(max(int(h) + 40, 1000), 4000))
    time.sleep(0.5)
    p = ARTIFACTS / name
    d.save_screenshot(str(p))
    d.set_window_size(1400, 1000)
    print(f"screenshot: {p}")
    return p


def _cli_message(path: Path) -> str:
    """The one sentence `bfvr info` prints for `path`, with the path replaced by the file name."""
    from bfvr.errors import BfvrError
    from bfvr.io import probe

    try:
        probe(path)
    except BfvrError as e:
        return " ".join(str(e).split()).replace(str(path), path.name)
    raise AssertionError(f"{path} was readable")


# ----------------------------------------------------------------------------------------------- tests

def test_restore_a_real_clip_plays_and_downloads(server, browser, downloads, faces_dir):
    from selenium.webdriver.common.by import By

    from bfvr.io import probe
    from bfvr.models import DEFAULT_MODEL
    from bfvr.ui.core import model_problem

    d = browser
    clip = faces_dir / "lp_driving_d18.mp4"  # 480x480, 30 fps, 216 frames, AAC
    src = probe(clip)
    _open(d, server)
    problem = model_problem(DEFAULT_MODEL)
    if problem is not None:  # the default without weights here: shown as unavailable, with the reason
        note = _text(d, "model-note")
        assert "unavailable" in note.lower() and DEFAULT_MODEL in note and "bfvr models download" in note
    _screenshot(d, "ui_before.png")
    _upload(d, clip)
    info = _wait(lambda: "216 frames" in _text(d, "input-info") and _text(d, "input-info"), 60, "the "
                 "input info")
    assert "480×480" in info and "30 fps" in info and "7.20 s" in info and "audio aac" in info
    _wait(lambda: d.execute_script("const i = document.querySelector('#first-frame img');"
                                   "return i && i.complete && i.naturalWidth"), 30, "the first frame")
    # the default model (its weights ship with bfvr), or the pass-through when they are missing here
    _choose(d, "model", DEFAULT_MODEL if problem is None else "identity")
    _radio(d, "faces", "largest")
    d.find_element(By.ID, "restore-btn").click()
    seen = set()

    def finished():
        t = _text(d, "status")
        if "frames/s" in t and "left" in t:
            seen.add(t)
        if t.startswith("⚠"):
            raise AssertionError(t)
        return t.startswith("Done:") and t

    status = _wait(finished, 240, "the restore to finish", interval=0.2)
    assert "216 frames" in status and "audio copied" in status
    assert seen, "no progress (frames done, frames/s, time left) was shown while running"
    # the result plays: the <video> gets data and its time advances
    video = "document.querySelector('#result-video video')"
    _wait(lambda: d.execute_script(f"return {video} && {video}.src"), 30, "the result video")
    d.execute_script(f"{video}.muted = true; {video}.play();")
    _wait(lambda: d.execute_script(f"return {video}.readyState >= 3 && {video}.currentTime > 0.5"), 30,
          "the result video to play")
    assert abs(d.execute_script(f"return {video}.duration") - 7.2) < 0.1
    # side-by-side video, before/after frames and the temporal profile are there
    side_src = "const v = document.querySelector('#side-video video'); return v && v.src"
    _wait(lambda: d.execute_script(side_src), 30, "the side-by-side video")
    _wait(lambda: d.execute_script("return [...document.querySelectorAll('#before-after img')]"
                                   ".filter(i => i.complete && i.naturalWidth > 0).length >= 2"), 30,
          "the before/after images")
    _wait(lambda: d.execute_script("const i = document.querySelector('#profile img');"
                                   "return i && i.complete && i.naturalWidth > 400"), 30, "the "
          "temporal profile")
    assert "timings" in _text(d, "run-info") or "restore s" in _text(d, "run-info")
    _screenshot(d, "ui_after.png")
    # download through the page's link, as a user does, and check what was saved
    link = _wait(lambda: d.find_element(By.CSS_SELECTOR, "#download a[href]"), 30, "the download link")
    link.click()
    saved = _wait(lambda: [p for p in downloads.glob("*.mp4") if not p.name.endswith(".crdownload")
                           and p.stat().st_size > 0], 60, "the downloaded file")
    time.sleep(1)
    out = probe(saved[0])
    assert out.frame_count == src.frame_count == 216
    assert out.fps == src.fps and out.size == src.size
    assert out.has_audio and out.audio_codec == "aac" and abs(out.audio_duration - src.audio_duration) < 0.05


def test_bad_upload_shows_the_cli_sentence_and_page_keeps_working(server, browser, faces_dir, tmp_path):
    from selenium.webdriver.common.by import By

    d = browser
    bad = tmp_path / "notes.mp4"
    bad.write_text("meeting notes, not a video\n" * 20)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((faces_dir / "lp_driving_d18.mp4").read_bytes()[:40_000])
    _open(d, server)
    for f in (bad, truncated):
        expected = _cli_message(f)
        _upload(d, f)
        _wait(lambda e=expected: e in _text(d, "input-info"), 60, f"the error for {f.name}")
        assert "Traceback" not in d.page_source
    d.find_element(By.ID, "restore-btn").click()  # restoring the bad upload: the same sentence, no run
    _wait(lambda: _cli_message(truncated) in _text(d, "status"), 60, "the error in the status line")
    # the page still works: a real clip, a 1-second preview (30 frames) restores
    _upload(d, faces_dir / "lp_driving_d18.mp4")
    _wait(lambda: "216 frames" in _text(d, "input-info"), 60, "the input info of the good clip")
    from bfvr.models import DEFAULT_MODEL
    from bfvr.ui.core import model_problem

    problem = model_problem(DEFAULT_MODEL)
    if problem is not None:  # a model without weights: its reason in the page, as an error, not a crash
        _choose(d, "model", DEFAULT_MODEL)
        reason = " ".join(problem.replace("`", "").split())  # markdown shows `code` without the backticks
        _wait(lambda: reason in _text(d, "model-note"), 30, "the model's reason")
        d.find_element(By.ID, "restore-btn").click()
        _wait(lambda: _text(d, "status").startswith("⚠") and reason in _text(d, "status"), 60,
              "the unavailable model's error")
    _choose(d, "model", "identity")
    _radio(d, "faces", "aligned")
    _set_number(d, "preview", 1)
    d.find_element(By.ID, "restore-btn").click()
    status = _wait(lambda: _text(d, "status").startswith("Done:") and _text(d, "status"), 120, "the "
                   "preview run")
    assert "30 frames" in status and "audio none" in status


def test_cancel_stops_and_leaves_nothing(server, browser, faces_dir):
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server)
    _upload(d, faces_dir / "lp_driving_d10.mp4")  # 448 frames at 512x512: ~30+ s here with face detection
    _wait(lambda: "448 frames" in _text(d, "input-info"), 60, "the input info")
    _choose(d, "model", "identity")
    _radio(d, "faces", "all")
    _set_number(d, "preview", 0)
    before = server.run_dirs()
    d.find_element(By.ID, "restore-btn").click()
    run = _wait(lambda: list(server.run_dirs() - before), 60, "the run folder")[0]
    # the writer's hidden temporary output exists while it runs ...
    _wait(lambda: [p for p in run.iterdir() if ".partial" in p.name], 120, "the partial output", interval=0.1)
    _wait(lambda: "frames/s" in _text(d, "status"), 60, "progress")
    d.find_element(By.ID, "cancel-btn").click()
    _wait(lambda: _text(d, "status").startswith("Cancelled"), 120, "the cancel")
    # ... and nothing is left after the cancel: no temporary file, no half video
    assert run.is_dir() and list(run.iterdir()) == []
    assert not d.execute_script("const v = document.querySelector('#result-video video'); return v && v.src")
    # the page works after a cancel: a 1-second preview of whole frames restores
    _radio(d, "faces", "aligned")
    _set_number(d, "preview", 1)
    d.find_element(By.ID, "restore-btn").click()
    status = _wait(lambda: _text(d, "status").startswith("Done:") and _text(d, "status"), 120, "the next run")
    assert "30 frames" in status


def test_gradio_client_api(server, faces_dir, own_temp_dir):
    """The docs/ui.md example: the page's functions through gradio_client."""
    from gradio_client import Client, handle_file

    from bfvr.io import probe

    c = Client(server.url, verbose=False, download_files=str(own_temp_dir / "downloads"))
    info = c.predict(handle_file(str(faces_dir / "lp_driving_d18.mp4")), api_name="/probe")
    assert "216 frames" in info and "audio aac" in info
    status, video, download, side, pair, _slider, profile, run = c.predict(
        handle_file(str(faces_dir / "lp_driving_d18.mp4")), None, "identity", "aligned", 23, 0.5, 25, 0.5, 2,
        api_name="/restore")
    assert status.startswith("Done: 15 frames"), status
    # strength applies to every model; the identity has no temporal filter, so the smoothing value is ignored
    assert run["settings"]["strength"] == 0.5 and run["settings"]["temporal filter"] == "off"
    assert probe(video).frame_count == 15 and probe(side).frame_count == 15
    assert probe(side).width > probe(video).width * 2 - 10  # input | restored
    assert run["settings"]["model"] == "identity" and run["settings"]["crf"] == 23
    assert Path(profile).stat().st_size > 0 and len(pair) == 2


def test_shutdown_removes_only_what_the_ui_made(tmp_path, faces_dir, own_temp_dir):
    _need_browser()
    from gradio_client import Client, handle_file

    temp = tmp_path / "temp"
    temp.mkdir()
    keep = temp / "not-from-the-ui.txt"
    keep.write_text("x")
    s = Server(temp, None)
    try:
        Client(s.url, verbose=False, download_files=str(own_temp_dir / "downloads")).predict(
            handle_file(str(faces_dir / "lp_driving_d18.mp4")), api_name="/probe")
        assert any(p.is_file() for p in s.root.rglob("*")), "the upload should be in the UI's folder"
    finally:
        code = s.stop(signal.SIGINT)
    assert code == 0, s.log.read_text()
    assert not s.root.exists() and keep.read_text() == "x"
    assert "Traceback" not in s.log.read_text()


def test_two_runs_of_one_session_at_once(tmp_path, faces_dir, own_temp_dir):
    """Issue 28: with --concurrency 2, the second run of a session removed the first run's folder while it
    wrote, and the first failed. Each run has its own folder; both finish."""
    _need_browser()
    from gradio_client import Client, handle_file

    from bfvr.io import probe

    temp = tmp_path / "temp"
    s = Server(temp, None, "--concurrency", "2")
    try:
        c = Client(s.url, verbose=False, download_files=str(own_temp_dir / "downloads"))  # one session
        long = c.submit(handle_file(str(faces_dir / "lp_driving_d10.mp4")), None, "identity", "all", 23, 0,
                        25, api_name="/restore")
        _wait(lambda: [p for d in s.run_dirs() for p in d.iterdir() if ".partial" in p.name], 120,
              "the first run writing", interval=0.1)
        short = c.submit(handle_file(str(faces_dir / "lp_driving_d18.mp4")), None, "identity", "aligned", 23,
                         0.5, 25, api_name="/restore")
        second = short.result(timeout=300)
        assert second[0].startswith("Done: 15 frames"), second[0]
        assert not long.done(), "the first run should still be running when the second ends"
        first = long.result(timeout=600)
        assert first[0].startswith("Done: 448 frames"), first[0]
        assert probe(first[1]).frame_count == 448 and probe(second[1]).frame_count == 15
        assert len(s.run_dirs()) == 2
    finally:
        s.stop()
    assert "Traceback" not in s.log.read_text()


@pytest.mark.parametrize("signals", [("INT",), ("INT", "INT"), ("TERM",), ("INT", "TERM")])
def test_stopping_during_a_run_removes_the_temp_folder(tmp_path, faces_dir, own_temp_dir, signals):
    """Issue 28: two Ctrl+C during a restore left the bfvr-ui-* folder (uploads, results) behind. However the
    server is stopped, its TMPDIR is empty afterwards."""
    _need_browser()
    from gradio_client import Client, handle_file

    temp = tmp_path / "tmpdir"
    temp.mkdir()
    s = Server(temp, None, tmpdir=True)
    code = None
    try:
        c = Client(s.url, verbose=False, download_files=str(own_temp_dir / "downloads"))
        c.submit(handle_file(str(faces_dir / "lp_driving_d10.mp4")), None, "identity", "all", 23, 0, 25,
                 api_name="/restore")
        _wait(lambda: [p for d in s.run_dirs() for p in d.iterdir() if ".partial" in p.name], 120,
              "the run writing", interval=0.1)
        for name in signals:
            s.proc.send_signal(getattr(signal, f"SIG{name}"))
            time.sleep(0.3)
        code = s.proc.wait(90)
    finally:
        s.stop(signal.SIGKILL)
    log = s.log.read_text()
    assert code == 0, log
    assert list(temp.iterdir()) == [], log
    assert "Traceback" not in log


def test_bad_zip_uploads_leave_no_traceback_in_the_log(server, tmp_path, own_temp_dir):
    """Issue 28: a zip with a corrupt member left a zlib traceback in the server's log; a user's bad upload
    is one sentence in the page and at most one line in the log."""
    import io
    import zipfile

    import numpy as np
    from gradio_client import Client, handle_file
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    good = tmp_path / "frames.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"{i:06d}.png", buf.getvalue())
    with zipfile.ZipFile(good) as zf:
        m = zf.getinfo("000001.png")
    start = m.header_offset + 30 + len(m.filename) + len(m.extra)
    bad = []
    for k, (at, n) in enumerate([(0, 4), (m.compress_size // 3, 64), (m.compress_size - 8, 8)]):
        data = bytearray(good.read_bytes())
        for j in range(start + at, start + at + n):
            data[j] ^= 0xFF
        bad.append(tmp_path / f"bad{k}.zip")
        bad[-1].write_bytes(bytes(data))
    bad.append(tmp_path / "cut.zip")
    bad[-1].write_bytes(good.read_bytes()[: start + m.compress_size // 2])
    before = server.log.read_text().splitlines()
    c = Client(server.url, verbose=False, download_files=str(own_temp_dir / "downloads"))
    for f in bad:
        info = c.predict(handle_file(str(f)), api_name="/probe")
        assert info.startswith(f"⚠ '{f.name}'") and "\n" not in info, info
        status = c.predict(handle_file(str(f)), None, "identity", "aligned", 23, 0, 25,
                           api_name="/restore")[0]
        assert status.startswith(f"⚠ '{f.name}'"), status
    new = server.log.read_text().splitlines()[len(before):]
    assert "Traceback" not in "\n".join(new) and len(new) <= 2 * len(bad), new


def test_help_and_missing_gradio(capsys, monkeypatch):
    assert run_cli("ui", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    for opt in ("--host", "127.0.0.1", "--port", "--max-upload-mb", "--max-seconds", "--concurrency",
                "--queue-size", "--samples"):
        assert opt in text, opt
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name,
                        *a: None if name == "gradio" else real(name, *a))
    assert run_cli("ui") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "bfvr[ui]"' in err
