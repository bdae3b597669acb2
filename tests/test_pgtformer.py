"""PGTFormer network: official key layout, the Swin-3D window attention against a direct formulation, the
quantizer, batches of windows, and (slow) parity with the golden fixture of the official code."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from bfvr.models.pgtformer import (
    OFFICIAL_CONFIG,
    PGTFormer,
    SwinLayer3D,
    VQEmbedding,
    config_from_official,
    relative_position_index,
)
from helpers import golden_weights, small_net

pytestmark = pytest.mark.usefixtures("one_thread")  # small networks: see conftest.one_thread


def frames(n_windows: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(3 * n_windows, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------- layout and keys


def official_keys(path) -> dict[str, tuple[int, ...]]:
    """key -> shape of the PGTFormer section of official_state_dicts.txt."""
    text = path.read_text()
    section = text[text.index("## PGTFormer") :]
    nxt = section.find("\n## ", 5)
    section = section if nxt < 0 else section[:nxt]
    out = {}
    for m in re.finditer(r"^([\w.]+): \(([\d, ]*)\)$", section, re.MULTILINE):
        out[m.group(1)] = tuple(int(s) for s in m.group(2).replace(" ", "").split(",") if s)
    return out


@pytest.fixture(scope="module")
def meta_net() -> PGTFormer:
    """The official-size network on the meta device (shapes only)."""
    with torch.device("meta"):
        return PGTFormer(**OFFICIAL_CONFIG)


def test_official_state_dict_layout_loads_strict(golden_dir, meta_net):
    keys = official_keys(golden_dir.parent / "reference" / "official_state_dicts.txt")
    assert len(keys) == 961
    net = meta_net
    with torch.device("meta"):
        sd = {
            k: torch.empty(
                s,
                dtype=torch.int64
                if k.endswith(("num_batches_tracked", "relative_position_index"))
                else torch.float32,
            )
            for k, s in keys.items()
        }
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == keys
    net.load_state_dict(sd, strict=True, assign=True)
    assert sum(p.numel() for p in net.parameters()) == 129_799_667  # official count


def test_relative_position_index_equals_the_official_tables(golden_dir, meta_net):
    gw = golden_weights()

    tables = gw.load_safetensors(str(golden_dir / "pgtformer" / "int_buffers.safetensors"))
    assert len(tables) == 22
    ours = relative_position_index(3, (4, 4))
    assert ours.shape == (48, 48) and ours.dtype == torch.int64
    for key, t in tables.items():
        assert torch.equal(t, ours), key
    assert {k for k in meta_net.state_dict() if k.endswith("relative_position_index")} == set(tables)
    # the values a freshly built module holds (not only the helper)
    net = SwinLayer3D(64, depth=2, num_heads=2, frames=3, window=(4, 4))
    assert torch.equal(net.blocks[1].attn.relative_position_index, ours)


def test_config_from_official_accepts_a_hub_config(meta_net):
    hub = {
        **OFFICIAL_CONFIG,
        "type": "PGTFormer",
        "ddconfig": {
            **OFFICIAL_CONFIG["ddconfig"],
            "double_z": False,
            "stages_atten": 4,
            "window_size": [5, 5, 5],
            "num_head": 8,
        },
    }
    cfg = config_from_official(hub)
    assert "type" not in cfg and "double_z" not in cfg["ddconfig"]
    with torch.device("meta"):
        a = PGTFormer(**cfg)
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in meta_net.state_dict().items()
    }


# ------------------------------------------------------------------------------------- window attention


def direct_swin_layer(layer: SwinLayer3D, x: torch.Tensor) -> torch.Tensor:
    """The window attention written directly (pad, roll, partition, softmax(qk^T/sqrt(d) + bias + mask) v,
    merge, roll back, crop), for comparison with the gather-based implementation."""
    bd, c, h, w = x.shape
    d = layer.frames
    t = x.view(bd // d, d, c, h, w).permute(0, 1, 3, 4, 2)  # B D H W C
    for blk in layer.blocks:
        a = blk.attn
        wh, ww = blk.window
        sh, sw = blk.shift if h > wh and w > ww else (0, 0)
        y = blk.norm1(t)
        pb, pr = (-h) % wh, (-w) % ww
        y = F.pad(y, (0, 0, 0, pr, 0, pb))
        hp, wp = h + pb, w + pr
        y = torch.roll(y, (-sh, -sw), (2, 3))
        b = y.shape[0]
        win = (
            y.view(b, d, hp // wh, wh, wp // ww, ww, c)
            .permute(0, 2, 4, 1, 3, 5, 6)
            .reshape(-1, d * wh * ww, c)
        )
        n, nh = win.shape[1], a.num_heads
        q = a.q(win).view(-1, n, nh, c // nh).transpose(1, 2)
        k, v = a.kv(win).view(-1, n, 2, nh, c // nh).permute(2, 0, 3, 1, 4)
        s = (q * (c // nh) ** -0.5) @ k.transpose(-1, -2)
        s = s + a.relative_position_bias_table[a.relative_position_index.view(-1)].view(n, n, nh).permute(
            2, 0, 1
        )
        if sh or sw:
            lab = torch.zeros(hp, wp)
            cnt = 0
            for ys in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
                for xs in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
                    lab[ys, xs] = cnt
                    cnt += 1
            lw = (
                lab.view(hp // wh, wh, wp // ww, ww)
                .permute(0, 2, 1, 3)
                .reshape(-1, 1, wh * ww)
                .expand(-1, d, -1)
            )
            lw = lw.reshape(-1, n)
            m = torch.where(lw[:, None, :] != lw[:, :, None], -100.0, 0.0)  # nW N N
            s = (s.view(b, -1, nh, n, n) + m[None, :, None]).view(-1, nh, n, n)
        o = a.proj((s.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c))
        o = o.view(b, hp // wh, wp // ww, d, wh, ww, c).permute(0, 3, 1, 4, 2, 5, 6).reshape(b, d, hp, wp, c)
        o = torch.roll(o, (sh, sw), (2, 3))[:, :, :h, :w]
        t = t + o
        t = t + blk.mlp(blk.norm2(t))
    return t.permute(0, 1, 4, 2, 3).reshape(bd, c, h, w)


@pytest.mark.parametrize("hw", [(8, 8), (12, 8), (10, 6), (4, 4)])
def test_swin_layer_equals_the_direct_formulation(hw):
    torch.manual_seed(0)
    layer = SwinLayer3D(32, depth=2, num_heads=4, frames=3, window=(4, 4)).eval()
    with torch.no_grad():
        for blk in layer.blocks:
            blk.attn.relative_position_bias_table.normal_(0, 1.0)
    x = torch.randn(6, 32, *hw)
    with torch.no_grad():
        ours, ref = layer(x), direct_swin_layer(layer, x)
    assert ours.shape == x.shape
    assert (ours - ref).abs().max() < 1e-5
    # frames of different clips never mix: changing clip 1 leaves clip 0 untouched
    x2 = x.clone()
    x2[3:] = torch.randn(3, 32, *hw)
    with torch.no_grad():
        assert torch.allclose(layer(x2)[:3], ours[:3], atol=1e-6)
        assert not torch.allclose(layer(x2)[3:], ours[3:], atol=1e-3)


def test_the_kept_attention_mask_follows_weight_changes_and_autograd():
    """The shift mask is kept between calls (per map size and dtype), the bias is not: an in-place change of
    the bias table must show in the next call, and with autograd the mask is built in the graph (the table
    gets a gradient)."""
    torch.manual_seed(0)
    layer = SwinLayer3D(32, depth=2, num_heads=4, frames=3, window=(4, 4)).eval()
    x = torch.randn(3, 32, 8, 8)
    with torch.no_grad():
        first = layer(x)
        for blk in layer.blocks:
            blk.attn.relative_position_bias_table.normal_(0, 1.0)  # same storage, new version
        second = layer(x)
        assert (first - second).abs().max() > 1e-3
        assert (second - direct_swin_layer(layer, x)).abs().max() < 1e-5
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the bf16 mask is kept apart from the fp32 one
            low = layer(x)
        assert (low.float() - second).abs().max() < 0.1
        assert (layer(x) - second).abs().max() == 0
    layer(x).sum().backward()
    for blk in layer.blocks:
        assert blk.attn.relative_position_bias_table.grad.abs().sum() > 0


def test_shifted_windows_attend_across_frames_only_within_a_region():
    """A change at one pixel of frame 2 reaches every frame of its window (time mixing) but not pixels of
    other windows in a single unshifted block."""
    torch.manual_seed(0)
    layer = SwinLayer3D(16, depth=1, num_heads=2, frames=3, window=(4, 4)).eval()
    x = torch.randn(3, 16, 8, 8)
    x2 = x.clone()
    x2[2, :, 1, 1] += 5.0 * torch.randn(16)  # not a constant: LayerNorm would remove that
    with torch.no_grad():
        diff = (layer(x2) - layer(x)).abs().amax(1)  # 3, 8, 8
    assert (diff[:, :4, :4] > 1e-4).all()  # the window containing (1, 1), all frames
    assert diff[:, 4:, :].max() == 0 and diff[:, :, 4:].max() == 0


# ------------------------------------------------------------------------------------- quantizer


def test_vq_embedding_ema_moves_codes_to_their_cluster_means_and_skips_the_padding_code():
    torch.manual_seed(0)
    vq = VQEmbedding(4, 2, decay=0.5, restart_unused_codes=False)
    centres = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]])
    with torch.no_grad():
        vq.weight[:-1] = centres + 0.5 * torch.randn(4, 2)
        vq.weight[-1] = 0.0  # the padding code sits at the centre, closest to nothing in particular
        vq.embed_ema.copy_(vq.weight[:-1])
        vq.cluster_size_ema.fill_(1.0)
    data = (centres[:, None] + 0.1 * torch.randn(4, 64, 2)).reshape(-1, 2)
    vq.train()
    for _ in range(30):
        _, idx = vq(data)
    assert idx.max() < 4  # the padding code is never selected
    means = torch.stack([data[idx == i].mean(0) for i in range(4)])
    assert torch.allclose(vq.weight[:-1], means, atol=1e-2)
    vq.eval()
    before = vq.weight.clone()
    vq(data)
    assert torch.equal(before, vq.weight)  # eval: no update


def test_vq_embedding_restarts_unused_codes_from_the_batch():
    torch.manual_seed(0)
    vq = VQEmbedding(8, 3, decay=0.0).train()
    with torch.no_grad():
        vq.weight[:-1] = 100.0 + torch.randn(8, 3)  # far away from the data: all but one unused
        vq.embed_ema.copy_(vq.weight[:-1])
    data = torch.randn(50, 3)
    vq(data)
    # every code now lies near a data vector (restarted) or is the mean of its assigned vectors
    d = torch.cdist(vq.weight[:-1], data).min(1).values
    assert d.max() < 1.0


# ------------------------------------------------------------------------------------- whole network


@pytest.fixture(scope="module")
def small():
    """(net, x = 2 windows, (out, logits, lq_feat) of the batched call)."""
    net = small_net(0)
    x = frames(2, seed=2)
    with torch.no_grad():
        return net, x, net(x)


def test_small_network_shapes_and_strict_round_trip(small):
    net, x, (out, logits, lq) = small
    assert out.shape == (6, 3, 32, 32)
    assert logits.shape == (6, 8, 8, 1, 64)
    assert lq.shape == (6, 8, 8, 64)
    other = small_net(5)
    x1 = x[:3]
    with torch.no_grad():
        assert not torch.allclose(other(x1)[0], out[:3], atol=1e-3)
        other.load_state_dict(net.state_dict(), strict=True)
        assert (other(x1)[0] - out[:3]).abs().max() < 1e-5
    with pytest.raises(ValueError, match=r"clips of 3 frames"):
        net(torch.rand(4, 3, 32, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(3, 3, 34, 32))


def test_a_batch_of_windows_equals_each_window_alone(small):
    """The official residual shortcut only broadcasts for one window per call; ours runs B windows."""
    net, x, (out, logits, lq) = small
    with torch.no_grad():
        for i in range(2):
            s = slice(3 * i, 3 * i + 3)
            o1, l1, q1 = net(x[s])
            assert (lq[s] - q1).abs().max() < 1e-5
            assert (logits[s] - l1).abs().max() < 1e-5
            assert torch.equal(logits[s].argmax(-1), l1.argmax(-1))
            assert (out[s] - o1).abs().max() < 1e-5
    assert (out[:3] - out[3:]).abs().max() > 1e-2  # two different windows


def test_the_fidelity_weight_and_adain_change_the_output(small):
    net, x, (out, _, _) = small
    x1 = x[:3]
    with torch.no_grad():
        out0 = net(x1, w=0.0)[0]
        out_no_adain = net(x1, w=1.0, adain=False)[0]
        logits, lq = net(x1, code_only=True)
    assert (out[:3] - out0).abs().max() > 1e-3
    assert (out[:3] - out_no_adain).abs().max() > 1e-3
    assert logits.shape == (3, 8, 8, 1, 64) and lq.shape == (3, 8, 8, 64)


def test_train_returns_the_module_and_keeps_frozen_modules_in_eval():
    net = small_net(3)
    assert net.train() is net
    assert net.training and not net.conditionnet.training and not net.decoder.training
    assert not net.quantizer.training and not net.post_quant_conv.training
    assert net.encoder.training and net.ft_layers.training
    assert not any(p.requires_grad for p in net.conditionnet.parameters())
    assert not any(p.requires_grad for p in net.decoder.parameters())
    assert all(p.requires_grad for p in net.ft_layers.parameters())
    stats = net.conditionnet.cp.resnet.bn1.running_mean.clone()
    net(frames(1))
    assert torch.equal(stats, net.conditionnet.cp.resnet.bn1.running_mean)  # BatchNorm stays in eval


# ------------------------------------------------------------------------------------- golden parity


def _golden(golden_dir):
    gw = golden_weights()

    g = golden_dir / "pgtformer"
    sd = gw.make_state_dict(str(g / "manifest.json"), overrides=str(g / "int_buffers.safetensors"))
    net = PGTFormer(**OFFICIAL_CONFIG)
    net.load_state_dict(sd, strict=True)
    del sd
    return net.eval(), gw.load_safetensors(str(g / "io.safetensors"))


@pytest.mark.slow
def test_golden_parity_one_window(golden_dir):
    net, io = _golden(golden_dir)
    x = io["input"]
    with torch.no_grad():
        out, logits, lq_cl = net(x, w=1)
        codes = logits.argmax(-1)
        fragile = io["fragile"]
        keep = torch.ones(codes.numel(), dtype=torch.bool)
        keep[fragile] = False
        assert torch.equal(codes.reshape(-1)[keep], io["codes"].reshape(-1)[keep])
        diffs = {
            "output": (out - io["output"]).abs().max().item(),
            "lq_feat": (lq_cl - io["lq_feat"]).abs().max().item(),
            "logits_first16": (logits[:, 0, :16, 0, :] - io["logits_first16"]).abs().max().item(),
            "parsing_cond": (net.parsing_condition(x) - io["parsing_cond"]).abs().max().item(),
            "quant_feat": (net.lookup(codes, lq_cl.permute(0, 3, 1, 2)) - io["quant_feat"])
            .abs()
            .max()
            .item(),
        }
        if not torch.equal(codes, io["codes"]):  # a fragile code flipped: check the generator on its own
            _, feats = net.encode(x)
            diffs.pop("quant_feat")
            diffs["output"] = (
                (net.decode_fused(io["quant_feat"], feats, 1.0) - io["output"]).abs().max().item()
            )
    print("pgtformer golden max abs diffs:", diffs)
    for k, v in diffs.items():
        assert v <= (2e-4 if k == "output" else 1e-4), (k, v)


@pytest.mark.slow
def test_golden_parity_as_one_window_of_a_batch(golden_dir):
    """The fixture window as the second of two windows in one call gives the fixture's results."""
    net, io = _golden(golden_dir)
    other = torch.rand(3, 3, 512, 512, generator=torch.Generator().manual_seed(7))
    x = torch.cat([other, io["input"]])
    with torch.no_grad():
        out, logits, lq_cl = net(x, w=1)
    s = slice(3, 6)
    codes = logits[s].argmax(-1)
    keep = torch.ones(codes.numel(), dtype=torch.bool)
    keep[io["fragile"]] = False
    assert torch.equal(codes.reshape(-1)[keep], io["codes"].reshape(-1)[keep])
    diffs = {
        "lq_feat": (lq_cl[s] - io["lq_feat"]).abs().max().item(),
        "logits_first16": (logits[s][:, 0, :16, 0, :] - io["logits_first16"]).abs().max().item(),
    }
    if torch.equal(codes, io["codes"]):
        diffs["output"] = (out[s] - io["output"]).abs().max().item()
    print("pgtformer golden (window 2 of 2) max abs diffs:", diffs)
    for k, v in diffs.items():
        assert v <= (2e-4 if k == "output" else 1e-4), (k, v)
