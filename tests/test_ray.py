"""bfvr.scale on a real Ray cluster: two Ray nodes on this machine (127.0.0.1 only, 1 CPU and 100 MB of
object store each), a batch with a worker killed mid-run, and a segmented video equal to one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# keep every Ray address on the loopback: Ray otherwise swaps 127.0.0.1 for the machine's network address
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'bfvr[cluster]')")

from helpers import REPO  # noqa: E402
from helpers import audio_packets as _audio_packets  # noqa: E402
from helpers import cut_clip as _cut  # noqa: E402
from helpers import frames_and_pts as _frames_and_pts  # noqa: E402
from helpers import lite_small as _lite_small  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster takes 10-30 s to start on this machine

CLIPS = [
    "lp_driving_d0",
    "lp_driving_d11",
    "lp_driving_d18",
    "lp_driving_d20",
    "tpsmm_driving",
    "lp_driving_d14",
]
NODE = dict(node_ip_address="127.0.0.1", num_cpus=1, object_store_memory=100 * 1024**2)


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    c.add_node(**NODE)
    c.wait_for_nodes()
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def _actor_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::_RayWorker"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def test_ray_batch_survives_a_killed_worker(cluster, faces_dir: Path, tmp_path: Path) -> None:
    from bfvr.io import probe
    from bfvr.scale.plan import incomplete_reason

    corpus = tmp_path / "in"
    (corpus / "sub").mkdir(parents=True)
    for i, name in enumerate(CLIPS):
        (corpus / ("sub" if i >= 4 else ".") / f"{name}.mp4").symlink_to(faces_dir / f"{name}.mp4")
    (corpus / "notes.mp4").write_text("not a video\n")
    (corpus / "sub" / "empty.mkv").write_bytes(b"")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [
        sys.executable,
        "-m",
        "bfvr.cli",
        "restore",
        str(corpus),
        "-o",
        str(out),
        "--model",
        "identity",
        "--has-aligned",
        "-q",
        "--preset",
        "ultrafast",
        "--max-frames",
        "60",
        "--ray",
        cluster.address,
        "--workers",
        "2",
        "--retries",
        "2",
    ]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None:
            pids = _actor_pids()
            if len(pids) == 2 and list(out.rglob(".*.partial.mp4")):
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)  # a worker dies in the middle of the batch
                break
            time.sleep(0.05)
        _, stderr = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert killed is not None, "the batch finished before a worker could be killed"
    assert p.returncode == 3, stderr  # two corrupt inputs failed; the rest done
    s = json.loads((out / "bfvr-summary.json").read_text())
    assert s["counts"] == {"done": 6, "skipped": 0, "failed": 2, "pending": 0, "total": 8}, s
    assert s["backend"].startswith("ray")
    for src in corpus.rglob("*.mp4"):
        if src.name != "notes.mp4":
            assert incomplete_reason(out / src.relative_to(corpus), probe(src), max_frames=60) is None
    assert not list(out.rglob(".*partial*"))
    assert killed not in _actor_pids()


def test_ray_segments_equal_single_process(cluster, faces_dir: Path, tmp_path: Path) -> None:
    import torch

    from bfvr.api import Restorer
    from bfvr.scale import BatchOptions, RestoreSettings
    from bfvr.scale.batch import run_segmented

    torch.set_num_threads(1)
    src = _cut(faces_dir / "lp_driving_d9.mp4", tmp_path / "clip.mp4", frames=60, size=64, crop=(120, 200))
    model = _lite_small()
    one = tmp_path / "one.mp4"
    Restorer(model, progress=False).restore_video(src, one, preset="ultrafast")
    seg = tmp_path / "seg.mp4"
    res = run_segmented(
        src,
        seg,
        RestoreSettings(model=model, preset="ultrafast"),
        BatchOptions(segments=3, ray=cluster.address, workers=2, progress=False),
    )
    assert res.exit_code == 0 and res.videos[0].segments == 3
    a, pa = _frames_and_pts(one)
    b, pb = _frames_and_pts(seg)
    assert pa == pb and np.array_equal(a, b)
    assert _audio_packets(seg) == _audio_packets(one) != []
    assert not ray.is_initialized()  # the batch disconnected from the cluster it joined
