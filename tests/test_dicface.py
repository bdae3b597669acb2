"""DicFace network: the official layout (keys, shapes, block taps, parameter count), a small configuration's
behaviour (groups of 5 frames, the fusion weight w, AdaIN, the two sampling modes and the seeded stream),
and parity with the official forward on the golden fixture (fp32, slow)."""

from __future__ import annotations

import json

import pytest
import torch

from bfvr.models.dicface import DicFace
from helpers import golden_weights, shared_path

#: a small DicFace (32x32 frames, 4x4 latent, 64 codes) that runs in well under a second
SMALL = {"dim_embed": 32, "n_head": 2, "n_layers": 2, "codebook_size": 64, "latent_size": 16,
         "connect_list": ("8", "16"), "frame_length": 5, "nf": 32, "ch_mult": (1, 1, 2, 2), "res_blocks": 1,
         "img_size": 32, "attn_resolutions": (4,), "emb_dim": 32}


@pytest.fixture(autouse=True)
def _threads(request):
    """Small networks run on one thread (on a busy 2-core machine two threads of tiny ops wait on each other,
    ~50x slower); the slow 512x512 tests keep two."""
    before = torch.get_num_threads()
    torch.set_num_threads(2 if request.node.get_closest_marker("slow") else 1)
    yield
    torch.set_num_threads(before)


def _small(init: int = 0, **kw) -> DicFace:
    torch.manual_seed(init)
    net = DicFace(**{**SMALL, **kw}).eval()
    # non-trivial transformer/head so alpha varies between tokens and frames
    with torch.no_grad():
        net.position_emb.normal_(0, 0.5)
        net.position_emb_temporal.normal_(0, 0.5)
        net.idx_pred_layer[1].weight.normal_(0, 0.5)
        net.quantize.embedding.weight.normal_(0, 1.0)  # code mixtures with a variance well above AdaIN's eps
    return net


def _frames(n: int, seed: int = 1, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _generator_input(net: DicFace, x: torch.Tensor, **kw) -> tuple[torch.Tensor, tuple]:
    seen = {}
    h = net.generator.blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("q", a[0].clone()))
    try:
        with torch.no_grad():
            out = net(x, **kw)
    finally:
        h.remove()
    return seen["q"], out


# ------------------------------------------------------------------------------------ official layout

def test_official_layout_keys_shapes_taps_and_size():
    """The default DicFace has exactly the official keys/shapes (from official_state_dicts.txt via the golden
    manifest), the official block taps and 116,187,075 parameters."""
    with torch.device("meta"):
        net = DicFace(frame_length=5)
    assert net.encoder.taps == {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
    assert net.generator.taps == {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}
    assert sum(p.numel() for p in net.state_dict().values()) == 116_187_075
    assert not net.position_emb.requires_grad and net.position_emb_temporal.requires_grad
    manifest = shared_path("golden", "dicface", "manifest.json")
    expected = {k: tuple(s) for k, s, _ in json.loads(manifest.read_text())}
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == expected


def test_strict_round_trip_and_shapes():
    net = _small()
    x = _frames(10)
    with torch.no_grad():
        out, lq_feat, alpha = net(x, sampling="mean")
    assert out.shape == (10, 3, 32, 32) and lq_feat.shape == (10, 32, 4, 4) and alpha.shape == (10, 16, 64)
    assert torch.isfinite(out).all()
    assert (alpha >= 1e-2).all()
    other = _small(init=5)
    with torch.no_grad():
        assert not torch.equal(other(x, sampling="mean")[0], out)
    missing = other.load_state_dict(net.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    with torch.no_grad():
        assert torch.equal(other(x, sampling="mean")[0], out)
    bad = {k: v for k, v in net.state_dict().items() if not k.startswith("multiscale.out")}
    with pytest.raises(RuntimeError, match="multiscale.out.weight"):
        other.load_state_dict(bad, strict=True)


def test_whole_groups_of_five_and_group_independence():
    net = _small()
    x = _frames(10)
    with torch.no_grad():
        both = net(x, sampling="mean")[0]
        first = net(x[:5], sampling="mean")[0]
        second = net(x[5:], sampling="mean")[0]
        with pytest.raises(ValueError, match="groups of 5"):
            net(x[:7])
        with pytest.raises(ValueError, match="32, 32"):
            net(_frames(5, size=64))
        # temporal mixing inside a group: changing frame 0 changes frame 2's output, not the other group's
        y = x.clone()
        y[0] = -y[0]
        changed = net(y, sampling="mean")[0]
    torch.testing.assert_close(both[:5], first, atol=1e-5, rtol=0)
    torch.testing.assert_close(both[5:], second, atol=1e-5, rtol=0)
    assert (changed[2] - both[2]).abs().max() > 1e-3
    assert torch.equal(changed[5:], both[5:])


def test_fidelity_weight_and_adain():
    net = _small()
    x = _frames(5)
    with torch.no_grad():
        lq_feat, _ = net.encode(x)
        q = net.code_mixture(net.code_weights(net.concentration(lq_feat), "mean"))
        plain = net.decode(q, None, w=0)
        out0 = net(x, w=0.0, sampling="mean")[0]
        out1 = net(x, w=1.0, sampling="mean")[0]
        out05 = net(x, w=0.5, sampling="mean")[0]
    assert torch.equal(out0, plain)  # w = 0: no fusion at all
    assert (out1 - out0).abs().max() > 1e-3 and (out05 - out1).abs().max() > 1e-4
    # AdaIN: the code mixture gets lq_feat's per-(frame, channel) mean and std (unbiased var + 1e-5)
    q_adain, _ = _generator_input(net, x, sampling="mean", adain=True)
    c, s = q.flatten(2), lq_feat.flatten(2)
    expected = ((c - c.mean(-1, keepdim=True)) / (c.var(-1, keepdim=True) + 1e-5).sqrt()
                * (s.var(-1, keepdim=True) + 1e-5).sqrt() + s.mean(-1, keepdim=True))
    torch.testing.assert_close(q_adain.flatten(2), expected, atol=1e-5, rtol=1e-4)
    assert (q_adain - q).abs().max() > 0.1


def test_sampling_modes():
    net = _small()
    x = _frames(5)
    with torch.no_grad():
        alpha = net.concentration(net.encode(x)[0])
    # mean: alpha / sum(alpha), deterministic
    wm = net.code_weights(alpha, "mean")
    torch.testing.assert_close(wm.sum(-1), torch.ones(5, 16))
    torch.testing.assert_close(wm * alpha.sum(-1, keepdim=True), alpha)
    q1, o1 = _generator_input(net, x, sampling="mean")
    q2, o2 = _generator_input(net, x, sampling="mean")
    assert torch.equal(o1[0], o2[0]) and torch.equal(q1, q2)
    # official, seed=None: torch's global generator, like the official forward
    torch.manual_seed(3)
    ws = net.code_weights(alpha, "official")
    torch.manual_seed(3)
    ref = torch.distributions.Dirichlet(alpha).rsample()
    assert torch.equal(ws, ref)
    torch.testing.assert_close(ws.sum(-1), torch.ones(5, 16))
    assert (ws - wm).abs().max() > 1e-2  # a real draw, not the mean
    # official with a seed: a private stream (the global generator is untouched); its first draw equals
    # the official one after torch.manual_seed(seed); later draws are fresh; reset_rng() restarts it
    seeded = _small(init=0, seed=3)
    seeded.load_state_dict(net.state_dict())
    before = torch.get_rng_state()
    a = seeded.code_weights(alpha)
    b = seeded.code_weights(alpha)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a, ref) and not torch.equal(a, b)
    seeded.reset_rng()
    assert torch.equal(seeded.code_weights(alpha), a) and torch.equal(seeded.code_weights(alpha), b)
    with pytest.raises(ValueError, match="sampling"):
        DicFace(**SMALL, sampling="argmax")


def test_official_sampling_has_gradients():
    """`rsample` is reparameterised: the loss reaches the transformer through the code weights."""
    net = _small().train()
    out = net(_frames(5), sampling="official")[0]
    out.abs().mean().backward()
    assert net.idx_pred_layer[1].weight.grad.abs().sum() > 0
    assert net.position_emb.grad is None


# ------------------------------------------------------------------------------------ golden parity

@pytest.mark.slow
def test_golden_parity(golden_dir, capsys):
    """Official fixture weights, strict load, torch.manual_seed(0) right before the forward -> output within
    max 2e-3 / mean 1e-4, lq_feat, alpha and quant_feat within 1e-4 (golden/README.md). The seeded private
    stream (seed=0) draws the same quant_feat. 40-140 s on 2 cores."""
    gw = golden_weights()

    d = golden_dir / "dicface"
    kw = json.loads((d / "meta.json").read_text())["constructor"]["kwargs"]
    io = gw.load_safetensors(str(d / "io.safetensors"))
    net = DicFace(**kw).eval()
    net.load_state_dict(gw.make_state_dict(str(d / "manifest.json")), strict=True)
    torch.manual_seed(0)
    quant_feat, (out, lq_feat, alpha) = _generator_input(net, io["input"], w=1.0)
    diffs = {k: (v - io[k]).abs() for k, v in
             [("output", out), ("lq_feat", lq_feat), ("alpha", alpha), ("quant_feat", quant_feat)]}
    with capsys.disabled():
        print("\n" + "\n".join(f"dicface golden {k}: max {v.max().item():.3g} mean {v.mean().item():.3g}"
                               for k, v in diffs.items()))
    assert diffs["output"].max() <= 2e-3 and diffs["output"].mean() <= 1e-4
    for k in ("lq_feat", "alpha", "quant_feat"):
        assert diffs[k].max() <= 1e-4, k
    net.seed = 0
    net.reset_rng()
    with torch.no_grad():
        q2 = net.code_mixture(net.code_weights(alpha - 1e-6))
    assert (q2 - io["quant_feat"]).abs().max() <= 1e-4
