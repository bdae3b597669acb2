"""Top-k accuracy of code predictions (logged by the training tasks that predict codebook indices, and
reported by `bfvr evaluate-codes`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor,
                  ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of positions whose target index is among the k highest logits, for each k in `ks`.

    logits [..., N], targets [...] (integer indices in [0, N)); a k larger than N counts every position
    as a hit, a k below 1 is a ValueError. Ties between equal logits are broken the way `torch.topk` breaks
    them.
    """
    if any(k < 1 for k in ks):
        raise ValueError(f"top-k accuracy needs every k >= 1, got {tuple(ks)}")
    n = logits.shape[-1]
    flat = logits.detach().reshape(-1, n)
    tgt = targets.detach().reshape(-1).to(flat.device)
    if flat.shape[0] != tgt.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match")
    if not ks:
        return {}
    kmax = min(max(ks), n)
    top = flat.topk(kmax, dim=-1).indices  # [P, kmax], best first
    hit = top == tgt[:, None]
    # hit at rank r (0-based) or earlier: cumulative over ranks
    cum = hit.cumsum(dim=-1).clamp_(max=1).float().mean(dim=0)  # [kmax]
    return {int(k): float(cum[min(k, n) - 1]) if tgt.numel() else float("nan") for k in ks}
