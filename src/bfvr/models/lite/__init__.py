"""BFVR-Lite: the project's own compact temporal restoration network (the bundled default model)."""

from bfvr.models.lite.net import LiteNet

__all__ = ["LiteNet"]
