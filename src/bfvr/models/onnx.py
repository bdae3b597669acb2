"""Models exported by `bfvr export --format onnx`, run in ONNX Runtime as a `ClipModel`.

`export_onnx(model, path)` traces a loaded clip model's network (fp32) and stores in the ONNX file's
metadata what the engine needs to call it: the model name, input layout (``BTCHW``: BFVR-Lite;
``BCTHW``: STC's Conv3d networks), clip length, overlap, canvas, the size multiple and the temporal filter
strength (`bfvr.engine.temporal`). `OnnxClipModel` reads those back, so `bfvr restore --backend onnxruntime
--weights model.onnx` needs nothing else.
Input ``frames`` and output ``restored`` are float32 in [0, 1]; the output is clamped to [0, 1].
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bfvr.engine.base import contract_of
from bfvr.engine.temporal import check_sigma
from bfvr.errors import ConfigError, DependencyError, ModelError

LAYOUTS = ("BTCHW", "BCTHW")


def export_onnx(model: Any, path: str | os.PathLike[str], *, frames: int | None = None,
                size: int | None = None, opset: int = 18) -> Path:
    """Export clip model `model` (its ``onnx_module()``: network, layout, axes that may vary) to `path`.

    `frames`/`size` shape the example input (default: the model's clip length and canvas). Axes that the
    network allows to vary (Lite: T, H, W) stay dynamic in the graph.
    """
    try:
        import onnx
    except ImportError:
        raise DependencyError("ONNX export needs the onnx package: pip install 'bfvr[onnx]'.") from None

    net, layout, dynamic = model.onnx_module()
    t = frames or model.clip_len or 24
    side = size or (model.canvas[0] if model.canvas else 512)
    if "T" not in dynamic and model.clip_len is not None and t <= model.overlap:
        raise ModelError(f"--frames {t} must exceed the model's overlap of {model.overlap} frames.")
    shape = (1, t, 3, side, side) if layout == "BTCHW" else (1, 3, t, side, side)
    axis = {"T": layout.index("T"), "H": 3, "W": 4}
    dims = {axis[a]: a for a in dynamic}
    dynamic_t = "T" in dynamic
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer/constant-folding notes
        torch.onnx.export(net.float().eval(), (torch.rand(shape),), str(path), input_names=["frames"],
                          output_names=["restored"], dynamic_axes={"frames": dims, "restored": dims},
                          opset_version=opset, dynamo=False)
    meta = {"model": model.name, "layout": layout, "clip_len": None if dynamic_t else t,
            "default_clip_len": model.clip_len, "overlap": model.overlap,
            "multiple": getattr(model, "multiple", 1), "dynamic": dynamic,
            "temporal_filter": contract_of(model).temporal_filter,
            # a graph with fixed H, W only takes the size it was traced at
            "canvas": [side, side] if "H" not in dynamic else list(model.canvas) if model.canvas else None}
    m = onnx.load(str(path))
    entry = m.metadata_props.add()
    entry.key, entry.value = "bfvr", json.dumps(meta)
    onnx.save(m, str(path))
    return path


def _check_meta(path: str | os.PathLike[str], raw: str, session: Any) -> dict[str, Any]:
    """The bfvr metadata of an ONNX file, checked against what `export_onnx` writes and against the graph's
    input and output; `ModelError` in one sentence when it is not such a file."""

    def bad(why: str) -> ModelError:
        return ModelError(f"{path} is not a usable `bfvr export` file ({why}); export the model again with "
                          "`bfvr export --format onnx`.")

    try:
        meta = json.loads(raw)
    except ValueError:
        raise bad("its bfvr metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise bad("its bfvr metadata is not a JSON object")
    missing = [k for k in ("model", "layout", "overlap") if k not in meta]
    if missing:
        raise bad(f"its bfvr metadata lacks {', '.join(missing)}")

    def count(key: str, low: int, none: bool = True) -> None:
        v = meta.get(key)
        if (v is None and none) or (isinstance(v, int) and not isinstance(v, bool) and v >= low):
            return
        raise bad(f"{key} is {v!r}, not a whole number of at least {low}")

    if not isinstance(meta["model"], str):
        raise bad(f"model is {meta['model']!r}, not a model name")
    if meta["layout"] not in LAYOUTS:
        raise bad(f"layout is {meta['layout']!r}, not one of {', '.join(LAYOUTS)}")
    count("overlap", 0, none=False)
    for key in ("clip_len", "default_clip_len", "multiple"):
        count(key, 1)
    canvas = meta.get("canvas")
    if canvas is not None and not (isinstance(canvas, list) and len(canvas) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in canvas)):
        raise bad(f"canvas is {canvas!r}, not [height, width]")
    if not isinstance(meta.get("dynamic", ""), str):
        raise bad(f"dynamic is {meta['dynamic']!r}, not a string of axes")
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != ["frames"] or len(outputs) < 1:
        raise bad(f"its graph takes {', '.join(repr(i.name) for i in inputs) or 'no input'} instead of "
                  "one input 'frames'")
    shape = inputs[0].shape
    channels = shape[meta["layout"].index("C")] if isinstance(shape, list) and len(shape) == 5 else None
    if channels != 3:  # every export fixes the colour axis at 3
        raise bad(f"its input 'frames' is shaped {shape}, which is not {meta['layout']} with 3 colour "
                  "channels")
    return meta


class OnnxClipModel:
    """A `bfvr export` ONNX file as a `ClipModel` (CPU execution provider)."""

    precision = "fp32"
    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str] | None, *, expect: str | None = None,
                 clip_len: int | None = None, overlap: int | None = None, threads: int | None = None,
                 temporal_filter: float | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise DependencyError("the onnxruntime backend needs ONNX Runtime: pip install "
                                  "'bfvr[onnx]'.") from None
        if path is None or not Path(path).is_file():
            raise ModelError(f"the ONNX file {path} does not exist; make one with `bfvr "
                             "export --format onnx -o model.onnx` and pass it with --weights.")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            why = " ".join(str(e).split())[:200]
            raise ModelError(f"{path} is not a loadable ONNX model ({why}).") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get("bfvr")
        if raw is None:
            raise ModelError(f"{path} was not written by `bfvr export` (no bfvr metadata); export the model "
                             "with `bfvr export --format onnx`.")
        meta = _check_meta(path, raw, self.session)
        if expect is not None and meta["model"] != expect:
            raise ModelError(f"{path} is an export of '{meta['model']}', not '{expect}'; pass --model "
                             f"{meta['model']} or the right file.")
        self.name = meta["model"]
        self.layout = meta["layout"]
        fixed = meta.get("clip_len")
        if fixed is not None and clip_len not in (None, fixed):
            raise ModelError(f"{path} was exported for clips of {fixed} frames; drop "
                             f"--clip-len or export again with --frames {clip_len}.")
        self.clip_len = fixed or clip_len or meta.get("default_clip_len")
        self.overlap = meta["overlap"] if overlap is None else overlap
        if self.clip_len is not None and not 0 <= self.overlap < self.clip_len:
            raise ModelError(f"overlap must be between 0 and clip_len-1 = {self.clip_len - 1} frames, "
                             f"got {self.overlap}.")
        self.canvas = tuple(meta["canvas"]) if meta.get("canvas") else None
        self.multiple = int(meta.get("multiple") or 1)
        #: axes the graph leaves free ("THW" for BFVR-Lite): a graph with free H, W takes any frame size
        self.dynamic = str(meta.get("dynamic", ""))
        #: any frame size and clip length (T, H, W dynamic): whole frames too (the background pass)
        self.whole_frames = all(a in self.dynamic for a in "THW")
        #: a dynamic clip length: a stream shorter than `clip_len` goes through unpadded (as in torch)
        self.short_clips = "T" in self.dynamic
        self.device = torch.device("cpu")
        #: the exported model's temporal filter (the engine applies it), unless `temporal_filter` is given
        if temporal_filter is None:  # files exported before the filter existed carry none: no filter
            try:
                temporal_filter = check_sigma(meta.get("temporal_filter", 0.0))
            except ConfigError as e:
                raise ModelError(f"{path} is not a usable bfvr export: its bfvr metadata has a bad temporal "
                                 f"filter ({e})") from None
        self.temporal_filter = check_sigma(temporal_filter)

    def __repr__(self) -> str:
        return (f"OnnxClipModel(name={self.name!r}, layout={self.layout}, clip_len={self.clip_len}, "
                f"overlap={self.overlap}, canvas={self.canvas})")

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """Restore `clip` [T, 3, H, W] in [0, 1]; return [T, 3, H, W] float32 in [0, 1]."""
        if clip.dim() != 4 or clip.shape[1] != 3:
            raise ModelError(f"{self.name} restores clips shaped [T, 3, H, W]; got {list(clip.shape)}.")
        t, _, h, w = clip.shape
        if "T" not in self.dynamic and self.clip_len is not None and t != self.clip_len:
            raise ModelError(f"{self.name}'s ONNX graph takes clips of exactly {self.clip_len} "
                             f"frames, got {t}; drop --clip-len or export again with --frames.")
        if self.canvas is not None and "H" not in self.dynamic and (h, w) != self.canvas:
            raise ModelError(f"{self.name} needs {self.canvas[0]}x{self.canvas[1]} frames; got {h}x{w}.")
        x = clip.detach().cpu().float()
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = x.unsqueeze(0) if self.layout == "BTCHW" else x.permute(1, 0, 2, 3).unsqueeze(0)
        (y,) = self.session.run(None, {"frames": np.ascontiguousarray(x.numpy())})
        out = torch.from_numpy(np.asarray(y))[0]
        if self.layout == "BCTHW":
            out = out.permute(1, 0, 2, 3)
        return out[:, :, :h, :w].clamp(0.0, 1.0).contiguous()
