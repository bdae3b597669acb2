"""Degradation operators and recipes on clips synthesised here (no shared data needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bfvr.degrade import Degradation, clip_rng, recipe
from bfvr.degrade.codec import x264_roundtrip
from bfvr.degrade.ops import Blur, BrightnessFlicker, BrushMask, Codec, Downscale, Noise, Upscale
from bfvr.errors import ConfigError
from bfvr.io.synth import pattern_frame

RANDOM_RECIPES = ["stc", "stc-nonoise", "stc-paper", "stc-paper-nonoise", "keep", "flicker-brightness",
                  "flicker-pixel", "inpaint", "bfvr", "bfvr-hard"]


def clip(n: int = 12, w: int = 96, h: int = 80) -> np.ndarray:
    """A textured moving clip: the io pattern plus fixed fine texture (so blur and codec have work)."""
    import cv2

    tex = cv2.GaussianBlur(np.random.default_rng(123).normal(0, 12, (h, w, 3)), (0, 0), 0.8)
    return np.stack([np.clip(pattern_frame(i, w, h) + tex, 0, 255).astype(np.uint8) for i in range(n)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.mark.parametrize("name", RANDOM_RECIPES + ["gray"])
def test_same_seed_same_bytes_different_seed_differs(name: str) -> None:
    x = clip()
    deg = recipe(name)
    a, pa = deg(x, clip_rng(7, "clipA"))
    b, pb = deg(x, clip_rng(7, "clipA"))
    assert a.shape == x.shape and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    assert pa == pb
    json.dumps(pa)  # the sidecar is JSON
    if name != "gray":  # gray has nothing random
        c, pc = deg(x, clip_rng(8, "clipA"))
        d, _ = deg(x, clip_rng(7, "clipB"))
        assert c.tobytes() != a.tobytes() and pc != pa
        assert d.tobytes() != a.tobytes()


def test_one_draw_per_clip_every_frame_gets_the_same_parameters() -> None:
    """Degrading frame i alone with the clip's parameters gives exactly frame i of the whole clip, so
    every frame had the same blur / scale / noise level (noise realisation is keyed by frame index)."""
    x = clip(10)
    deg = Degradation(recipe("stc").ops[:-1], "stc-before-codec")
    params = deg.draw(clip_rng(1, "c"), x.shape[2], x.shape[1])
    whole = deg.apply(x, params)
    for i in range(len(x)):
        single = [f for _, f in _chain(deg, params, x[i:i + 1], start=i)]
        assert np.array_equal(np.clip(np.rint(single[0]), 0, 255).astype(np.uint8)[0], whole[i])
    ops = {o["op"]: o for o in params["ops"]}
    # one value per clip for each parameter, in range
    assert 2 <= ops["blur"]["sigma_x"] <= 5 and ops["blur"]["sigma_x"] == ops["blur"]["sigma_y"]
    assert 2 <= ops["downscale"]["scale"] <= 4
    assert 0 <= ops["noise"]["sigma"] <= 5


def _chain(deg, params, frames, start):
    it = iter([(start, frames.astype(np.float32))])
    for op, p in zip(deg.ops, params["ops"]):
        it = op.stream(it, p)
    return it


def test_static_clip_stays_static_without_noise() -> None:
    x = np.repeat(clip(1), 8, axis=0)
    deg = Degradation([Blur(), Downscale(), Upscale()], "bd")
    y, _ = deg(x, 3)
    assert all(np.array_equal(y[0], y[i]) for i in range(len(y)))
    assert not np.array_equal(y[0], x[0])


def test_streaming_in_chunks_equals_whole_clip_including_codec() -> None:
    x = clip(20)
    deg = recipe("stc")
    params = deg.draw(clip_rng(0, "s"), x.shape[2], x.shape[1])
    whole = deg.apply(x, params)
    chunks = np.concatenate(list(deg.stream([x[:3], x[3:11], x[11:]], params)))
    assert chunks.tobytes() == whole.tobytes()


def test_mid_range_takes_the_middle_of_every_range() -> None:
    p = recipe("stc").draw(clip_rng(0, "m"), 512, 512, mid=True)
    ops = {o["op"]: o for o in p["ops"]}
    assert ops["blur"]["sigma_x"] == 3.5 and ops["blur"]["size"] == 11
    assert ops["downscale"]["scale"] == 3.0 and ops["downscale"]["size"] == [171, 171]
    assert ops["noise"]["sigma"] == 2.5
    assert ops["codec"]["crf"] == 21


def test_stc_draws_cover_the_paper_ranges() -> None:
    deg = recipe("stc")
    draws = [{o["op"]: o for o in deg.draw(clip_rng(s, "r"), 64, 64)["ops"]} for s in range(200)]
    sig = [d["blur"]["sigma_x"] for d in draws]
    sc = [d["downscale"]["scale"] for d in draws]
    crf = {d["codec"]["crf"] for d in draws}
    assert 2 <= min(sig) < 2.3 and 4.7 < max(sig) <= 5
    assert 2 <= min(sc) < 2.3 and 3.7 < max(sc) <= 4
    assert crf == set(range(18, 25))  # randint(18, 25), as the official code


def test_keep_recipe_shapes_and_interpolation_reuse() -> None:
    x = clip(6, 100, 84)
    deg = recipe("keep")
    for s in range(6):
        y, p = deg(x, clip_rng(s, "k"))
        ops = {o["op"]: o for o in p["ops"]}
        w, h = ops["downscale"]["size"]
        assert w % 2 == 0 and h % 2 == 0 and w == 26 and h == 22  # 100/4 = 25 -> 26, 84/4 = 21 -> 22
        assert ops["upscale"]["interp"] == ops["downscale"]["interp"]
        assert ops["blur"]["size"] == 21 and 0.1 <= ops["blur"]["sigma_x"] <= 10
        assert 18 <= ops["codec"]["crf"] <= 24
        assert y.shape == x.shape


def test_brightness_flicker_changes_about_30_percent_and_leaves_the_rest_bit_identical() -> None:
    n = 300
    x = np.repeat(clip(1, 48, 40), n, axis=0)
    x = x + np.arange(n, dtype=np.uint8)[:, None, None, None] % 3  # frames differ slightly
    y, p = recipe("flicker-brightness")(x, clip_rng(5, "f"))
    lum = lambda a: (a.astype(np.float64) @ [0.299, 0.587, 0.114]).mean(axis=(1, 2))  # noqa: E731
    changed = np.abs(lum(y) - lum(x)) > 1e-9
    untouched = np.array([np.array_equal(y[i], x[i]) for i in range(n)])
    assert np.array_equal(changed, ~untouched)
    assert 0.22 < changed.mean() < 0.38  # p = 0.3; binomial sd at n=300 is 0.026
    flick = dict((i, a) for i, a in p["ops"][0]["flickered"])
    assert set(flick) == set(np.flatnonzero(changed).tolist())
    for i, a in flick.items():
        assert 0.5 <= a <= 1.5
        expect = np.clip(np.rint(x[i].astype(np.float64) * a), 0, 255)
        assert np.abs(y[i].astype(np.float64) - expect).max() <= 1  # convertScaleAbs rounding


def test_pixel_flicker_changes_every_frame_independently() -> None:
    x = np.repeat(clip(1), 6, axis=0)  # a static clip: any frame-to-frame change is flicker
    y, p = recipe("flicker-pixel")(x, clip_rng(2, "p"))
    diffs = [np.abs(y[i].astype(int) - y[i + 1].astype(int)).mean() for i in range(5)]
    assert min(diffs) > 0.5
    assert min(psnr(y[i], x[i]) for i in range(6)) > 22  # a perturbation, not a different picture


def test_inpaint_mask_is_the_same_on_every_frame() -> None:
    x = clip(5, 128, 128)
    deg = recipe("inpaint")
    for s in range(5):
        y, p = deg(x, clip_rng(s, "i"))
        op = p["ops"][0]
        assert 1 <= len(op["strokes"]) <= 3
        for st in op["strokes"]:
            assert 8 <= len(st["vertices"]) <= 28
            assert round(30 * 128 / 512) <= st["width"] <= round(70 * 128 / 512)
        m = BrushMask.mask(op) > 0
        assert 0.01 < m.mean() < 0.9
        assert (y[:, m] == 255).all()
        assert np.array_equal(y[:, ~m], x[:, ~m])


def test_gray_is_gray() -> None:
    y, _ = recipe("gray")(clip(3), 0)
    assert np.array_equal(y[..., 0], y[..., 1]) and np.array_equal(y[..., 1], y[..., 2])


def test_noise_level_matches_sigma() -> None:
    x = np.full((4, 64, 64, 3), 128, np.uint8)
    y, p = Degradation([Noise(sigma=(8.0, 8.0))])(x, 0)
    assert abs((y.astype(float) - 128).std() - 8.0) < 0.3
    g, _ = Degradation([Noise(sigma=(8.0, 8.0), gray_prob=1.0)])(x, 0)
    assert np.array_equal(g[..., 0], g[..., 2])


@pytest.mark.parametrize("size", [(64, 64), (81, 97)])
def test_x264_roundtrip_is_deterministic_and_crf_matters(size: tuple[int, int]) -> None:
    h, w = size
    x = clip(16, w, h)
    runs = [x264_roundtrip(x, 20).tobytes() for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    lo, hi = x264_roundtrip(x, 18), x264_roundtrip(x, 40)
    assert lo.shape == x.shape
    assert psnr(lo, x) > psnr(hi, x) + 3
    assert 25 < psnr(lo, x) < 60


def test_codec_op_records_crf_and_compresses() -> None:
    x = clip(8)
    y, p = Degradation([Codec(crf=30)])(x, 0)
    assert p["ops"][0]["crf"] == 30 and p["ops"][0]["codec"] == "libx264"
    assert y.shape == x.shape and 25 < psnr(y, x) < 45


def test_unknown_recipe_says_what_to_use() -> None:
    with pytest.raises(ConfigError, match="choose from .*stc"):
        recipe("vhs")
    assert len(recipe("stc+flicker-brightness").ops) == 6


def test_brightness_flicker_alpha_is_per_frame_function_of_seed() -> None:
    p = {"prob": 0.3, "alpha_range": [0.5, 1.5], "seed": 11}
    alphas = [BrightnessFlicker.frame_alpha(p, i) for i in range(400)]
    picked = [a for a in alphas if a is not None]
    assert 0.2 < len(picked) / len(alphas) < 0.4  # about `prob` of the frames flicker
    assert all(0.5 <= a <= 1.5 for a in picked) and len(set(picked)) == len(picked)  # each its own alpha
    # a frame's alpha depends only on (seed, index): a clip cut at frame 100 gets the same alphas
    assert [BrightnessFlicker.frame_alpha(p, i) for i in range(100, 120)] == alphas[100:120]
    other = [BrightnessFlicker.frame_alpha({**p, "seed": 12}, i) for i in range(400)]
    assert other != alphas


def test_bfvr_hard_draws_the_heavier_half_of_bfvr():
    from bfvr.degrade import recipe

    for seed in range(20):
        hard = recipe("bfvr-hard").draw(seed, 128, 128)["ops"]
        blur = next(o for o in hard if o["op"] == "blur")
        down = next(o for o in hard if o["op"] == "downscale")
        assert 2.0 <= min(v for k, v in blur.items() if k.startswith("sigma")) and 3.0 <= down["scale"] <= 4.0


def test_bfvr_broad_draws_every_level_and_operator_and_clean_is_the_identity() -> None:
    frames = clip(6, 64, 64)
    deg = recipe("bfvr-broad")
    levels, ops, codecs = set(), set(), set()
    for i in range(60):
        p = deg.draw(clip_rng(0, f"c{i}"), 256, 256, fps=25)
        b = p["ops"][0]
        levels.add(b["level"])
        ops |= {o["op"] for o in b["ops"]}
        codecs |= {o["codec"] for o in b["ops"] if o["op"] == "codec"}
        json.dumps(p)  # the sidecar stays JSON
    assert levels == {"clean", "light", "full"}
    assert {"blur", "downscale", "upscale", "noise", "noise_poisson", "codec", "jpeg",
            "flicker_brightness"} <= ops
    assert codecs == {"libx264", "libx265"}
    for i in range(60):  # the clean level leaves the clip bit-identical; the others change it
        lq, p = deg(frames, clip_rng(0, f"c{i}"))
        chain = p["ops"][0]["ops"]
        low = min([min(o["size"]) for o in chain if o["op"] == "downscale"] or [64])
        assert low >= 64 or all(o.get("codec") != "libx265" for o in chain)  # x265 only on >= 64 px
        assert lq.shape == frames.shape and lq.dtype == np.uint8
        assert np.array_equal(lq, frames) == (p["ops"][0]["level"] == "clean")
    a, _ = deg(frames, clip_rng(3, "x"))
    b, _ = deg(frames, clip_rng(3, "x"))
    assert np.array_equal(a, b)  # one seed, one result


def test_jpeg_quality_and_poisson_noise_level() -> None:
    from bfvr.degrade.ops import Jpeg, PoissonNoise

    frames = clip(2, 96, 80).astype(np.float32)
    hi = Jpeg().apply(frames, {"quality": 95}, 0)
    lo = Jpeg().apply(frames, {"quality": 20}, 0)
    assert psnr(hi, frames) > psnr(lo, frames) + 5
    flat = np.full((2, 64, 64, 3), 128.0, np.float32)
    for peak in (50.0, 1000.0):  # shot noise: std = sqrt(value / 255 * peak) / peak * 255
        out = PoissonNoise().apply(flat, {"peak": peak, "gray": False, "seed": 1}, 0)
        want = np.sqrt(128 / 255 * peak) / peak * 255
        assert abs(out.std() / want - 1) < 0.05 and abs(out.mean() - 128) < 0.5


def test_bfvr_broad_mid_range_is_one_chain_for_every_clip() -> None:
    deg = recipe("bfvr-broad")

    def chain(name):
        p = deg.draw(clip_rng(0, name), 256, 256, fps=25, mid=True)["ops"][0]
        return p["level"], [{k: v for k, v in o.items() if k != "seed"} for o in p["ops"]]

    first = chain("a")
    assert first[0] == "full"
    assert [o["op"] for o in first[1]] == ["blur", "downscale", "noise", "codec", "upscale"]
    assert all(chain(n) == first for n in ("b", "c", "d"))
