"""BFVR-STC (CVPR 2025): 3D VQGAN with spatial + temporal codebooks (stage I) and the code-lookup
transformers (stage II). Parameter names equal the official state_dict keys.

    from bfvr.models.stc import STCVQGAN, STCStage2
    net = STCStage2(n_head=2, n_layers=9, official_residual=True)   # ckpt-bfvr.pth layout
    net = STCStage2(n_head=4, n_layers=6, official_residual=True)   # de-flicker checkpoints
"""

from bfvr.models.stc.quantizer import (
    VectorQuantizerST,
    marginal_prior_kl,
    motion_residual,
    official_stage2_residual,
    soft_marginal,
)
from bfvr.models.stc.stage2 import FuseSFTBlock, STCStage2, adaptive_instance_normalization
from bfvr.models.stc.vqgan3d import STCVQGAN, Encoder3D, Generator3D

__all__ = [
    "Encoder3D", "FuseSFTBlock", "Generator3D", "STCStage2", "STCVQGAN", "VectorQuantizerST",
    "adaptive_instance_normalization", "marginal_prior_kl", "motion_residual", "official_stage2_residual",
    "soft_marginal",
]
