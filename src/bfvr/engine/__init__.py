"""bfvr.engine: the ClipModel contract, the streaming clip engine and the device/precision policy."""

from bfvr.engine.base import ClipModel, IdentityModel, ModelContract, Schedule, contract_of
from bfvr.engine.chunker import ClipEngine, ClipStream, WindowStream, blend_weights, pad_indices
from bfvr.engine.device import autocast, cpu_has_native_bf16, resolve_device, resolve_precision

__all__ = [
    "ClipEngine", "ClipModel", "ClipStream", "IdentityModel", "ModelContract", "Schedule", "WindowStream",
    "autocast", "blend_weights", "contract_of", "cpu_has_native_bf16", "pad_indices", "resolve_device",
    "resolve_precision",
]
