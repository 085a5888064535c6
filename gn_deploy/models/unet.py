"""torch modules of the built-in models (imported only when torch is present)."""

from __future__ import annotations

import torch
from torch import nn


def _randomize_affine(module: nn.Module) -> None:
    """GroupNorm starts as gamma=1, beta=0; random values make parity checks meaningful."""
    for m in module.modules():
        if isinstance(m, nn.GroupNorm) and m.affine:
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)


class GNBlock(nn.Module):
    def __init__(self, channels: int, groups: int, affine: bool, silu: bool) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, affine=affine)
        self.silu = silu
        _randomize_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        return nn.functional.silu(y) if self.silu else y


class ResBlock(nn.Module):
    """GN → SiLU → conv → GN → SiLU → conv, plus a (1×1 projected) skip: SD's ResnetBlock2D."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """GN → 1×1 proj → LayerNorm + self-attention over positions → proj: SD's Transformer2D."""

    def __init__(self, channels: int, groups: int, heads: int = 2) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.ln = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        q = self.ln(t)
        t = t + self.attn(q, q, q, need_weights=False)[0]
        return x + self.proj_out(t.transpose(1, 2).reshape(n, c, h, w))


class DemoUNet(nn.Module):
    """A small UNet: conv in, two resolutions of ResBlocks, a middle attention, GN+SiLU out."""

    def __init__(self, channels: int = 4, width: int = 32, groups: int = 8) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.down = ResBlock(width, width, groups)
        self.downsample = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid = ResBlock(2 * width, 2 * width, groups)
        self.attn = AttnBlock(2 * width, groups)
        self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.up = ResBlock(3 * width, width, groups)
        self.norm_out = nn.GroupNorm(groups, width)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        _randomize_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.down(self.conv_in(x))
        h = self.attn(self.mid(self.downsample(h0)))
        h = self.up(torch.cat([self.upsample(h), h0], dim=1))
        return self.conv_out(nn.functional.silu(self.norm_out(h)))


class SD15UNet(nn.Module):
    """Stable Diffusion 1.5's UNet layout: its 61 GroupNorms in their places, narrow channels.

    Down: 4 levels × 2 ResBlocks, attention at the first three; middle: ResBlock, attention,
    ResBlock; up: 4 levels × 3 ResBlocks with skip concatenation, attention at the last three;
    GN+SiLU out. Time and text conditioning are left out: they add no GroupNorm.
    """

    def __init__(self, base: int = 32, in_channels: int = 4, groups: int = 32) -> None:
        super().__init__()
        widths = [base, 2 * base, 4 * base, 4 * base]
        attention = [True, True, True, False]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [widths[0]]
        cin = widths[0]
        for level, (w, attn) in enumerate(zip(widths, attention, strict=True)):
            for _ in range(2):
                self.down.append(ResBlock(cin, w, groups))
                if attn:
                    self.down.append(AttnBlock(w, groups))
                cin = w
                skips.append(w)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
                skips.append(w)
        self.mid = nn.Sequential(
            ResBlock(cin, cin, groups), AttnBlock(cin, groups), ResBlock(cin, cin, groups)
        )
        self.up = nn.ModuleList()
        for level, (w, attn) in enumerate(zip(reversed(widths), reversed(attention), strict=True)):
            for _ in range(3):
                self.up.append(ResBlock(cin + skips.pop(), w, groups))
                if attn:
                    self.up.append(AttnBlock(w, groups))
                cin = w
            if level < len(widths) - 1:
                self.up.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
        self.norm_out = nn.GroupNorm(groups, cin)
        self.conv_out = nn.Conv2d(cin, in_channels, 3, padding=1)
        _randomize_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = block(h)
            if not isinstance(block, AttnBlock):
                skips.append(h)
        h = self.mid(h)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))
