"""Stage-I discriminators of BFVR-STC.

Both score every frame of a BCTHW clip with three heads of 1, 2 and 4 units (each head's units averaged
to one value per frame) on top of a per-frame feature vector, and return the concatenation
`cat([head1, head2, head4])` of shape (3*B*T,), like the official discriminator. The heads are linear
layers as in the released code (``heads="linear"``, keys ``disc1/2/4.weight``) or small MLPs as the
paper describes its "multi-scale discriminator heads" (``heads="mlp"``: Linear(feat, hidden), LeakyReLU 0.2,
Linear(hidden, k); keys ``disc1/2/4.{0,2}.*``).

* `DINOv2Discriminator`: the official design. A frozen DINOv2 ViT-S/14 (CLS feature, 384-d) on frames
  resized to 224x224 (nearest, no normalisation). Its code comes from a local clone of the dinov2
  repository or an installed ``dinov2`` package and its weights from a local file; nothing is downloaded.
  The official code runs the backbone under `no_grad`, so the generator receives no gradient from the
  GAN loss; here gradients flow through the frozen backbone to the input by default and
  `official_no_grad=True` restores the official behaviour.
* `ConvDiscriminator`: a weight-free fallback for offline use: a small trainable per-frame conv stack
  with global average pooling and the same three heads. It needs no pretrained weights; choose it
  explicitly (`disc.backbone: conv`), it is logged.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.errors import DependencyError, WeightsNotFoundError


def _frames(x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


HEADS = ("linear", "mlp")


def _head(feat_dim: int, units: int, kind: str, hidden: int | None) -> nn.Module:
    if kind == "linear":
        return nn.Linear(feat_dim, units)
    if kind == "mlp":
        h = hidden or feat_dim
        return nn.Sequential(nn.Linear(feat_dim, h), nn.LeakyReLU(0.2), nn.Linear(h, units))
    raise ValueError(f"unknown discriminator heads {kind!r}; use one of {', '.join(HEADS)}")


class _ThreeHeads(nn.Module):
    """disc1/disc2/disc4: heads of 1, 2 and 4 units (linear, or MLPs with `head_hidden` units), each
    averaged over its units."""

    def __init__(self, feat_dim: int, heads: str = "linear", head_hidden: int | None = None) -> None:
        super().__init__()
        self.disc1 = _head(feat_dim, 1, heads, head_hidden)
        self.disc2 = _head(feat_dim, 2, heads, head_hidden)
        self.disc4 = _head(feat_dim, 4, heads, head_hidden)

    def heads(self, feat: torch.Tensor) -> torch.Tensor:
        feat = feat.float()
        x1 = self.disc1(feat).mean(dim=1)
        x2 = self.disc2(feat).mean(dim=1)
        x4 = self.disc4(feat).mean(dim=1)
        return torch.cat([x1, x2, x4])


class DINOv2Discriminator(_ThreeHeads):
    """Frozen DINOv2 ViT-S/14 backbone + three trainable linear heads (official STC discriminator).

    `backbone` may be any module mapping (N,3,224,224) to (N,feat_dim) (e.g. an already loaded DINOv2);
    otherwise use `DINOv2Discriminator.load(repo=..., weights=...)`.
    """

    def __init__(self, backbone: nn.Module, *, feat_dim: int = 384, input_size: int = 224,
                 resize_mode: str = "nearest", official_no_grad: bool = False, heads: str = "linear",
                 head_hidden: int | None = None) -> None:
        super().__init__(feat_dim, heads, head_hidden)
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.input_size = input_size
        self.resize_mode = resize_mode
        self.official_no_grad = official_no_grad

    def train(self, mode: bool = True) -> DINOv2Discriminator:
        super().train(mode)
        self.backbone.eval()  # frozen: keep its norms/dropout in inference mode
        return self

    @classmethod
    def load(cls, repo: str | None = None, weights: str | None = None, **kwargs) -> DINOv2Discriminator:
        """Build the ViT-S/14 from local code and a local weights file; never from the network.

        The code comes from `repo` (a local clone of facebookresearch/dinov2, read through
        ``torch.hub.load(source="local")``) or else from an installed ``dinov2`` package; the weights from
        the file `weights` (``dinov2_vits14_pretrain.pth``, loaded weights-only and strictly).
        """
        if weights is None:
            raise WeightsNotFoundError("the DINOv2 discriminator needs a local ViT-S/14 "
                                       "weights file (disc.dinov2_weights); nothing is "
                                       "downloaded, or use disc.backbone: conv.")
        if not Path(weights).is_file():
            raise WeightsNotFoundError(f"DINOv2 weights not found: {weights}; fix disc.dinov2_weights.")
        net = _dinov2_vits14(repo)
        from bfvr.models.weights import torch_load

        net.load_state_dict(torch_load(weights), strict=True)
        return cls(net, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = _frames(x)
        f = F.interpolate(f, size=(self.input_size, self.input_size), mode=self.resize_mode)
        if self.official_no_grad:
            with torch.no_grad():
                feat = self.backbone(f)
        else:
            feat = self.backbone(f)
        return self.heads(feat)


def _dinov2_vits14(repo: str | None) -> nn.Module:
    """An untrained DINOv2 ViT-S/14 from a local clone (`repo`) or the installed ``dinov2`` package."""
    if repo is not None:
        if not Path(repo, "hubconf.py").is_file():
            raise WeightsNotFoundError(f"{repo} is not a clone of facebookresearch/dinov2 (no hubconf.py); "
                                       "fix disc.dinov2_repo or use disc.backbone: conv.")
        try:
            return torch.hub.load(repo, "dinov2_vits14", source="local", pretrained=False)
        except Exception as e:  # e.g. a dependency of the repository's code is missing
            raise DependencyError(f"the DINOv2 code in {repo} does not load ({type(e).__name__}: {e}); "
                                  "fix the clone or use disc.backbone: conv.") from None
    try:
        from dinov2.hub.backbones import dinov2_vits14
    except ImportError:
        raise DependencyError("the DINOv2 discriminator needs the DINOv2 code: give a local "
                              "clone of facebookresearch/dinov2 as disc.dinov2_repo, "
                              "install it as the dinov2 package, or use disc.backbone: conv.") from None
    return dinov2_vits14(pretrained=False)


class ConvDiscriminator(_ThreeHeads):
    """Weight-free fallback: per-frame conv stack (stride-2 convs + LeakyReLU), global average pooling,
    a linear projection to `feat_dim`, then the three heads. Everything is trained from scratch."""

    def __init__(self, *, in_ch: int = 3, width: int = 32, depth: int = 4, feat_dim: int = 384,
                 max_width: int = 256, heads: str = "linear", head_hidden: int | None = None) -> None:
        super().__init__(feat_dim, heads, head_hidden)
        layers: list[nn.Module] = []
        cin = in_ch
        for i in range(depth):
            cout = min(width * 2**i, max_width)
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(_frames(x))
        return self.heads(self.proj(f.mean(dim=(2, 3))))
