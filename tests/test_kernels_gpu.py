"""The GN kernels on a GPU against the float64 reference (marker gpu; skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

from gn_deploy.reference import group_norm_reference, relative_l2, tolerance_for
from tests.kernel_support import needs_gpu

pytestmark = needs_gpu

# (N, C, spatial dims, G): 1x1, odd sizes, G = 1 and G = C, 3-D to 5-D, large groups.
SHAPES = [
    (1, 1, (1,), 1),
    (2, 4, (1, 1), 2),
    (3, 6, (7,), 3),
    (1, 32, (5, 7), 32),
    (8, 64, (13, 11), 1),
    (2, 320, (64, 64), 32),
    (2, 1280, (8, 8), 32),
    (1, 256, (100, 152), 32),
    (1, 64, (16, 64, 64), 32),
    (4, 2560, (3, 3), 2560),
    (1, 8, (1024, 1024), 2),
]
DTYPES = ["float32", "float16", "bfloat16"]


def _case(shape: tuple, dtype: str, layout: str, silu: bool, seed: int = 0):
    import torch

    n, c, spatial, g = shape
    gen = torch.Generator().manual_seed(seed)
    x64 = torch.randn((n, c, *spatial), generator=gen, dtype=torch.float64) * 2 + 0.5
    gamma = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5
    beta = torch.randn(c, generator=gen, dtype=torch.float64)
    x = x64.to(getattr(torch, dtype))
    if layout == "NHWC":
        x = x.movedim(1, -1).contiguous()
    return x.cuda(), gamma.cuda(), beta.cuda(), g


def _reference(x, gamma, beta, g: int, layout: str, silu: bool) -> np.ndarray:
    axis = 1 if layout == "NCHW" else -1
    return group_norm_reference(
        x.double().cpu().numpy(),
        g,
        1e-5,
        gamma.cpu().numpy(),
        beta.cpu().numpy(),
        int(silu),
        channel_axis=axis,
    )


@pytest.mark.parametrize("silu", [False, True], ids=["plain", "silu"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}x{'x'.join(map(str, s[2]))}g{s[3]}"
)
def test_matches_reference(shape: tuple, dtype: str, layout: str, silu: bool) -> None:
    import torch

    from gn_deploy.kernels import group_norm

    x, gamma, beta, g = _case(shape, dtype, layout, silu)
    out = torch.full_like(x, float("nan"))  # poisoned: every element must be written
    y = group_norm(x, g, gamma, beta, silu=silu, layout=layout, out=out)
    torch.cuda.synchronize()
    assert y.data_ptr() == out.data_ptr()
    result = y.double().cpu().numpy()
    assert np.isfinite(result).all(), "unwritten or non-finite outputs"
    err = relative_l2(result, _reference(x, gamma, beta, g, layout, silu))
    assert err <= tolerance_for(dtype), f"relative L2 {err:.2e}"


@pytest.mark.parametrize("shape", [(2, 320, (64, 64), 32), (1, 128, (512, 512), 32)])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_bitwise_deterministic(shape: tuple, layout: str) -> None:
    import torch

    from gn_deploy.kernels import group_norm

    x, gamma, beta, g = _case(shape, "float16", layout, True)
    first = group_norm(x, g, gamma, beta, silu=True, layout=layout)
    for _ in range(3):
        assert torch.equal(group_norm(x, g, gamma, beta, silu=True, layout=layout), first)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_fp16_extremes_stay_finite(layout: str) -> None:
    import torch

    from gn_deploy.kernels import group_norm

    x, gamma, beta, g = _case((2, 64, (32, 32), 8), "float16", layout, False)
    x = (torch.rand_like(x, dtype=torch.float32) * 120000 - 60000).half()
    y = group_norm(x, g, gamma, beta, layout=layout)
    ref = _reference(x, gamma, beta, g, layout, False)
    assert torch.isfinite(y).all()
    assert relative_l2(y.double().cpu().numpy(), ref) <= tolerance_for("float16")


@pytest.mark.parametrize("shape", [(2, 8, (6, 6), 4), (1, 16, (512, 512), 2)])
def test_nan_stays_in_its_group(shape: tuple) -> None:
    import torch

    from gn_deploy.kernels import group_norm

    x, gamma, beta, g = _case(shape, "float32", "NCHW", False)
    x[0, 0].view(-1)[3] = float("nan")
    y = group_norm(x, g, gamma, beta).cpu()
    per_group = shape[1] // g
    assert torch.isnan(y[0, :per_group]).all()
    assert torch.isfinite(y[0, per_group:]).all() and torch.isfinite(y[1:]).all()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_unaligned_pointers(dtype: str, layout: str) -> None:
    import torch

    from gn_deploy.kernels import group_norm

    x, gamma, beta, g = _case((2, 64, (16, 16), 8), dtype, layout, False)
    storage = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)
    shifted = storage[1:].view(x.shape)
    shifted.copy_(x)
    out = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)[1:].view(x.shape)
    y = group_norm(shifted, g, gamma, beta, layout=layout, out=out)
    err = relative_l2(y.double().cpu().numpy(), _reference(x, gamma, beta, g, layout, False))
    assert err <= tolerance_for(dtype)
