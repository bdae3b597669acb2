"""Shared layers: 3D conv blocks (VQGAN style) and SDPA-based attention blocks."""

from bfvr.models.blocks.attention import (
    AttnBlock,
    LayerNorm,
    MultiheadSelfAttention,
    TemporalAttention,
    TransformerSALayer,
    chunked_attention,
)
from bfvr.models.blocks.conv3d import (
    Downsample,
    Downsample2D,
    GroupNorm,
    ResBlock,
    Upsample,
    Upsample2D,
    memory_format_of,
    normalize,
    swish,
)

__all__ = [
    "AttnBlock", "Downsample", "Downsample2D", "GroupNorm", "LayerNorm", "MultiheadSelfAttention", "ResBlock",
    "TemporalAttention", "TransformerSALayer", "Upsample", "Upsample2D", "chunked_attention",
    "memory_format_of", "normalize", "swish",
]
