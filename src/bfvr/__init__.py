"""bfvr: blind face video restoration (STC, DicFace, PGTFormer)."""

from __future__ import annotations

from bfvr.errors import BfvrError

__version__ = "0.1.0"
__all__ = ["BfvrError", "Restorer", "__version__"]


def __getattr__(name: str):
    # Restorer pulls in torch; import it lazily so `import bfvr` and `bfvr --help` stay fast.
    if name == "Restorer":
        from bfvr.api import Restorer

        return Restorer
    raise AttributeError(name)
