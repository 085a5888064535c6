"""Built-in models (random weights, no downloads): factories for `--model gn_deploy.models:NAME`.

- ``demo_unet``: a small UNet-like net with GroupNorm+SiLU blocks, the `make demo` model.
- ``sd15_unet``: the Stable Diffusion 1.5 UNet layout (all 61 GroupNorms) with narrow channels.
- ``sd15_unet_chain``: several of those in a row (benchmarks of how fuse time scales).
- ``sd_vae_decoder``: the diffusers AutoencoderKL decoder layout (30 GroupNorms), narrow channels.
- ``gn_block``: one GroupNorm (+ optional SiLU) for tests and quick checks.
"""

from __future__ import annotations

from typing import Any

from gn_deploy.export import require_torch


def demo_unet(seed: int = 0) -> Any:
    from gn_deploy.models.unet import DemoUNet

    require_torch().manual_seed(seed)
    return DemoUNet().eval()


def sd15_unet(seed: int = 0, base: int = 32) -> Any:
    from gn_deploy.models.unet import SD15UNet

    require_torch().manual_seed(seed)
    return SD15UNet(base=base).eval()


def sd_vae_decoder(seed: int = 0, base: int = 32) -> Any:
    from gn_deploy.models.vae import VAEDecoder

    require_torch().manual_seed(seed)
    return VAEDecoder(base=base).eval()


def sd15_unet_chain(copies: int = 2, seed: int = 0, base: int = 32) -> Any:
    """``copies`` SD-1.5-layout UNets one after another (61 GroupNorms each): for scaling runs."""
    torch = require_torch()
    from gn_deploy.models.unet import SD15UNet

    torch.manual_seed(seed)
    return torch.nn.Sequential(*[SD15UNet(base=base) for _ in range(copies)]).eval()


def gn_block(
    channels: int = 8, groups: int = 4, affine: bool = True, silu: bool = False, seed: int = 0
) -> Any:
    from gn_deploy.models.unet import GNBlock

    require_torch().manual_seed(seed)
    return GNBlock(channels, groups, affine, silu).eval()
