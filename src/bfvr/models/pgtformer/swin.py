"""Swin-3D window attention of the PGTFormer TS-VQGAN (the official `EncoderLayer` of its RSTT layers).

A window is *all* frames of the clip (3) x a 4 x 4 pixel patch, so 48 tokens attend to each other; odd
blocks shift the windows by half a window (2, 2) with the usual Swin mask (-100 between tokens that came
from different image regions before the cyclic shift). Each window adds a learned relative position bias,
one value per head for every (dt, dy, dx) offset, looked up through the integer table
`relative_position_index` (a persistent buffer: the official checkpoints store it, so we keep it in the
state_dict and compute it here; `relative_position_index(3, (4, 4))` equals the stored table).

Tensors between layers are frames stacked in the batch, ``[(B*D), C, H, W]``; a layer is told D and
attends within each group of D consecutive frames, so a batch of several clips is just a longer stack.
Attention goes through `torch.nn.functional.scaled_dot_product_attention` with the bias (+ shift mask)
as its additive mask.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.models.blocks.attention import LayerNorm

#: the additive mask value the official shifted-window attention uses between different regions
SHIFT_MASK_VALUE = -100.0


def relative_position_index(
    frames: int, window: Sequence[int], table_window: Sequence[int] | None = None
) -> torch.Tensor:
    """[N, N] int64 table (N = frames * wh * ww, tokens ordered frame, row, column): the row of the bias
    table for the offset (dt, dy, dx) between token i and token j, dt in [-(frames-1), frames-1] etc.,
    flattened as ((dt + frames-1) * (2Wh-1) + dy + Wh-1) * (2Ww-1) + dx + Ww-1, where (Wh, Ww) is the
    window the table is laid out for (`table_window`, default `window`)."""
    wh, ww = int(window[0]), int(window[1])
    th, tw = (wh, ww) if table_window is None else (int(table_window[0]), int(table_window[1]))
    # always on the CPU (also when a network is built on the meta device: the table is a constant)
    ar = functools.partial(torch.arange, device="cpu")
    t, y, x = torch.meshgrid(ar(frames), ar(wh), ar(ww), indexing="ij")
    coords = torch.stack([t.flatten(), y.flatten(), x.flatten()])  # 3, N
    d = coords[:, :, None] - coords[:, None, :]  # 3, N, N
    return ((d[0] + frames - 1) * (2 * th - 1) + d[1] + th - 1) * (2 * tw - 1) + d[2] + tw - 1


def effective_window(
    h: int, w: int, window: Sequence[int], shift: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Window and shift actually used on an h x w map: a side not larger than the window becomes one
    window of that size, without shift (as in Swin)."""
    win, sh = [int(window[0]), int(window[1])], [int(shift[0]), int(shift[1])]
    for i, n in enumerate((h, w)):
        if n <= win[i]:
            win[i], sh[i] = n, 0
    return (win[0], win[1]), (sh[0], sh[1])


def to_windows(x: torch.Tensor, win: tuple[int, int]) -> torch.Tensor:
    """[B, D, H, W, C] -> [B, nW, D*wh*ww, C] (windows row-major over the map; tokens frame, row, column)."""
    b, d, h, w, c = x.shape
    x = x.view(b, d, h // win[0], win[0], w // win[1], win[1], c)
    return x.permute(0, 2, 4, 1, 3, 5, 6).reshape(b, (h // win[0]) * (w // win[1]), d * win[0] * win[1], c)


def shift_mask(
    h: int, w: int, d: int, win: tuple[int, int], shift: tuple[int, int], device: torch.device | None = None
) -> torch.Tensor:
    """[nW, N, N] additive mask for the cyclically shifted windows of a (padded) h x w map: 0 between
    tokens of the same region before the shift, `SHIFT_MASK_VALUE` otherwise."""
    label = torch.zeros(h, w, device=device)
    n = 0
    for ys in (slice(0, h - win[0]), slice(h - win[0], h - shift[0]), slice(h - shift[0], h)):
        for xs in (slice(0, w - win[1]), slice(w - win[1], w - shift[1]), slice(w - shift[1], w)):
            label[ys, xs] = n
            n += 1
    lab = to_windows(label.view(1, 1, h, w, 1).expand(1, d, h, w, 1), win)[0, :, :, 0]  # nW, N
    diff = lab[:, None, :] - lab[:, :, None]
    return torch.where(diff != 0, SHIFT_MASK_VALUE, 0.0)


@functools.lru_cache(maxsize=32)
def _cached_shift_mask(
    h: int, w: int, d: int, win: tuple[int, int], shift: tuple[int, int], device: str, dtype: torch.dtype
) -> torch.Tensor:
    """`shift_mask` as [nW, 1, N, N] in `dtype` (a constant: no autograd), built once per map size."""
    with torch.no_grad():
        return shift_mask(h, w, d, win, shift, torch.device(device)).unsqueeze(1).to(dtype)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside each window with a relative position bias (official names:
    `relative_position_bias_table`, `relative_position_index`, `q`, `kv`, `proj`)."""

    def __init__(
        self, dim: int, num_heads: int, frames: int = 3, window: Sequence[int] = (4, 4), qkv_bias: bool = True
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.frames, self.window = dim, num_heads, frames, tuple(window)
        n_rel = (2 * frames - 1) * (2 * self.window[0] - 1) * (2 * self.window[1] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n_rel, num_heads))
        if (
            not self.relative_position_bias_table.is_meta
        ):  # (on meta it would import torch's decompositions: ~3 s)
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(frames, self.window))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def bias(self, win: tuple[int, int]) -> torch.Tensor:
        """[heads, N, N] relative position bias for windows of `win` pixels (the full window except on maps
        smaller than it, where the same table is indexed with the smaller window's offsets)."""
        if win == self.window:
            idx = self.relative_position_index
        else:
            idx = relative_position_index(self.frames, win, self.window).to(
                self.relative_position_index.device
            )
        n = idx.shape[0]
        return self.relative_position_bias_table[idx.reshape(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, nW, N, C]; mask (additive: bias + shift mask) [heads, N, N] or [nW, heads, N, N].

        SDPA gets 4-D q/k/v [(B*nW), heads, N, d] and a 4-D mask: the CPU flash kernel takes only that
        form (5-D or 3-D masks fall back to the slower math kernel)."""
        b, nw, n, c = x.shape
        nh, hd = self.num_heads, c // self.num_heads
        q = self.q(x).view(b * nw, n, nh, hd).transpose(1, 2)
        kv = self.kv(x).view(b * nw, n, 2, nh, hd).permute(2, 0, 3, 1, 4)
        dt = kv.dtype
        mask = mask.to(dt)
        if mask.dim() == 3:
            mask = mask.unsqueeze(0)
        elif b > 1:
            mask = mask.expand(b, *mask.shape).reshape(b * nw, nh, n, n)
        out = F.scaled_dot_product_attention(q.to(dt), kv[0], kv[1], attn_mask=mask)  # (B nW) h N d
        return self.proj(out.transpose(1, 2).reshape(b, nw, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (official names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def window_order(
    d: int, h: int, w: int, win: tuple[int, int], shift: tuple[int, int], device: torch.device | None = None
) -> torch.Tensor:
    """Token gather index: ``tokens[:, order]`` turns the [B, D*h*w, C] tokens of an h x w map (frame, row,
    column order) into its windows [B, nW*N, C] after a cyclic shift by -`shift` (windows row-major, tokens
    frame, row, column within a window): one gather instead of roll + partition."""
    ar = functools.partial(torch.arange, device=device)
    i = ar(h // win[0]).view(-1, 1, 1, 1, 1)
    j = ar(w // win[1]).view(1, -1, 1, 1, 1)
    t = ar(d).view(1, 1, -1, 1, 1)
    r = (i * win[0] + ar(win[0]).view(1, 1, 1, -1, 1) + shift[0]) % h
    c = (j * win[1] + ar(win[1]).view(1, 1, 1, 1, -1) + shift[1]) % w
    return (t * (h * w) + r * w + c).reshape(-1)


class SwinBlock3D(nn.Module):
    """x + WindowAttention(LN(x)) (shifted when `shift` != 0), then x + MLP(LN(x)).

    Tokens are [B, D*H*W, C] (frame, row, column order) for an H x W map; windows are taken with one gather
    (`window_order`) and put back with its inverse, which equals the official pad -> roll -> partition ->
    attention -> merge -> roll back -> crop."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        frames: int = 3,
        window: Sequence[int] = (4, 4),
        shift: Sequence[int] = (0, 0),
        mlp_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        self.window, self.shift, self.frames = tuple(window), tuple(shift), frames
        if not all(0 <= s < w for s, w in zip(self.shift, self.window)):
            raise ValueError(f"shift {self.shift} must be in [0, window) for window {self.window}")
        self.norm1 = LayerNorm(dim)
        self.attn = WindowAttention3D(dim, num_heads, frames, self.window)
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self._orders: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _order(
        self, hp: int, wp: int, win: tuple[int, int], shift: tuple[int, int], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (hp, wp, win, shift, str(device))
        if key not in self._orders:
            order = window_order(self.frames, hp, wp, win, shift, device)
            self._orders[key] = (order, torch.argsort(order))
        return self._orders[key]

    def _mask(self, hp: int, wp: int, win: tuple[int, int], shift: tuple[int, int],
              device: torch.device) -> torch.Tensor:
        """The additive attention mask: relative position bias [heads, N, N], plus the shift mask
        ([nW, heads, N, N]) on shifted blocks, in the dtype attention runs in (the autocast dtype under
        autocast), so SDPA gets it without a cast. The shift mask is a constant of the map size, kept once
        per size and dtype for all blocks (`_cached_shift_mask`, [nW, 1, N, N]); the sum is made per call
        (1024 x 8 x 48 x 48 at 128x128: kept per block it would hold ~100 MB for the whole network)."""
        dt = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        bias = self.attn.bias(win)  # heads, N, N
        bias = bias if dt is None else bias.to(dt)
        if not any(shift):
            return bias
        return bias + _cached_shift_mask(hp, wp, self.frames, win, shift, str(device), bias.dtype)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        h, w = hw
        d = self.frames
        win, shift = effective_window(h, w, self.window, self.shift)
        y = self.norm1(x)
        pb, pr = (-h) % win[0], (-w) % win[1]
        if pb or pr:
            y = F.pad(y.view(b, d, h, w, c), (0, 0, 0, pr, 0, pb)).view(b, -1, c)
        hp, wp = h + pb, w + pr
        order, inverse = self._order(hp, wp, win, shift, y.device)
        mask = self._mask(hp, wp, win, shift, y.device)
        n = d * win[0] * win[1]
        y = self.attn(y[:, order].view(b, -1, n, c), mask).view(b, -1, c)[:, inverse]
        if pb or pr:
            y = y.view(b, d, hp, wp, c)[:, :, :h, :w].reshape(b, -1, c)
        x = x + y
        return x + self.mlp(self.norm2(x))


class SwinLayer3D(nn.Module):
    """`depth` Swin-3D blocks, shift (0,0) on even and half a window on odd blocks (official
    `EncoderLayer`; parameters under `blocks.i`). forward(x [(B*D), C, H, W]) -> same shape, attention within
    each group of D = `frames` consecutive frames."""

    def __init__(
        self,
        dim: int,
        depth: int = 2,
        num_heads: int = 8,
        frames: int = 3,
        window: Sequence[int] = (4, 4),
        mlp_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        self.frames = frames
        half = tuple(int(s) // 2 for s in window)
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, num_heads, frames, window, (0, 0) if i % 2 == 0 else half, mlp_ratio)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bd, c, h, w = x.shape
        d = self.frames
        if bd % d:
            raise ValueError(f"expected a multiple of {d} frames stacked in the batch, got {bd}")
        fmt = (
            torch.channels_last
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            else torch.contiguous_format
        )
        # [(B*D), C, H, W] -> tokens [B, D*H*W, C]; free when x is channels-last
        t = x.permute(0, 2, 3, 1).reshape(bd // d, d * h * w, c)
        for blk in self.blocks:
            t = blk(t, (h, w))
        out = t.view(bd, h, w, c).permute(0, 3, 1, 2)
        return out.contiguous(memory_format=fmt)
