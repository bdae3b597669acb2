"""PGTFormer (IJCAI 2024, "Beyond Alignment: Blind Video Face Restoration via Parsing-Guided
Temporal-Coherent Transformer"). Parameter names equal the official state_dict keys.

    from bfvr.models.pgtformer import PGTFormer, OFFICIAL_CONFIG
    net = PGTFormer(**OFFICIAL_CONFIG).eval()          # kepeng/pgtformer-base layout
    out, logits, lq_feat = net(x)                      # x [(B*3), 3, 512, 512] in [0, 1]
"""

from bfvr.models.pgtformer.net import OFFICIAL_CONFIG, PGTFormer, TemporalFuseBlock, config_from_official
from bfvr.models.pgtformer.parsing import CLASSES, BiSeNet, imagenet_normalize
from bfvr.models.pgtformer.swin import SwinLayer3D, WindowAttention3D, relative_position_index
from bfvr.models.pgtformer.tsvqgan import OFFICIAL_DDCONFIG, TSVQGAN, ResidualQuantizer, VQEmbedding

__all__ = [
    "CLASSES",
    "OFFICIAL_CONFIG",
    "OFFICIAL_DDCONFIG",
    "TSVQGAN",
    "BiSeNet",
    "PGTFormer",
    "ResidualQuantizer",
    "SwinLayer3D",
    "TemporalFuseBlock",
    "VQEmbedding",
    "WindowAttention3D",
    "config_from_official",
    "imagenet_normalize",
    "relative_position_index",
]
