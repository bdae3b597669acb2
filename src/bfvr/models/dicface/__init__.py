"""DicFace (ICCV 2025): Dirichlet-constrained variational codebook learning for temporally coherent video
face restoration. The network (`DicFace`) has the official parameter names.

    from bfvr.models.dicface import DicFace
    net = DicFace(frame_length=5)              # bfr_100k.pth / color_100k.pth / inpainting_100k.pth layout
    out, lq_feat, alpha = net(x, w=1.0)        # x [(B*5), 3, 512, 512] in [-1, 1]
"""

from bfvr.models.dicface.net import SAMPLING_MODES, DicFace, FuseSFTBlock2d, MultiScaleFuse
from bfvr.models.dicface.vqgan import Codebook, Encoder2d, Generator2d

__all__ = [
    "SAMPLING_MODES",
    "Codebook",
    "DicFace",
    "Encoder2d",
    "FuseSFTBlock2d",
    "Generator2d",
    "MultiScaleFuse",
]
