"""``--paste-mask parsing`` from PGTFormer's face-parsing BiSeNet (19 CelebAMask-HQ classes, `parsing.py`).

Its main head labels each pixel of the restored crop; the pixels of the face classes (skin, brows, eyes,
glasses, ears, nose, mouth, lips and hair by default) form the mask (`bfvr.faces.parsing_mask.LabelMasker`
erodes, blurs and multiplies it by the pipeline's feathered box). The network comes from the running PGTFormer
model (its ``conditionnet``, `PGTFormerClipModel.paste_masks`), or from a weights file: a PGTFormer checkpoint
(the ``conditionnet.*`` tensors are taken) or a plain face-parsing BiSeNet state_dict (e.g. the widely used
``79999_iter.pth``). `find_parsing_weights` looks for the PGTFormer weights in the cache; without any,
`ParsingMasker.load` raises a `ConfigError` that says so in one sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bfvr.errors import ConfigError
from bfvr.faces.parsing_mask import LabelMasker

#: class ids (of `bfvr.models.pgtformer.parsing.CLASSES`) pasted by default: the face and the hair
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 17)
PREFIX = "conditionnet."


def find_parsing_weights(path: str | Path | None = None) -> Path | None:
    """`path` if given, else the cached PGTFormer weights when they are there, else None."""
    if path is not None:
        return Path(path)
    from bfvr.models import weights as W

    cached = W.cached_path("pgtformer")
    return cached if cached.is_file() else None


def require_parsing_weights(path: str | Path | None = None) -> Path:
    """The parsing weights (`find_parsing_weights`), or a `ConfigError` saying in one sentence that there
    are none."""
    found = find_parsing_weights(path)
    if found is None or not found.is_file():
        where = (f"{found} does not exist" if found is not None
                 else "the PGTFormer weights are not in the cache")
        raise ConfigError(
            f"--paste-mask parsing needs face-parsing weights and {where}; run `bfvr models "
            "download pgtformer` (or restore with -m pgtformer), or use --paste-mask box."
        )
    return found


def parsing_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The BiSeNet tensors of a PGTFormer state_dict (prefix stripped) or of a plain BiSeNet one."""
    inner = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    return inner or dict(state)


class ParsingMasker(LabelMasker):
    """`masker(face uint8 [h, w, 3]) -> float32 [h, w]` in [0, 1] from a BiSeNet's labels."""

    def __init__(self, net: torch.nn.Module, envelope: np.ndarray, *, classes: Sequence[int] = FACE_CLASSES,
                 erode: float = 0.01, feather: float = 0.01,
                 device: torch.device | str | None = None) -> None:
        # a model's own network stays where the model keeps it (device None)
        self.net = (net if device is None else net.to(device)).eval().requires_grad_(False)
        self.device = next(self.net.parameters()).device if device is None else torch.device(device)
        super().__init__(envelope, classes=classes, erode=erode, feather=feather)

    @classmethod
    def load(cls, envelope: np.ndarray, weights: str | Path | None = None, **kw) -> ParsingMasker:
        """A masker whose network is read from `weights` (or the cached PGTFormer weights)."""
        from bfvr.models.pgtformer.parsing import BiSeNet
        from bfvr.models.weights import load_state_dict

        path = require_parsing_weights(weights)
        net = BiSeNet(19)
        state = parsing_state_dict(load_state_dict(path, key="params_ema"))
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"{path} holds no face-parsing BiSeNet ({len(missing)} of its tensors are missing); "
                "pass PGTFormer weights or a face-parsing BiSeNet state_dict."
            )
        return cls(net, envelope, **kw)

    @torch.no_grad()
    def labels(self, face: np.ndarray) -> np.ndarray:
        """Class id per pixel (int64 [h, w]) of the parsing net's main head."""
        from bfvr.models.pgtformer.parsing import imagenet_normalize

        x = torch.from_numpy(np.ascontiguousarray(face)).to(self.device).permute(2, 0, 1)[None].float() / 255
        return self.net.parse(imagenet_normalize(x))[0].argmax(0).cpu().numpy()
