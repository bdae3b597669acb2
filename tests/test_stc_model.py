"""BFVR-STC networks: parity with the official code on the golden fixtures (fp32), official state_dict
layouts, the stage-II residual option, the MPR forms and batch independence."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bfvr.errors import ConfigError
from bfvr.models.stc import (
    STCVQGAN,
    STCStage2,
    marginal_prior_kl,
    motion_residual,
    official_stage2_residual,
    soft_marginal,
)
from helpers import golden_weights, shared_path

TOL = 1e-4


def _golden(name: str):
    """(state_dict from the manifest, io tensors, meta) of fixture `name`; skips when ../shared is absent."""
    gw = golden_weights()
    d = shared_path("golden", name)
    return (gw.make_state_dict(str(d / "manifest.json")), gw.load_safetensors(str(d / "io.safetensors")),
            json.loads((d / "meta.json").read_text()))


def _manifest(name: str) -> dict[str, tuple[int, ...]]:
    d = shared_path("golden", name)
    return {k: tuple(s) for k, s, _ in json.loads((d / "manifest.json").read_text())}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def _assert_indices(ours: torch.Tensor, ref: torch.Tensor, fragile: torch.Tensor | None = None) -> None:
    assert ours.shape == ref.shape
    ok = torch.ones(ref.numel(), dtype=torch.bool)
    if fragile is not None:
        ok[fragile] = False
    mismatch = (ours.reshape(-1) != ref.reshape(-1)) & ok
    assert int(mismatch.sum()) == 0, f"{int(mismatch.sum())} indices differ outside the fragile positions"


# ------------------------------------------------------------------------------------- golden parity

@pytest.fixture(scope="module")
def stage1_fixture():
    return _golden("stc_stage1_small")


def test_stage1_small_matches_official(stage1_fixture):
    sd, io, meta = stage1_fixture
    kw = meta["constructor"]["kwargs"]
    net = STCVQGAN.from_state_dict(sd, strict=True, nf=kw["nf"], ch_mult=kw["ch_mult"],
                                   res_blocks=kw["res_blocks"], codebook_size=kw["codebook_size"],
                                   emb_dim=kw["emb_dim"], beta=kw["beta"],
                                   attn_resolutions=kw["attn_resolutions"], mpr="official").eval()
    with torch.no_grad():
        z = net.encode(io["input"])
        z_q, loss_q, mpr_q, stats_q = net.quantize(z)
        out, loss, mpr, stats = net(io["input"])
    assert _max_diff(out, io["output"]) <= TOL
    assert _max_diff(z, io["z"]) <= TOL
    assert _max_diff(z_q, io["z_q"]) <= TOL
    _assert_indices(stats["min_encoding_indices_s"], io["idx_s"])
    _assert_indices(stats["min_encoding_indices_t"], io["idx_t"])
    assert loss.item() == pytest.approx(io["codebook_loss"].item(), rel=1e-5)
    assert abs(mpr.item() - io["mpr_loss"].item()) <= 1e-9
    assert stats["perplexity_s"].item() == pytest.approx(io["perplexity_s"].item(), rel=1e-5)
    assert stats["perplexity_t"].item() == pytest.approx(io["perplexity_t"].item(), rel=1e-5)
    # the paper's MPR on the same latent: same quantisation, a real (non-vanishing) regulariser
    net.quantize.mpr = "paper"
    with torch.no_grad():
        z_q2, _, mpr_paper, _ = net.quantize(z)
    assert torch.equal(z_q2, z_q)  # the MPR form never changes the codes
    assert mpr_paper.item() > 1e3 * abs(mpr.item())


def _stage2(name: str, official_residual: bool = True):
    sd, io, meta = _golden(name)
    kw = meta["constructor"]["kwargs"]
    net = STCStage2.from_state_dict(sd, strict=True, n_head=kw["n_head"], n_layers=kw["n_layers"],
                                    codebook_size=kw["codebook_size"], dim_embd=kw["dim_embd"],
                                    official_residual=official_residual).eval()
    return net, io


def test_stage2_temporal_tokens_match_official_quirk_and_differ_from_corrected():
    """The tokens entering the first temporal layer, from the fixture's own lq_feat (cheap: no encoder)."""
    net, io = _stage2("stc_stage2")
    lq = io["lq_feat"]
    with torch.no_grad():
        tokens = net.frame_tokens(net.temporal_latent(lq)).transpose(0, 1)[:1024]
        assert _max_diff(tokens, io["t_tokens_in_first1024"]) <= TOL
        net.official_residual = False
        corrected = net.frame_tokens(net.temporal_latent(lq)).transpose(0, 1)[:1024]
    # the size of the quirk recorded by the fixture's diagnostics (max 6.92)
    assert _max_diff(corrected, io["t_tokens_in_first1024"]) > 1.0


def test_stage2_first_frame_logits_from_lq_feat():
    """Cheap stage-II check (default run): both transformers + heads on latent frame 0 of the official
    lq_feat. Tokens of one latent frame only attend to each other, and the temporal tokens are built
    from the whole clip first, so frame 0 alone is exact."""
    net, io = _stage2("stc_stage2")
    lq = io["lq_feat"]
    with torch.no_grad():
        s_tok = net.frame_tokens(lq)[:1]
        t_tok = net.frame_tokens(net.temporal_latent(lq))[:1]
        logits_s = net.run_layers(net.s_ft_layers, net.s_idx_pred_layer, s_tok, net.position_emb_s)
        logits_t = net.run_layers(net.t_ft_layers, net.t_idx_pred_layer, t_tok, net.position_emb_t)
    assert _max_diff(logits_s[:, :16], io["logits_s_first16"][:1]) <= TOL
    assert _max_diff(logits_t[:, :16], io["logits_t_first16"][:1]) <= TOL
    n = logits_s.shape[1]
    _assert_indices(logits_s.argmax(-1), io["idx_s"][:1], io["fragile_s"][io["fragile_s"] < n])
    _assert_indices(logits_t.argmax(-1), io["idx_t"][:1], io["fragile_t"][io["fragile_t"] < n])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stc_stage2", "stc_deflicker_stage2"])
def test_stage2_logits_and_indices_from_lq_feat(name):
    """Both transformers + heads on the official lq_feat (both fixtures share the encoder, so stc_stage2's
    lq_feat is the de-flicker model's too); 10-60 s each on a shared 2-core machine."""
    net, io = _stage2(name)
    lq = _golden("stc_stage2")[1]["lq_feat"] if "lq_feat" not in io else io["lq_feat"]
    with torch.no_grad():
        logits_s, logits_t = net.predict_logits(lq)
    assert logits_s.shape == (2, 4096, 1024) and logits_t.shape == (2, 4096, 1024)
    assert _max_diff(logits_s[:, :16], io["logits_s_first16"]) <= TOL
    assert _max_diff(logits_t[:, :16], io["logits_t_first16"]) <= TOL
    _assert_indices(logits_s.argmax(-1), io["idx_s"], io["fragile_s"])
    _assert_indices(logits_t.argmax(-1), io["idx_t"], io["fragile_t"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stc_stage2", "stc_deflicker_stage2"])
def test_stage2_full_forward_matches_official(name):
    """The whole official call at 4x512x512 (30-60 s on 2 cores)."""
    net, io = _stage2(name)
    with torch.no_grad():
        out, logits_s, logits_t, lq_feat = net(io["input"], w=0)
    if "lq_feat" in io:
        assert _max_diff(lq_feat, io["lq_feat"]) <= TOL
    _assert_indices(logits_s.argmax(-1), io["idx_s"], io["fragile_s"])
    _assert_indices(logits_t.argmax(-1), io["idx_t"], io["fragile_t"])
    assert _max_diff(logits_s[:, :16], io["logits_s_first16"]) <= TOL
    assert _max_diff(logits_t[:, :16], io["logits_t_first16"]) <= TOL
    assert _max_diff(out, io["output"]) <= TOL


@pytest.mark.slow
def test_stage2_generator_from_official_indices():
    """Decoder alone: the fixture's indices through our codebooks + generator give its output."""
    net, io = _stage2("stc_stage2")
    with torch.no_grad():
        out = net.decode_indices(io["idx_s"], io["idx_t"], (1, 2, 64, 64, 256))
    assert _max_diff(out, io["output"]) <= TOL


# ----------------------------------------------------------------------------- official layouts

@pytest.mark.parametrize("name,n_head,n_layers,n_params", [
    ("stc_stage2", 2, 9, 71_069_955),
    ("stc_deflicker_stage2", 4, 6, 67_907_331),
])
def test_official_state_dict_layout_loads_strict(name, n_head, n_layers, n_params):
    with torch.device("meta"):
        net = STCStage2(n_head=n_head, n_layers=n_layers, official_residual=True)
    assert sum(p.numel() for p in net.parameters()) == n_params
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    official = _manifest(name)
    assert ours == official
    # a state_dict with exactly these keys and shapes loads strictly (checkpoints are "params_ema" dicts);
    # one key short or one shape off is refused
    sd = {k: torch.zeros(s) for k, s in official.items()}
    net.load_state_dict(sd, strict=True, assign=True)
    assert net.position_emb_s.device.type == "cpu"
    with pytest.raises(RuntimeError, match="Missing key"):
        net.load_state_dict({k: v for k, v in sd.items() if k != "fuse_convs_dict.32.scale.0.bias"},
                            strict=True)
    bad = dict(sd, **{"t_idx_pred_layer.1.weight": torch.zeros(1000, 256)})
    with pytest.raises(RuntimeError, match="size mismatch"):
        net.load_state_dict(bad, strict=True)


def test_stage1_layout_matches_official():
    with torch.device("meta"):
        net = STCVQGAN()
    assert sum(p.numel() for p in net.parameters()) == 39_321_091
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == _manifest("stc_stage1_small")


# ----------------------------------------------------------------------------- residual and MPR

def test_corrected_residual_is_the_stage1_formula_and_official_differs():
    torch.manual_seed(0)
    z = torch.randn(1, 8, 3, 4, 5)
    res = motion_residual(z)
    assert torch.equal(res[:, :, 0], torch.zeros_like(res[:, :, 0]))
    assert torch.allclose(res[:, :, 2], z[:, :, 2] - z[:, :, 1])
    off = official_stage2_residual(z)
    assert off.shape == z.shape
    assert (off - res).abs().max() > 0.5  # T' > 1: the scramble is a different function
    # T' = 1: both are zero
    z1 = z[:, :, :1]
    assert official_stage2_residual(z1).abs().max() == 0 and motion_residual(z1).abs().max() == 0

    net = _random_stage2(n_head=2, n_layers=1, latent_hw=(4, 5), official_residual=False)
    x = torch.randn(1, 64, 3, 4, 5)
    with torch.no_grad():
        assert torch.allclose(net.temporal_latent(x), net.quantize.temporal_latent(x), atol=1e-6)
        net.official_residual = True
        assert (net.temporal_latent(x) - net.quantize.temporal_latent(x)).abs().max() > 0.5


def test_mpr_paper_form_is_kl_to_uniform():
    n = 1024
    collapsed = torch.zeros(n)
    collapsed[7] = 1.0
    assert marginal_prior_kl(collapsed, "paper").item() == pytest.approx(math.log(n), rel=1e-6)
    assert abs(marginal_prior_kl(torch.full((n,), 1.0 / n), "paper").item()) < 1e-6
    # the official form is ~0 even for a collapsed codebook (the finding in the reference notes)
    assert abs(marginal_prior_kl(collapsed, "official").item()) < 1e-6
    # through the soft assignment: every token sits on code 0 -> marginal ~one-hot -> ~log N
    codes = torch.randn(n, 16) * 3
    z = codes[:1] + 1e-4 * torch.randn(500, 16)
    d = (z[:, None] - codes[None]).pow(2).sum(-1)
    assert marginal_prior_kl(soft_marginal(d), "paper").item() > 0.9 * math.log(n)
    # tokens spread evenly over the codes -> close to 0
    z = codes.repeat(4, 1) + 1e-4 * torch.randn(4 * n, 16)
    d = (z[:, None] - codes[None]).pow(2).sum(-1)
    assert marginal_prior_kl(soft_marginal(d), "paper").item() < 0.05


# ----------------------------------------------------------------------------- batch independence

#: a small stage-II layout (same code paths, ~1/50 of the parameters) for the property tests
SMALL = dict(nf=32, ch_mult=(1, 1, 1, 1), res_blocks=1, dim_embd=64, codebook_size=64, connect_list=())


def _random_stage2(**kwargs) -> STCStage2:
    """A stage-II net with random weights of a sensible scale, built without the slow default init."""
    with torch.device("meta"):
        net = STCStage2(**{**SMALL, **kwargs})
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in net.state_dict().items():
        if v.dim() == 1:
            sd[k] = (1.0 if k.endswith("weight") else 0.0) + 0.05 * torch.randn(v.shape, generator=g)
        else:
            sd[k] = torch.randn(v.shape, generator=g) / math.sqrt(v[0].numel())
    net.load_state_dict(sd, strict=True, assign=True)
    return net.eval()


def test_stage1_batch_equals_single_samples(stage1_fixture):
    sd, io, _ = stage1_fixture
    net = STCVQGAN.from_state_dict(sd, mpr="official").eval()
    x1 = io["input"]
    x2 = torch.rand(x1.shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ob, _, _, sb = net(torch.cat([x1, x2]))
        o2, _, _, s2 = net(x2)
    # sample 0 is the fixture input: compare it with the official batch-1 results directly
    assert _max_diff(ob[:1], io["output"]) <= TOL and _max_diff(ob[1:], o2) <= TOL
    t = io["idx_s"].shape[0]
    for key, ref in (("min_encoding_indices_s", io["idx_s"]), ("min_encoding_indices_t", io["idx_t"])):
        assert sb[key].shape == (2 * t, ref.shape[1])
        assert torch.equal(sb[key][:t], ref) and torch.equal(sb[key][t:], s2[key])


@pytest.mark.parametrize("official_residual", [True, False])
def test_stage2_batch_equals_single_samples(official_residual):
    net = _random_stage2(n_head=2, n_layers=2, latent_hw=(4, 4), official_residual=official_residual)
    x = torch.rand(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ob, lsb, ltb, lqb = net(x)
        for i in range(2):
            o, ls, lt, lq = net(x[i:i + 1])
            assert _max_diff(ob[i:i + 1], o) <= TOL
            assert _max_diff(lsb[2 * i:2 * i + 2], ls) <= TOL and _max_diff(ltb[2 * i:2 * i + 2], lt) <= TOL


def test_stage2_rejects_wrong_canvas():
    net = _random_stage2(n_head=2, n_layers=1, latent_hw=(4, 4))
    with pytest.raises(ValueError, match="32x32"):
        with torch.no_grad():
            net(torch.rand(1, 3, 2, 40, 40))


def test_stage1_trains_through_straight_through():
    torch.manual_seed(0)
    net = STCVQGAN(nf=32, ch_mult=(1, 1), res_blocks=1, codebook_size=64, emb_dim=32,
                   attn_resolutions=(128,), resolution=256)
    x = torch.rand(1, 3, 2, 16, 16)
    out, loss, mpr, _ = net(x)
    assert out.shape == x.shape and 0 < out.min() and out.max() < 1
    (torch.nn.functional.l1_loss(out, x) + loss + mpr).backward()
    assert net.encoder.blocks[0].weight.grad is not None and net.encoder.blocks[0].weight.grad.abs().sum() > 0
    assert net.quantize.embedding_s.weight.grad.abs().sum() > 0
    assert net.quantize.embedding_t.weight.grad.abs().sum() > 0


def test_bf16_inference_path_close_to_fp32():
    net = _random_stage2(n_head=2, n_layers=1, latent_hw=(4, 4), official_residual=True)
    x = torch.rand(1, 3, 2, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = net(x)[0]
    ref = net.infer(x, precision="fp32")  # fp32: the official layout, the same numbers as the plain forward
    assert torch.equal(ref, plain)
    assert net.encoder.blocks[0].weight.is_contiguous()  # fp32 left the weights in the official layout
    out = net.infer(x, precision="bf16")
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert out.is_contiguous()
    assert (out - ref).abs().mean() < 0.05
    with pytest.raises(ConfigError, match="unknown precision"):
        net.infer(x, precision="int8")
