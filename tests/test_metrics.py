"""bfvr.metrics on arrays: PSNR/SSIM vs scikit-image, Fréchet vs scipy, LPIPS loading, flow metrics,
profiles."""

from __future__ import annotations

import numpy as np
import pytest

from bfvr.errors import WeightsNotFoundError
from bfvr.metrics import fullref, fvd, temporal
from bfvr.metrics.pictures import hstack_labeled, temporal_profile


@pytest.fixture(scope="module")
def skm():
    """scikit-image's metrics (the reference for PSNR/SSIM); only the tests comparing with it need it."""
    return pytest.importorskip("skimage.metrics")


def _sk_ssim(skm, a, b, channel_axis=-1):
    return skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, channel_axis=channel_axis)


def _real_pair(faces_dir, n=4, size=None):
    import cv2

    from bfvr.io import read_frames

    f = read_frames(faces_dir / "lp_driving_d0.mp4", max_frames=n)
    if size:
        f = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in f])
    blur = np.stack([cv2.GaussianBlur(x, (0, 0), 1.5) for x in f])
    return f, blur


@pytest.mark.parametrize("shape", [(37, 53, 3), (64, 64, 3)])
def test_psnr_ssim_match_skimage_random(shape, skm):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)
    assert abs(fullref.psnr(a, b) - skm.peak_signal_noise_ratio(a, b, data_range=255)) < 1e-6
    assert abs(fullref.ssim(a, b) - _sk_ssim(skm, a, b)) < 1e-4
    # crop border
    c = 4
    assert abs(fullref.ssim(a, b, crop_border=c) - _sk_ssim(skm, a[c:-c, c:-c], b[c:-c, c:-c])) < 1e-4
    assert abs(fullref.psnr(a, b, crop_border=c)
               - skm.peak_signal_noise_ratio(a[c:-c, c:-c], b[c:-c, c:-c], data_range=255)) < 1e-6


def test_psnr_ssim_match_skimage_real_frames_and_y(faces_dir, skm):
    from skimage.color import rgb2ycbcr

    gt, pred = _real_pair(faces_dir, n=2)
    for g, p in zip(gt, pred):
        assert abs(fullref.psnr(p, g) - skm.peak_signal_noise_ratio(g, p, data_range=255)) < 1e-6
        assert abs(fullref.ssim(p, g) - _sk_ssim(skm, g, p)) < 1e-4
        yg, yp = rgb2ycbcr(g)[..., 0], rgb2ycbcr(p)[..., 0]   # BT.601, 16..235
        assert abs(fullref.psnr(p, g, y_channel=True)
                   - skm.peak_signal_noise_ratio(yg, yp, data_range=255)) < 1e-6
        assert abs(fullref.ssim(p, g, y_channel=True) - _sk_ssim(skm, yg, yp, channel_axis=None)) < 1e-4
    per = fullref.psnr_frames(pred, gt)
    assert per.shape == (2,) and np.allclose(per, [fullref.psnr(p, g) for p, g in zip(pred, gt)])
    assert fullref.psnr(gt[0], gt[0]) == float("inf") and fullref.ssim(gt[0], gt[0]) == pytest.approx(1.0)


def test_tdiff_psnr_identical_and_temporal_noise():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    assert np.all(fullref.tdiff_mse(gt, gt, 1) == 0) and fullref.tdiff_psnr(gt, gt) == float("inf")
    # same offset every frame: small residual
    static = np.clip(gt.astype(float) + 3, 0, 255).astype(np.uint8)
    noisy = np.clip(gt + rng.normal(0, 8, gt.shape), 0, 255).astype(np.uint8)  # independent per frame
    for s in fullref.TDIFF_STRIDES:
        assert fullref.tdiff_psnr(static, gt, strides=(s,)) > fullref.tdiff_psnr(noisy, gt, strides=(s,)) + 5
    assert len(fullref.tdiff_mse(gt, gt, 2)) == 6
    assert len(fullref.tdiff_mse(gt, gt, 2, first_end=5)) == 3


def test_frechet_known_gaussians_and_scipy():
    from scipy import linalg

    # diagonal covariances commute: distance = |mu1-mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expect = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert fvd.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expect, abs=1e-9)
    # general covariances vs a direct scipy computation
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + np.eye(6), b @ b.T + np.eye(6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    direct = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert fvd.frechet_distance(m1, s1, m2, s2) == pytest.approx(direct, rel=1e-9)
    # sample statistics: a set against itself ~0, against a shifted set ~ the shift
    x = rng.normal(size=(500, 6))
    assert fvd.fvd_from_features(x, x) < 1e-6
    assert fvd.fvd_from_features(x, x + 2.0) == pytest.approx(6 * 4.0, rel=1e-6)
    # the papers' per-pair variant drops the covariance: equal means -> 0 even for different spreads
    assert fvd.fvd_per_pair([(x, 3 * (x - x.mean(0)) + x.mean(0))]) < 1e-9
    assert fvd.fvd_from_features(x, 3 * (x - x.mean(0)) + x.mean(0)) > 5


def test_i3d_needs_a_path_and_runs_a_torchscript(tmp_path):
    import torch

    with pytest.raises(WeightsNotFoundError, match="--i3d"):
        fvd.I3DFeatures(None)
    with pytest.raises(WeightsNotFoundError, match="not found"):
        fvd.I3DFeatures(tmp_path / "missing.pt")

    # a stand-in with I3D's call signature (the real one is not available offline)
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 8, 3, stride=2)

        def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = True):
            return self.conv(x).mean((2, 3, 4))

    torch.manual_seed(0)
    p = tmp_path / "tiny_i3d.pt"
    torch.jit.script(Tiny()).save(str(p))
    ext = fvd.I3DFeatures(p, clip_len=4)
    rng = np.random.default_rng(0)
    vid = rng.integers(0, 256, (12, 40, 48, 3), dtype=np.uint8)
    clips = ext.video_clips(vid)
    assert len(clips) == 3 and clips[0].shape == (4, 40, 48, 3)
    f = ext.features(clips)
    assert f.shape == (3, 8)
    assert fvd.fvd_from_features(f, f) < 1e-6
    g = ext.features(ext.video_clips(255 - vid))
    assert fvd.fvd_from_features(f, g) > 1e-4


def test_lpips_unavailable_without_weights_and_loads_given_files(tmp_path):
    import torch

    from bfvr.metrics.lpips import LPIPS, LPIPSBackbone

    with pytest.raises(WeightsNotFoundError, match="LPIPS unavailable: needs weights vgg16"):
        LPIPS("vgg", backbone=None)
    with pytest.raises(WeightsNotFoundError, match="alexnet"):
        LPIPS("alex", backbone=tmp_path / "nope.pth")
    # files in the torchvision / lpips layouts (random values: this checks loading and the formula,
    # not quality)
    torch.manual_seed(0)
    bb = {k: v for k, v in LPIPSBackbone("alex").state_dict().items()}
    bb["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision files also hold the classifier: ignored
    torch.save(bb, tmp_path / "alexnet.pth")
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(heads, tmp_path / "alex_heads.pth")
    m = LPIPS("alex", backbone=tmp_path / "alexnet.pth", heads=tmp_path / "alex_heads.pth")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    d_same, d_diff = m.frames(a, a), m.frames(a, b)
    assert np.allclose(d_same, 0) and np.all(d_diff > 0)
    # a VGG file given for AlexNet is refused, not half-loaded
    torch.save(LPIPSBackbone("vgg").state_dict(), tmp_path / "vgg.pth")
    with pytest.raises(WeightsNotFoundError, match="not a torchvision alex"):
        LPIPS("alex", backbone=tmp_path / "vgg.pth", heads=tmp_path / "alex_heads.pth")


def test_warp_error_higher_for_brightness_flicker(faces_dir):
    gt, _ = _real_pair(faces_dir, n=10, size=192)
    rng = np.random.default_rng(0)
    # brightness flicker per frame
    gains = 1 + rng.choice([-1, 1], len(gt)) * rng.uniform(0.08, 0.15, len(gt))
    flick = np.clip(gt.astype(np.float32) * gains[:, None, None, None], 0, 255).astype(np.uint8)
    clean_ref, flick_ref = temporal.warp_errors(gt, gt).mean(), temporal.warp_errors(flick, gt).mean()
    clean_nr, flick_nr = temporal.warp_errors(gt).mean(), temporal.warp_errors(flick).mean()
    assert flick_ref > 2 * clean_ref
    assert flick_nr > 2 * clean_nr
    fs = temporal.flow_magnitudes(gt)
    assert fs.shape == (9,) and np.all(fs >= 0)
    # chunked evaluation (first_end) counts each transition once
    assert np.allclose(np.concatenate([temporal.warp_errors(gt[:5]),
                                       temporal.warp_errors(gt[1:], first_end=4)]),
                       temporal.warp_errors(gt))


def test_flow_score_sees_motion():
    rng = np.random.default_rng(0)
    base = (rng.random((96, 96, 3)) * 255).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(base, (0, 0), 2)
    still = np.stack([base] * 4)
    moving = np.stack([np.roll(base, 2 * i, axis=1) for i in range(4)])
    assert temporal.flow_magnitudes(still).mean() < 0.1
    assert temporal.flow_magnitudes(moving).mean() > 1.0


def test_temporal_profile_and_labels():
    frames = np.zeros((5, 20, 30, 3), np.uint8)
    for t in range(5):
        frames[t, :, 10] = 50 * t
    p = temporal_profile([frames[:2], frames[2:]], column=10)
    assert p.shape == (20, 5, 3) and np.array_equal(p[0, :, 0], [0, 50, 100, 150, 200])
    assert temporal_profile([frames], row=0.5).shape == (5, 30, 3)
    with pytest.raises(ValueError):
        temporal_profile([frames], column=99)
    img = hstack_labeled([p, p], ["a", "b"], height=40)
    assert img.shape[0] == 40 + 28 and img[28:, :10].any()


def test_ssim_metric_equals_the_differentiable_ssim_map() -> None:
    """`ssim` (OpenCV filters, float64) and `ssim_map` (torch, the training loss) compute the same sums."""
    import torch

    from bfvr.metrics.fullref import prepare, ssim, ssim_map

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 80, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    x, y = (torch.from_numpy(np.ascontiguousarray(prepare(v, 0, False))).permute(2, 0, 1)[None]
            for v in (a, b))
    assert abs(ssim(a, b) - float(ssim_map(x, y, 255.0).mean())) < 1e-12
    assert 0.3 < ssim(a, b) < 0.99
