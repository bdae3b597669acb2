"""LPIPS (Zhang et al. 2018) with the backbone and linear heads loaded from files you give.

No ImageNet backbone ships offline and bfvr downloads nothing, so LPIPS needs two files:

* the backbone in torchvision's layout: ``vgg16-397923af.pth`` (net ``vgg``) or
  ``alexnet-owt-7be5be79.pth`` (net ``alex``) -- a state_dict with ``features.N.weight/bias`` keys
  (``.pth`` loaded with ``weights_only=True``, or ``.safetensors``);
* the LPIPS v0.1 linear heads ``vgg.pth`` / ``alex.pth`` (keys ``linK.model.1.weight``); they ship
  inside the ``lpips`` wheel (``lpips/weights/v0.1/``) and are found there automatically when that
  package is installed.

Without them :class:`LPIPS` raises "LPIPS unavailable: needs weights ..." -- never a random backbone.
Input: RGB frames (not BGR) in 0..255, mapped once to [-1, 1] (the official STC script normalised
twice). Lower is better.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bfvr.errors import WeightsNotFoundError

__all__ = ["LPIPS", "LPIPSBackbone", "LPIPSDistance", "BACKBONE_FILES", "lpips_heads_path", "load_state"]

BACKBONE_FILES = {"vgg": "vgg16-397923af.pth (torchvision VGG16)",
                  "alex": "alexnet-owt-7be5be79.pth (torchvision AlexNet)"}

# (features index of each conv, its in/out channels, kernel, stride, padding); pools between blocks
_VGG = [(0, 3, 64), (2, 64, 64), "M", (5, 64, 128), (7, 128, 128), "M", (10, 128, 256), (12, 256, 256),
        (14, 256, 256), "M", (17, 256, 512), (19, 512, 512), (21, 512, 512), "M", (24, 512, 512),
        (26, 512, 512), (28, 512, 512)]
_VGG_TAPS = (3, 8, 15, 22, 29)        # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (features indices)
_ALEX = [(0, 3, 64, 11, 4, 2), "M", (3, 64, 192, 5, 1, 2), "M", (6, 192, 384, 3, 1, 1),
         (8, 384, 256, 3, 1, 1), (10, 256, 256, 3, 1, 1)]
_ALEX_TAPS = (1, 4, 7, 9, 11)
CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}


class LPIPSBackbone(nn.Module):
    """VGG16 or AlexNet ``features`` with torchvision parameter names, returning the 5 LPIPS taps."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in CHANNELS:
            raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
        layers: dict[int, nn.Module] = {}
        idx = 0
        spec, taps = (_VGG, _VGG_TAPS) if net == "vgg" else (_ALEX, _ALEX_TAPS)
        for s in spec:
            if s == "M":
                layers[idx] = nn.MaxPool2d(2, 2) if net == "vgg" else nn.MaxPool2d(3, 2)
                idx += 1
                continue
            i, cin, cout, *rest = s
            k, st, p = rest if rest else (3, 1, 1)
            layers[i] = nn.Conv2d(cin, cout, k, st, p)
            layers[i + 1] = nn.ReLU(inplace=False)
            idx = i + 2
        self.features = nn.Sequential(*[layers[i] for i in range(max(layers) + 1)])
        self.taps = set(taps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.safetensors`` file or a ``.pth`` (``weights_only``; a nested ``state_dict``
    is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from bfvr.models.weights import torch_load

    sd = torch_load(path)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return sd


def lpips_heads_path(net: str) -> Path | None:
    """The v0.1 head file inside an installed ``lpips`` package (found without importing it)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    return p if p.is_file() else None


class LPIPSDistance(nn.Module):
    """The LPIPS distance, the one implementation in bfvr (the metric `LPIPS` and the training loss
    `bfvr.train.losses.LPIPSVGG` are this module): the backbone's five taps, each unit-normalised over
    channels, weighted per channel by a 1x1 linear head (all ones until `load_heads`: the "baseline"
    distance), squared difference, spatial mean, summed over the taps. Frozen (no gradients to its own
    parameters; gradients do flow to the inputs)."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in CHANNELS:
            raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
        self.kind = net
        self.net = LPIPSBackbone(net)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[net])
        for lin in self.lins:
            nn.init.ones_(lin.weight)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def load_backbone(self, path: str | Path) -> LPIPSDistance:
        """Load the backbone's ``features.*`` from a torchvision-layout file (other keys are ignored)."""
        sd = {k: v for k, v in load_state(path).items() if k.startswith("features.")}
        try:
            self.net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise WeightsNotFoundError(f"{path} is not a torchvision {self.kind} state_dict ("
                                       f"{str(e).splitlines()[0]}); give {BACKBONE_FILES[self.kind]}.") from e
        return self

    def load_heads(self, path: str | Path) -> LPIPSDistance:
        """Load the LPIPS v0.1 linear heads (``linK.model.1.weight``, the lpips package's ``<net>.pth``)."""
        hd = load_state(path)
        try:
            for k, lin in enumerate(self.lins):
                lin.weight.data.copy_(hd[f"lin{k}.model.1.weight"])
        except (KeyError, RuntimeError) as e:
            raise WeightsNotFoundError(f"{path} is not an lpips v0.1 {self.kind} head file ({e}); give the "
                                       f"lpips package's weights/v0.1/{self.kind}.pth.") from e
        return self

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: [N,3,H,W] in [-1,1] -> [N] distances."""
        fa, fb = self.net((a - self.shift) / self.scale), self.net((b - self.shift) / self.scale)
        total = a.new_zeros(a.shape[0], 1)
        for lin, x, y in zip(self.lins, fa, fb):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((x - y) ** 2).mean((2, 3))
        return total.view(-1)


class LPIPS(LPIPSDistance):
    """LPIPS metric from the files you give. ``LPIPS('vgg', backbone='vgg16-397923af.pth',
    heads='vgg.pth')``; without them one sentence says what is missing (never a random backbone)."""

    def __init__(self, net: str = "vgg", backbone: str | Path | None = None, heads: str | Path | None = None):
        if net not in CHANNELS:
            raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
        if backbone is None or not Path(backbone).is_file():
            where = "no --lpips-backbone given" if backbone is None else f"{backbone} not found"
            raise WeightsNotFoundError(f"LPIPS unavailable: needs weights {BACKBONE_FILES[net]} "
                                       f"({where}); download it yourself and pass "
                                       "--lpips-backbone PATH, or leave lpips out of --metrics.")
        heads = Path(heads) if heads is not None else lpips_heads_path(net)
        if heads is None or not heads.is_file():
            raise WeightsNotFoundError("LPIPS unavailable: needs weights lpips v0.1 "
                                       f"{net}.pth (the linear heads from the lpips package); "
                                       "pass --lpips-heads PATH or pip install lpips.")
        super().__init__(net)
        self.load_backbone(backbone).load_heads(heads)

    @staticmethod
    def to_tensor(frames: np.ndarray) -> torch.Tensor:
        """[N,H,W,3] (or [H,W,3]) uint8 RGB -> [N,3,H,W] float in [-1,1]."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).float()
        if x.ndim == 3:
            x = x[None]
        return x.permute(0, 3, 1, 2) / 127.5 - 1.0

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: [N,3,H,W] in [-1,1] -> [N] distances."""
        fa, fb = self.net((a - self.shift) / self.scale), self.net((b - self.shift) / self.scale)
        total = 0
        for lin, x, y in zip(self.lins, fa, fb):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((x - y) ** 2).mean((2, 3))
        return total.view(-1)

    def frames(self, pred: np.ndarray, gt: np.ndarray, batch: int = 8) -> np.ndarray:
        """Per-frame LPIPS of [N,H,W,3] uint8 RGB stacks -> [N]."""
        out = []
        with torch.inference_mode():
            for i in range(0, len(pred), batch):
                out.append(self(self.to_tensor(pred[i:i + batch]), self.to_tensor(gt[i:i + batch])).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
