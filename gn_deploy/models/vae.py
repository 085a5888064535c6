"""The diffusers AutoencoderKL decoder layout (Stable Diffusion's VAE), narrow channels."""

from __future__ import annotations

import torch
from torch import nn

from gn_deploy.models.unet import ResBlock, _randomize_affine


class VAEAttention(nn.Module):
    """GN → one-head self-attention over positions → projection, plus the input: the VAE's
    mid-block attention."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)
        t = nn.functional.scaled_dot_product_attention(q, k, v)
        return x + self.proj(t.transpose(1, 2).reshape(n, c, h, w))


class VAEDecoder(nn.Module):
    """conv in; mid: ResBlock, attention, ResBlock; up: 4 levels × 3 ResBlocks, 2× nearest
    upsampling + conv after the first three; GN + SiLU + conv out to RGB. 30 GroupNorms; a
    latent of H×W decodes to 8H×8W. Widths are ``base`` × (4, 4, 2, 1) (SD: base 128)."""

    def __init__(self, base: int = 32, latent: int = 4, groups: int = 32) -> None:
        super().__init__()
        widths = [4 * base, 4 * base, 2 * base, base]
        self.conv_in = nn.Conv2d(latent, widths[0], 3, padding=1)
        self.mid = nn.Sequential(
            ResBlock(widths[0], widths[0], groups),
            VAEAttention(widths[0], groups),
            ResBlock(widths[0], widths[0], groups),
        )
        layers: list[nn.Module] = []
        cin = widths[0]
        for level, w in enumerate(widths):
            for _ in range(3):
                layers.append(ResBlock(cin, w, groups))
                cin = w
            if level < len(widths) - 1:
                layers.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                layers.append(nn.Conv2d(w, w, 3, padding=1))
        self.up = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)
        _randomize_affine(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(nn.functional.silu(self.norm_out(h)))
