"""The face-parsing network PGTFormer conditions on (official `conditionnet`): BiSeNet with a ResNet-18
context path and 19 CelebAMask-HQ classes (the widely used face-parsing BiSeNet layout; the spatial path is
replaced by the ResNet 1/8 features).

Input: RGB normalised with the ImageNet mean/std (`imagenet_normalize`). Three logit heads:
`conv_out` (fused features, 1/8), `conv_out16` (context 1/8) and `conv_out32` (context 1/16). PGTFormer
resizes them to the latent grid (bilinear, align corners; 32x32 for a 512x512 frame, where the 1/16 head
already has that size) and concatenates them into 57 channels (`condition`). `parse` gives the class
logits of the main head at any size (the paste-back masks of the face pipeline).

BatchNorm layers use their running statistics in eval mode; PGTFormer keeps this network frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the 19 classes of the face-parsing BiSeNet (CelebAMask-HQ order)
CLASSES = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] RGB in [0, 1] -> (x - mean) / std with the ImageNet statistics."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class ConvBNReLU(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block: relu(shortcut + bn2(conv2(relu(bn1(conv1(x)))))), 1x1-conv+BN shortcut when the
    shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(s + r)


class ResNet18(nn.Module):
    """ResNet-18 trunk without the classifier; forward -> (1/8, 1/16, 1/32 features)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths = ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2))
        for i, (cin, cout, stride) in enumerate(widths, start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        f8 = self.layer2(x)
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class AttentionRefinementModule(nn.Module):
    """feat = ConvBNReLU(x); feat * sigmoid(BN(conv1x1(global average of feat)))."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))


class ContextPath(nn.Module):
    """ResNet-18 + attention refinement of the 1/16 and 1/32 features, a global-context term, and nearest
    upsampling; forward -> (ResNet 1/8, context 1/8, context 1/16)."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.resnet(x)
        glob = self.conv_avg(f32.mean((2, 3), keepdim=True))  # broadcast over the 1/32 grid
        up32 = self.conv_head32(F.interpolate(self.arm32(f32) + glob, size=f16.shape[-2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(f16) + up32, size=f8.shape[-2:], mode="nearest"))
        return f8, up16, up32


class FeatureFusionModule(nn.Module):
    """feat = ConvBNReLU1x1(cat(a, b)); feat + feat * channel attention (squeeze 4x, ReLU, sigmoid)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([a, b], dim=1))
        att = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * att + feat


class BiSeNetOutput(nn.Module):
    """ConvBNReLU 3x3 -> conv1x1 (no bias) to the class logits."""

    def __init__(self, cin: int, mid: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """Face-parsing BiSeNet (official names `cp`, `ffm`, `conv_out`, `conv_out16`, `conv_out32`)."""

    def __init__(self, n_classes: int = 19) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised input -> logits of the three heads at 1/8, 1/8 and 1/16."""
        f8, cp8, cp16 = self.cp(x)
        return self.conv_out(self.ffm(f8, cp8)), self.conv_out16(cp8), self.conv_out32(cp16)

    @staticmethod
    def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(t.shape[-2:]) == tuple(size):
            return t
        return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

    def condition(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Normalised input -> the three heads resized to `size` and concatenated: [N, 3*n_classes, *size]."""
        return torch.cat([self._resize(t, size) for t in self.heads(x)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """PGTFormer's conditioning on a 1/16 grid (32x32 for 512x512 input)."""
        return self.condition(x, (x.shape[-2] // 16, x.shape[-1] // 16))

    def parse(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Normalised input -> class logits of the main head at `size` (default the input size)."""
        f8, cp8, _ = self.cp(x)
        return self._resize(self.conv_out(self.ffm(f8, cp8)), size or tuple(x.shape[-2:]))
