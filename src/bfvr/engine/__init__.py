"""bfvr.engine: the ClipModel contract, the streaming clip engine and the device/precision policy."""

from bfvr.engine.base import ClipModel, IdentityModel
from bfvr.engine.chunker import ClipEngine, blend_weights, pad_indices
from bfvr.engine.device import autocast, cpu_has_native_bf16, resolve_device, resolve_precision

__all__ = [
    "ClipEngine", "ClipModel", "IdentityModel", "autocast", "blend_weights", "cpu_has_native_bf16", "pad_indices",
    "resolve_device", "resolve_precision",
]
