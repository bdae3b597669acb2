"""ONNX export (`bfvr.models.onnx`) of the STC clip model and the ONNX Runtime `ClipModel` around it."""

from __future__ import annotations

import pytest
import torch

from bfvr.errors import ModelError

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed (pip install 'bfvr[onnx]')")


def _small_stc_clip_model():
    from bfvr.models.stc import STCStage2
    from bfvr.models.stc.clip import STCClipModel

    torch.manual_seed(0)
    net = STCStage2(nf=32, ch_mult=(1, 1, 1, 1), res_blocks=1, dim_embd=64, codebook_size=64, connect_list=(),
                    latent_hw=(8, 8))
    return STCClipModel(net, name="stc", clip_len=4, overlap=1, canvas=(64, 64), precision="fp32")


@pytest.mark.slow  # 6 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_stc_exports_and_matches_pytorch(tmp_path) -> None:
    from bfvr.models.onnx import OnnxClipModel, export_onnx

    m = _small_stc_clip_model()
    path = export_onnx(m, tmp_path / "stc.onnx")
    o = OnnxClipModel(path, expect="stc")
    assert (o.clip_len, o.overlap, o.canvas, o.layout) == (4, 1, (64, 64), "BCTHW")
    clip = torch.rand(4, 3, 64, 64)
    assert (o.restore_clip(clip) - m.restore_clip(clip)).abs().max() <= 1e-3
    with pytest.raises(ModelError, match="exported for clips of 4 frames"):
        OnnxClipModel(path, clip_len=8)
    with pytest.raises(ModelError, match="needs 64x64"):
        o.restore_clip(torch.rand(4, 3, 32, 32))


def test_a_foreign_or_missing_onnx_file_is_a_clear_error(tmp_path) -> None:
    import onnx
    from onnx import helper

    from bfvr.models.onnx import OnnxClipModel

    with pytest.raises(ModelError, match="does not exist"):
        OnnxClipModel(tmp_path / "missing.onnx")
    bad = tmp_path / "text.onnx"
    bad.write_text("not a model")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxClipModel(bad)
    x = helper.make_tensor_value_info("frames", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("restored", onnx.TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Identity", ["frames"], ["restored"])], "g", [x], [y])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(foreign))
    with pytest.raises(ModelError, match="not written by `bfvr export`"):
        OnnxClipModel(foreign)
