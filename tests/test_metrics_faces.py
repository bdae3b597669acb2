"""Face metrics with dlib on the shared real clips: IDS, Face-Cons, AKD and TLME."""

from __future__ import annotations

import numpy as np
import pytest

from bfvr.metrics.faces import cosine, landmark_distance, tlme_from_landmarks


def test_cosine_values() -> None:
    a = np.array([3.0, 4.0, 0.0])
    assert cosine(a, 10 * a) == pytest.approx(1.0)  # scale-free
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, [0.0, 0.0, 2.0]) == pytest.approx(0.0)
    assert cosine(a, [4.0, 3.0, 0.0]) == pytest.approx(24 / 25)
    assert cosine(np.ones((2, 2)), np.ones(4)) == pytest.approx(1.0)  # compared flattened


def _frames(faces_dir, name, n):
    from bfvr.io import read_frames

    return read_frames(faces_dir / f"{name}.mp4", max_frames=n)


def _embeds(faces, frames):
    out = []
    for f in frames:
        r = faces.detect(f)
        assert r is not None
        out.append(faces.embed(f, r))
    return out


def test_ids_self_is_one_and_other_people_lower(faces, faces_dir):
    a = _embeds(faces, _frames(faces_dir, "lp_driving_d0", 3))   # a man
    b = _embeds(faces, _frames(faces_dir, "lp_driving_d11", 3))  # a young girl
    c = _embeds(faces, _frames(faces_dir, "lp_driving_d18", 3))  # another man
    same_person = np.mean([cosine(a[0], x) for x in a[1:]])      # Face-Cons style: first vs later frames
    other = [np.mean([cosine(x, y) for x, y in zip(a, o)]) for o in (b, c)]
    again = _embeds(faces, _frames(faces_dir, "lp_driving_d0", 3))
    assert all(cosine(x, y) == pytest.approx(1.0, abs=1e-6) for x, y in zip(a, again))  # deterministic
    assert same_person > 0.97
    assert max(other) < same_person - 0.05


def test_tlme_zero_for_self_and_grows_with_jitter(faces, faces_dir):
    import cv2

    gt = _frames(faces_dir, "lp_driving_d0", 8)
    rng = np.random.default_rng(0)

    def track(frames, boxes_from):
        rects = [faces.detect(f) for f in boxes_from]
        return np.stack([faces.landmarks(f, r) for f, r in zip(frames, rects)])

    lg = track(gt, gt)
    assert tlme_from_landmarks(lg, lg).max() == 0
    assert landmark_distance(lg[0], lg[0]) == 0
    tlme = []
    for amp in (1.0, 4.0):
        shifts = rng.uniform(-amp, amp, (len(gt), 2))
        jit = np.stack([cv2.warpAffine(f, np.float32([[1, 0, dx], [0, 1, dy]]), f.shape[1::-1],
                                       borderMode=cv2.BORDER_REPLICATE) for f, (dx, dy) in zip(gt, shifts)])
        tlme.append(tlme_from_landmarks(track(jit, gt), lg).mean())
    assert 0 < tlme[0] < tlme[1]
    assert tlme[1] > 2.0  # ~4 px random shifts show up as pixels of landmark jitter
    # the pure function: jitter injected into the landmark tracks directly
    noisy = lg + rng.normal(0, 2.0, lg.shape)
    slight = lg + rng.normal(0, 0.5, lg.shape)
    assert tlme_from_landmarks(noisy, lg).mean() > tlme_from_landmarks(slight, lg).mean()


def test_arcface_path_embedder_and_missing_file(faces, faces_dir, tmp_path):
    import torch

    from bfvr.errors import WeightsNotFoundError
    from bfvr.metrics.faces import ArcFaceEmbedder

    with pytest.raises(WeightsNotFoundError, match="--identity-model dlib"):
        ArcFaceEmbedder(tmp_path / "arcface.onnx", faces)

    class Net(torch.nn.Module):  # stand-in with ArcFace's interface: [1,3,112,112] in [-1,1] -> [1,D]
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 8, stride=8)

        def forward(self, x):
            return self.conv(x).flatten(1)

    torch.manual_seed(0)
    p = tmp_path / "arc.pt"
    torch.jit.script(Net()).save(str(p))
    emb = ArcFaceEmbedder(p, faces)
    f = _frames(faces_dir, "lp_driving_d0", 1)[0]
    e = emb.embed(f, faces.detect(f))
    assert e.shape == (16 * 14 * 14,) and np.isfinite(e).all()
    assert cosine(e, emb.embed(f, faces.detect(f))) == pytest.approx(1.0)
