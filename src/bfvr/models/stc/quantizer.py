"""BFVR-STC spatio-temporal vector quantiser: a spatial and a temporal codebook, fused by addition.

* spatial branch: nearest code of the latent z in `embedding_s`;
* temporal branch: nearest code in `embedding_t` of z_T = SA(z) + motion residual(z), where SA is
  attention along T per spatial position (no residual) and the motion residual is z_t - z_{t-1} (0 at t=0);
* z_q = e_s + e_t with a straight-through gradient; code loss (``commitment="official"``, the released
  code) ||sg(z_q) - z||^2 + beta ||z_q - sg(z)||^2, i.e. weight 1 on the encoder (commitment) term and beta
  on the codebook term; ``commitment="paper"`` puts beta where the printed Eq. 7 has it:
  ||sg(z) - z_q||^2 + beta ||z - sg(z_q)||^2 (codebook term weight 1, commitment term beta);
* marginal prior regularisation (MPR): a soft assignment q of every token to the codes, averaged to a
  marginal code usage P, pushed towards the uniform prior U with KL(P || U) = sum_n P_n log(N P_n)
  (log N for a collapsed codebook, 0 for uniform usage). The forms (``mpr=``):

  - ``"paper"``: as printed, q_n proportional to 1/D_n with D_n = ||z - e_n|| (Euclidean). Inert in
    practice: with the codes near the origin every token is almost equally far from every code, so q
    and P stay uniform (KL ~1e-7) even when a handful of codes take all the tokens;
  - ``"gaussian"``: q = softmax_n(-D_n^2 / s), a temperature on the similarity -D^2 (the posterior of an
    isotropic Gaussian mixture on the codes) with s = ``mpr_temperature`` x the spread of D^2 over the
    codes (no gradient through s), so it does not depend on the scale of the latents; as the
    temperature goes to 0, KL(P || U) goes to log(N / perplexity) of the hard usage. The form that acts;
  - ``"official"``: the released code, ``KLDivLoss()(log_softmax(P), softmax(U))`` with q proportional to
    1/D^2; about 1e-10 whatever the usage, i.e. no regulariser;
  - ``"none"``: 0.

  All are scaled by `mpr_weight` (official 0.1; the paper's total loss weighs the term 1).

Index maps are laid out [(B*T'), H'*W'] with the batch outermost, which equals the official layout for
batch 1 and stays correct for any batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.models.blocks import TemporalAttention

MPRForm = Literal["paper", "gaussian", "official", "none"]
MPR_FORMS = ("paper", "gaussian", "official", "none")


def motion_residual(z: torch.Tensor) -> torch.Tensor:
    """z[:, :, t] - z[:, :, t-1] for t >= 1 and 0 for t = 0, on a B C T H W tensor (the stage-I formula)."""
    return torch.cat([torch.zeros_like(z[:, :, :1]), z[:, :, 1:] - z[:, :, :-1]], dim=2)


def official_stage2_residual(z: torch.Tensor) -> torch.Tensor:
    """The stage-II "temporal residual" exactly as the official checkpoints were trained with it.

    The official code takes the first difference of a B C T H W tensor after an axis permutation meant for
    B T H W C: per sample, the memory of z (C, T, H, W order) is cut into T consecutive rows, the row-wise
    first difference is taken (row 0 -> 0) and the result is read back as (T, H, W, C). Done per sample so
    a batch gives the same result as its samples one by one (official = batch 1). Returns B C T H W.
    """
    b, c, t, h, w = z.shape
    rows = z.contiguous().view(b, t, c * h * w)
    diff = torch.cat([torch.zeros_like(rows[:, :1]), rows[:, 1:] - rows[:, :-1]], dim=1)
    return diff.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)


def soft_assignment(d: torch.Tensor, temperature: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """Inverse-distance soft assignment q [tokens, N] from squared distances d [tokens, N]: q_n proportional
    to D_n^(-1/temperature), D the Euclidean distance (temperature 1 = the paper's printed 1/D_E, 1/2 =
    inverse squared distances, as the released code)."""
    return torch.softmax(torch.log(d.float().clamp_min(eps)) * (-0.5 / temperature), dim=1)


def soft_marginal(d: torch.Tensor, temperature: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """Marginal code usage P [N]: the mean over tokens of `soft_assignment(d, temperature)`."""
    return soft_assignment(d, temperature, eps).mean(dim=0)


def gaussian_assignment(d: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Gaussian soft assignment q [tokens, N] = softmax_n(-d_n / s) from squared distances d, i.e. the
    posterior of an isotropic Gaussian mixture centred on the codes. The width s is `temperature` times
    the spread of the squared distances (the mean over tokens of their standard deviation over the codes,
    without gradient), so the sharpness does not depend on the scale of the latents."""
    d = d.float()
    spread = d.detach().std(dim=1).mean().clamp_min(1e-12)
    return torch.softmax((d.amin(dim=1, keepdim=True).detach() - d) / (temperature * spread), dim=1)


def official_soft_marginal(d: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The released code's marginal: mean over tokens of (1/d) / sum(1/d) on squared distances d."""
    inv = 1.0 / d.clamp_min(eps)
    return (inv / inv.sum(dim=1, keepdim=True)).mean(dim=0)


def marginal_prior_kl(p: torch.Tensor, form: MPRForm = "paper") -> torch.Tensor:
    """Divergence of a marginal code distribution p [N] from the uniform prior.

    ``paper`` / ``gaussian``: KL(p || U) = sum_n p_n log(N p_n) (0 log 0 = 0). ``official``: the released
    code's ``KLDivLoss()(log_softmax(p), softmax(U))`` with mean reduction (close to 0 for any p).
    """
    n = p.shape[-1]
    if form in ("paper", "gaussian"):
        return torch.where(p > 0, p * torch.log(p.clamp_min(1e-30) * n), torch.zeros_like(p)).sum(-1)
    if form == "official":
        target = F.softmax(torch.full_like(p, 1.0 / n), dim=-1)
        # nn.KLDivLoss() default ("mean" reduction: averaged over every element)
        return torch.mean(target * (torch.log(target) - F.log_softmax(p, dim=-1)))
    if form == "none":
        return p.new_zeros(())
    raise ValueError(f"unknown MPR form {form!r}; use one of {', '.join(MPR_FORMS)}")


def mpr_term(d: torch.Tensor, form: MPRForm, temperature: float = 1.0) -> torch.Tensor:
    """The (unweighted) MPR of one codebook from the squared distances d [tokens, N] of its tokens."""
    if form == "official":
        return marginal_prior_kl(official_soft_marginal(d), "official")
    if form == "paper":
        return marginal_prior_kl(soft_marginal(d, 1.0), "paper")
    if form == "gaussian":
        return marginal_prior_kl(gaussian_assignment(d, temperature).mean(dim=0), "paper")
    if form == "none":
        return d.new_zeros(())
    raise ValueError(f"unknown MPR form {form!r}; use one of {', '.join(MPR_FORMS)}")


def usage_stats(idx: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """Hard code usage of index tensor `idx`: counts [n], active codes, perplexity exp(entropy)."""
    counts = torch.bincount(idx.reshape(-1), minlength=n)
    p = counts.to(torch.float32) / max(idx.numel(), 1)
    return {"counts": counts, "active": (counts > 0).sum(),
            "perplexity": torch.exp(-torch.sum(p * torch.log(p + 1e-10)))}


def _sq_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """||z_i - e_n||^2 for flat tokens z [M, C] and codes [N, C] (expanded form, as the official code)."""
    return (z.pow(2).sum(dim=1, keepdim=True) + codebook.pow(2).sum(dim=1)
            - 2.0 * torch.matmul(z, codebook.t()))


def _perplexity(idx: torch.Tensor, n: int) -> torch.Tensor:
    e_mean = torch.bincount(idx, minlength=n).to(torch.float32) / idx.numel()
    return torch.exp(-torch.sum(e_mean * torch.log(e_mean + 1e-10)))


class VectorQuantizerST(nn.Module):
    """Spatial + temporal codebooks (`embedding_s`, `embedding_t`) and the temporal attention `SA`."""

    def __init__(self, codebook_size: int = 1024, emb_dim: int = 256, beta: float = 0.25, *,
                 mpr: MPRForm = "paper", mpr_weight: float = 0.1, mpr_temperature: float = 1.0,
                 sa_groups: int = 16, sa_eps: float = 1e-6, commitment: str = "official") -> None:
        super().__init__()
        if commitment not in ("official", "paper"):
            raise ValueError(f"commitment must be 'official' or 'paper', not {commitment!r}")
        self.commitment = commitment
        if mpr not in MPR_FORMS:
            raise ValueError(f"unknown MPR form {mpr!r}; use one of {', '.join(MPR_FORMS)}")
        if not mpr_temperature > 0:
            raise ValueError(f"mpr_temperature must be positive, got {mpr_temperature}")
        self.codebook_size, self.emb_dim, self.beta = codebook_size, emb_dim, beta
        self.mpr, self.mpr_weight, self.mpr_temperature = mpr, mpr_weight, mpr_temperature
        self.embedding_s = nn.Embedding(codebook_size, emb_dim)
        self.embedding_t = nn.Embedding(codebook_size, emb_dim)
        nn.init.uniform_(self.embedding_s.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        nn.init.uniform_(self.embedding_t.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self.SA = TemporalAttention(emb_dim, groups=sa_groups, eps=sa_eps)

    def temporal_latent(self, z: torch.Tensor) -> torch.Tensor:
        """z_T = SA(z) + motion residual(z), B C T H W."""
        return self.SA(z) + motion_residual(z)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Quantise z [B, C, T, H, W] -> (z_q BCTHW, code loss, MPR loss, stats)."""
        b, c, t, h, w = z.shape
        zt = self.temporal_latent(z)
        zf = z.permute(0, 2, 3, 4, 1).reshape(-1, c)
        ztf = zt.permute(0, 2, 3, 4, 1).reshape(-1, c)
        d_s = _sq_distances(zf, self.embedding_s.weight)
        d_t = _sq_distances(ztf, self.embedding_t.weight)
        idx_s, idx_t = d_s.argmin(dim=1), d_t.argmin(dim=1)
        zq = (self.embedding_s(idx_s) + self.embedding_t(idx_t)).view(b, t, h, w, c)
        z_bthwc = z.permute(0, 2, 3, 4, 1)
        enc = torch.mean((zq.detach() - z_bthwc) ** 2)   # moves the encoder (commitment)
        book = torch.mean((zq - z_bthwc.detach()) ** 2)  # moves the codebooks
        loss = enc + self.beta * book if self.commitment == "official" else book + self.beta * enc
        if self.mpr == "none":
            mpr = z.new_zeros(())
        else:
            mpr = self.mpr_weight * (mpr_term(d_s, self.mpr, self.mpr_temperature)
                                     + mpr_term(d_t, self.mpr, self.mpr_temperature))
        zq = z_bthwc + (zq - z_bthwc).detach()  # straight-through
        stats = {
            "perplexity_s": _perplexity(idx_s, self.codebook_size),
            "perplexity_t": _perplexity(idx_t, self.codebook_size),
            "min_encoding_indices_s": idx_s.view(b * t, h * w),
            "min_encoding_indices_t": idx_t.view(b * t, h * w),
        }
        return zq.permute(0, 4, 1, 2, 3), loss, mpr, stats

    def get_codebook_feat(self, idx_s: torch.Tensor, idx_t: torch.Tensor,
                          shape: tuple[int, int, int, int, int] | torch.Size) -> torch.Tensor:
        """Codes -> e_s + e_t as B C T H W; `shape` is (B, T, H, W, C) and the indices hold B*T*H*W codes."""
        b, t, h, w, c = shape
        feat = self.embedding_s(idx_s.reshape(-1)) + self.embedding_t(idx_t.reshape(-1))
        return feat.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)
