"""The Gradio page of `bfvr ui` and the server loop around it (see docs/ui.md).

API endpoints (Gradio client): ``/probe`` (file -> what the reader sees), ``/restore`` (file, sample,
model, faces, crf, preview seconds, frame rate of zipped frames, and optionally strength and temporal
smoothing -> status, restored video, download, side-by-side video, before/after frames, frame slider,
temporal profile, settings and timings) and ``/cancel``.
"""

# no `from __future__ import annotations`: Gradio finds `request: gr.Request` by its evaluated annotation
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bfvr.errors import BfvrError, ConfigError, InputError
from bfvr.ui.core import (
    FACE_CHOICES,
    UPLOAD_SUFFIXES,
    Limits,
    RestoreJob,
    RestorerCache,
    Settings,
    Workspace,
    default_model,
    describe,
    find_samples,
    model_table,
    one_line,
    open_source,
    read_frame,
)

log = logging.getLogger(__name__)

FACE_HELP = ("largest: restore the biggest face · all: every face · aligned: the video is already a face "
             "crop (e.g. 512×512), restore whole frames without face detection")


@dataclass
class UIConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    limits: Limits = Limits()
    concurrency: int = 1
    queue_size: int = 16
    samples: Path | None = None
    temp_dir: Path | None = None
    device: str = "auto"
    open_browser: bool = False


class _Sessions:
    """Per-browser-session state the handlers share: the running job and a cancel that came early."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: the session's running jobs (two with --concurrency 2: each has its own folders)
        self.jobs: dict[str, list[RestoreJob]] = {}
        self.cancel_pending: set[str] = set()

    def all_jobs(self) -> list[RestoreJob]:
        with self.lock:
            return [j for jobs in self.jobs.values() for j in jobs]

    def session_jobs(self, sid: str) -> list[RestoreJob]:
        with self.lock:
            return list(self.jobs.get(sid, ()))


def _sid(request: Any) -> str:
    return str(getattr(request, "session_hash", None) or "anonymous")


def build_app(cfg: UIConfig, ws: Workspace) -> tuple[Any, _Sessions]:
    """The page (a `gr.Blocks`) and its session registry."""
    import gradio as gr

    limits = cfg.limits
    samples = {p.name: p for p in find_samples(cfg.samples)}
    restorers = RestorerCache(cfg.device)
    sessions = _Sessions()
    models = model_table()
    choice_default = default_model()

    def model_label(name: str, description: str, problem: str | None) -> str:
        return f"{name} — {description}" + (" (unavailable here)" if problem else "")

    def model_note(name: str) -> str:
        for n, _, problem in models:
            if n == name and problem:
                return f"⚠ **{n}** is unavailable: {problem}."
        return ""

    from bfvr.api import DEFAULT_MODEL

    unavailable = [n for n, _, p in models if p]
    models_md = (f"Unavailable here (no weights on this machine): {', '.join(unavailable)}; "
                 "`bfvr models download NAME` fetches them." if unavailable else "")
    if choice_default != DEFAULT_MODEL:
        models_md = (f"The default model **{DEFAULT_MODEL}** cannot run here, so **{choice_default}** is "
                     "selected. " + models_md)

    # ------------------------------------------------------------------ handlers
    def _source(file: str | None, sample: str | None, frames_fps: float | None, sid: str, work_kind: str,
                hold: list[Path] | None = None):
        """The checked input; an upload's folder is released after the probe unless `hold` (a run's list
        of folders it releases when it ends) is given."""
        if file:
            work = ws.new_dir(sid, work_kind)
            try:
                ws.drop_old(sid, work_kind, keep=work)
                return open_source(file, work, limits, frames_fps=frames_fps)
            finally:
                if hold is None:
                    ws.release(work)
                else:
                    hold.append(work)
        if sample:
            path = samples.get(sample)
            if path is None:  # only the listed sample files, never an arbitrary server path
                raise InputError(f"'{sample}' is not one of the sample clips; pick one from the list.")
            return open_source(path, None, limits, check_size=False)
        raise InputError("upload a video, GIF or zip of frames, or pick a sample clip first.")

    def probe_input(file: str | None, sample: str | None, frames_fps: float | None, request: gr.Request):
        """What the reader sees (size, fps, frames, duration, audio) and the first frame."""
        if not file and not sample:
            return "", None
        try:
            src = _source(file, sample, frames_fps, _sid(request), "upload")
            first = read_frame(src.path, 0, src.fps)
        except Exception as e:  # noqa: BLE001 - one line in the page (a bug says "internal error"), no traceback
            return f"⚠ {one_line(e)}", None
        text = f"**{src.name}**: {describe(src.info)}"
        if src.info.duration > limits.max_seconds:
            text += (f"  \n⚠ longer than this page's limit of {limits.max_seconds:g} "
                     f"s: set a preview of at most {limits.max_seconds:g} s.")
        elif src.info.width * src.info.height * src.info.frame_count / 1e6 > limits.max_megapixels:
            text += (f"  \n⚠ more pixels than this page's limit of {limits.max_megapixels:g} megapixels "
                     "in one run: set a preview.")
        return text, first

    def on_upload(file, frames_fps, request: gr.Request):
        info, first = probe_input(file, None, frames_fps, request)
        return info, first, gr.update(value=None)

    def on_sample(sample, frames_fps, request: gr.Request):
        info, first = probe_input(None, sample, frames_fps, request)
        return info, first, gr.update(value=None)

    def api_probe(file: str, request: gr.Request) -> str:
        info, _ = probe_input(file, None, None, request)
        return info

    n_out = 9

    def restore(file, sample, model, faces, crf, preview_seconds, frames_fps, strength=1.0, smoothing=None,
                request: gr.Request = None, progress=gr.Progress()):
        """Restore the upload (or sample) and build the side-by-side video, frames and profile."""
        sid = _sid(request)
        empty = ["", None, None, None, None, gr.update(), None, None, None]
        with sessions.lock:
            if sid in sessions.cancel_pending:  # cancel pressed while this run waited in the queue
                sessions.cancel_pending.discard(sid)
                yield ["Cancelled before it started; nothing was written.", *empty[1:]]
                return
        held: list[Path] = []  # this run's folders: no other run of the session removes them meanwhile
        try:
            src = _source(file, sample, frames_fps, sid, "upload", hold=held)
            settings = Settings(model=model or choice_default, faces=faces or "largest", crf=float(crf),
                                preview_seconds=float(preview_seconds or 0),
                                frames_fps=float(frames_fps) if frames_fps else None,
                                strength=1.0 if strength is None else float(strength),
                                temporal_filter=None if smoothing is None else float(smoothing))
        except Exception as e:  # noqa: BLE001 - one line in the page, no traceback
            for d in held:
                ws.release(d)
            yield [f"⚠ {one_line(e)}", *empty[1:]]
            return
        out_dir = ws.new_dir(sid, "run")
        held.append(out_dir)
        ws.drop_old(sid, "run", keep=out_dir)
        job = RestoreJob(src, settings, out_dir, restorers, limits)
        with sessions.lock:
            sessions.jobs.setdefault(sid, []).append(job)
        job.start()
        try:
            yield ["Starting …", *empty[1:]]
            while job.running:
                text = job.progress_text()
                if job.total and job.stage in ("restoring", "side-by-side"):
                    progress((job.done, job.total), desc=text, unit="frames")
                else:
                    progress(None, desc=text)
                yield [text, *[gr.skip()] * (n_out - 1)]
                job.join(0.4)
        finally:
            if job.running:  # the page went away (Gradio closed the generator): stop the work too
                job.cancel()
                job.join(60)
            with sessions.lock:
                jobs = sessions.jobs.get(sid, [])
                if job in jobs:
                    jobs.remove(job)
                if not jobs:
                    sessions.jobs.pop(sid, None)
            if not job.running:
                for d in held:
                    ws.release(d)
        if job.cancelled:
            yield ["Cancelled; nothing was written.", *empty[1:]]
            return
        if job.error is not None or job.result is None:
            yield [f"⚠ {job.error or 'the run stopped without a result.'}", *empty[1:]]
            return
        r = job.result
        t = r.timings
        status = (f"Done: {r.frames} frames restored in {t['restore s']:.1f} s ({t['restore frames/s']:.1f} "
                  f"frames/s), audio {'copied' if r.audio else 'none'}; total {t['total s']:.1f} s.")
        mid = r.frames // 2
        try:
            pair = (read_frame(src.path, mid, src.fps), read_frame(r.restored, mid))
        except BfvrError:
            pair = None
        state = {"input": str(src.path), "fps": src.fps, "restored": str(r.restored), "frames": r.frames}
        yield [status, str(r.restored), str(r.restored), str(r.side_by_side), pair,
               gr.update(maximum=max(r.frames - 1, 1), value=mid, interactive=r.frames > 1),
               str(r.profile), {"settings": r.settings, "timings": t}, state]

    def cancel(request: gr.Request) -> str:
        sid = _sid(request)
        with sessions.lock:
            jobs = list(sessions.jobs.get(sid, ()))
            if not jobs:
                sessions.cancel_pending.add(sid)
        if not jobs:
            return "Cancelling (the run has not started yet) …"
        for job in jobs:
            job.cancel()
        return "Cancelling … (stops after the frame or model clip being computed)"

    def show_frame(index, state):
        if not state:
            return None
        try:
            i = int(index)
            return (read_frame(Path(state["input"]), i, state["fps"]), read_frame(Path(state["restored"]), i))
        except BfvrError:
            return None

    def on_unload(request: gr.Request) -> None:
        sid = _sid(request)
        jobs = sessions.session_jobs(sid)
        for job in jobs:
            job.cancel()
        for job in jobs:
            job.join(60)
        ws.drop_session(sid)

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="bfvr — face video restoration", delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown("# bfvr — restore a face video\nUpload a video (or pick a sample), choose the settings, "
                    "press **Restore**. Uploads and results stay on the machine running `bfvr ui`.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                gr.Markdown("### 1. Input")
                upload = gr.File(label=f"Upload a video, GIF or zip of PNG/JPG frames (up to "
                                       f"{limits.max_upload_mb:g} MB, {limits.max_seconds:g} s)",
                                 file_types=list(UPLOAD_SUFFIXES), type="filepath", elem_id="upload",
                                 height=170)
                sample = gr.Dropdown(choices=list(samples), value=None, label="…or pick a sample clip",
                                     info=f"files in {cfg.samples}" if samples else
                                     "none: start bfvr ui with --samples DIR", interactive=bool(samples),
                                     elem_id="sample")
                frames_fps = gr.Number(value=25, minimum=1, maximum=240, label="Frame rate of zipped frames",
                                       info="only for a zip of images; videos and GIFs keep their own",
                                       elem_id="frames-fps")
                input_info = gr.Markdown("", elem_id="input-info")
                first_frame = gr.Image(label="First frame", interactive=False, height=240,
                                       elem_id="first-frame", buttons=[])
            with gr.Column(scale=1, min_width=320):
                gr.Markdown("### 2. Choices")
                model = gr.Dropdown(choices=[(model_label(*m), m[0]) for m in models], value=choice_default,
                                    label="Model", info="what restores the faces; unavailable ones say why",
                                    elem_id="model")
                model_md = gr.Markdown(model_note(choice_default) or models_md, elem_id="model-note")
                faces = gr.Radio(choices=list(FACE_CHOICES), value="largest", label="Faces", info=FACE_HELP,
                                 elem_id="faces")
                crf = gr.Slider(0, 51, value=18, step=1, label="Quality (x264 CRF)",
                                info="lower = better and larger file; 10–18 keeps detail", elem_id="crf")
                preview = gr.Number(value=0, minimum=0, label="Preview: restore only the first N seconds",
                                    info="0 = the whole video; a preview leaves the audio out",
                                    elem_id="preview")
                strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength",
                                     info="1 = the model's output; lower blends the input back in "
                                          "(bfvr restore --strength)", elem_id="strength")
                default_tf = restorers.default_temporal_filter(choice_default)
                smoothing = gr.Slider(0, 4, value=default_tf or 0, step=0.25, label="Temporal smoothing",
                                      info="damps flicker where the picture stands still, in 8-bit levels; "
                                           "0 = off (bfvr restore --temporal-filter)",
                                      visible=default_tf is not None, elem_id="smoothing")
                # (inpainting: DicFace's mask drawn on the first frame goes here once bfvr has DicFace)
                with gr.Row():
                    run_btn = gr.Button("Restore", variant="primary", elem_id="restore-btn")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                status = gr.Markdown("", elem_id="status")
        gr.Markdown("### 3. Result")
        with gr.Row(equal_height=False):
            with gr.Column():
                result_video = gr.Video(label="Restored video (with its audio)", interactive=False,
                                        height=380, elem_id="result-video", buttons=["download"])
                download = gr.File(label="Download the restored video", interactive=False, elem_id="download",
                                   height=110)
            with gr.Column():
                side_video = gr.Video(label="Side by side: input | restored", interactive=False, height=380,
                                      elem_id="side-video", buttons=["download"])
        with gr.Row(equal_height=False):
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after (drag the handle)", interactive=False,
                                        elem_id="before-after", type="numpy", max_height=420)
                frame_idx = gr.Slider(0, 1, value=0, step=1, label="Frame shown before / after",
                                      interactive=False, elem_id="frame-index")
            with gr.Column():
                profile = gr.Image(label="Temporal profile (middle pixel column over time): input | restored",
                                   interactive=False, elem_id="profile", type="filepath", height=420)
        run_info = gr.JSON(label="Settings and timings of the run", elem_id="run-info")
        run_state = gr.State(None)

        upload.upload(on_upload, [upload, frames_fps], [input_info, first_frame, sample],
                      api_visibility="private", concurrency_limit=None)
        upload.clear(lambda: ("", None), None, [input_info, first_frame], api_visibility="private",
                     concurrency_limit=None)
        sample.input(on_sample, [sample, frames_fps], [input_info, first_frame, upload],
                     api_visibility="private", concurrency_limit=None)
        def on_model(m: str):
            tf = restorers.default_temporal_filter(m)
            return model_note(m) or models_md, (gr.update(visible=False) if tf is None
                                                else gr.update(visible=True, value=tf))

        model.change(on_model, model, [model_md, smoothing], api_visibility="private", concurrency_limit=None)
        run_btn.click(restore, [upload, sample, model, faces, crf, preview, frames_fps, strength, smoothing],
                      [status, result_video, download, side_video, slider, frame_idx, profile, run_info,
                       run_state],
                      api_name="restore", concurrency_limit=cfg.concurrency, concurrency_id="restore",
                      show_progress_on=[result_video])
        cancel_btn.click(cancel, None, status, api_name="cancel", concurrency_limit=None,
                         show_progress="hidden")
        frame_idx.release(show_frame, [frame_idx, run_state], slider, api_visibility="private",
                          concurrency_limit=None)
        # the client API: what the reader sees of a file (the page itself calls on_upload)
        api_text = gr.Textbox(visible=False)
        api_file = gr.File(visible=False)
        api_btn = gr.Button(visible=False)
        api_btn.click(api_probe, api_file, api_text, api_name="probe", concurrency_limit=None)
        demo.unload(on_unload)
    return demo, sessions


def serve(cfg: UIConfig) -> None:
    """Start the page and block until Ctrl+C / SIGTERM; then stop runs and remove the UI's temp folder."""
    ws = Workspace(cfg.temp_dir)
    log.info("UI working folder: %s", ws.root)
    # Gradio's upload/result cache goes inside the UI's own folder (read when gradio is imported)
    os.environ["GRADIO_TEMP_DIR"] = str(ws.gradio_dir)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    hurry = threading.Event()  # a second signal: stop waiting for the runs

    def _term(*_: object) -> None:
        # the first signal ends the serving loop; a later one only sets `hurry` (raising again could land
        # between the loop's end and the cleanup and skip it)
        if hurry.is_set() or getattr(_term, "fired", False):
            hurry.set()
            return
        _term.fired = True  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    demo = sessions = None
    stopped = False
    try:
        # SIGTERM and SIGINT (also when started in the background, where SIGINT is ignored) stop the page
        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGINT, _term)
        import gradio as gr

        demo, sessions = build_app(cfg, ws)
        demo.queue(max_size=cfg.queue_size)
        theme = gr.themes.Default(font=["system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial",
                                        "sans-serif"],
                                  font_mono=["ui-monospace", "Consolas", "monospace"])
        try:
            demo.launch(server_name=cfg.host, server_port=cfg.port, prevent_thread_lock=True, quiet=True,
                        inbrowser=cfg.open_browser, show_error=False, ssr_mode=False,
                        max_file_size=int(cfg.limits.max_upload_mb * 2**20), theme=theme,
                        footer_links=["api"])
        except OSError as e:
            raise ConfigError(f"cannot serve on {cfg.host}:{cfg.port} "
                              f"({' '.join(str(e).split())[:160]}); pass another --port.") from None
        url = f"http://{cfg.host}:{cfg.port}/"
        print(f"bfvr ui: open {url} (temporary files in {ws.root}; Ctrl+C stops and removes them)",
              flush=True)
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        stopped = True
    finally:
        _shutdown(demo, sessions, ws, old, hurry)
    if stopped:
        # stopped by a signal and cleaned up: leave at once. Through the interpreter's shutdown, native
        # threads still running (a run cut short by a second Ctrl+C, the server's workers) were torn down
        # under their owners and the process aborted now and then ("terminate called without an active
        # exception", exit -6; CI saw it on 1 of 6 double Ctrl+C)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _shutdown(demo: Any, sessions: "_Sessions | None", ws: Workspace, old: dict,
              hurry: threading.Event | None = None) -> None:
    """Stop the runs and the server, remove the UI's folder. A second Ctrl+C (or SIGTERM; serve's handler
    sets `hurry`) only cuts the wait for the runs short: the folder is removed however the server is
    stopped."""
    hurry = hurry or threading.Event()
    jobs = sessions.all_jobs() if sessions is not None else []
    for job in jobs:
        job.cancel()
    deadline = time.monotonic() + 30
    for job in jobs:
        while not hurry.is_set() and time.monotonic() < deadline and not job.join(0.1):
            pass
    if hurry.is_set():
        print("bfvr ui: stopping now; removing the temporary files", flush=True)
    # the rest cannot be interrupted: it is short, and an interrupted cleanup left the folder behind
    for sig in old:
        signal.signal(sig, signal.SIG_IGN)
    try:
        for job in jobs:  # a cancelled run stops after its current frame and removes its temporary file
            job.join(5)
        if demo is not None:
            try:
                demo.close()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        ws.cleanup()
        print(f"bfvr ui: stopped; removed {ws.root}", flush=True)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)

