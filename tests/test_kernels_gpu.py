"""The GN kernels on a GPU against the float64 reference (marker gpu; skipped without CUDA).

Every launch path is forced explicitly as well as left to the planner; outputs are checked per
element (not only by relative L2), inputs include large means, constant groups, NaN, fp16
extremes, unaligned pointers and a tensor of more than 2^31 elements.
"""

from __future__ import annotations

import numpy as np
import pytest

from gn_deploy import kernels as k
from gn_deploy.reference import (
    ELEMENT_TOLERANCES,
    group_norm_reference,
    max_element_error,
    relative_l2,
    tolerance_for,
)
from tests.kernel_support import REGISTER_PATH_SHAPES, needs_gpu

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
    (1, 128, (512, 512), 32),
]
DTYPES = ["float32", "float16", "bfloat16"]
PATHS = [
    k.LaunchPath.ONCHIP,
    k.LaunchPath.CLUSTER,
    k.LaunchPath.STREAM,
    k.LaunchPath.TILED,
    k.LaunchPath.REGISTERS,
]
# Per-element bound on |y - reference| / (1 + |reference|): output rounding plus fp32 statistics.
# Shapes for the forced-path tests: small, channels per group not a multiple of 8, odd
# positions, groups larger than one block's shared memory.
PATH_SHAPES = [
    (2, 64, (16, 16), 8),
    (2, 96, (12, 12), 6),
    (1, 320, (24, 24), 32),
    (2, 40, (7, 7), 4),
    (1, 64, (256, 256), 4),
]


def _shape_id(s: tuple) -> str:
    return f"{s[0]}x{s[1]}x{'x'.join(map(str, s[2]))}g{s[3]}"


def _case(shape: tuple, dtype: str, layout: str, seed: int = 0, mean: float = 0.5):
    import torch

    n, c, spatial, g = shape
    gen = torch.Generator().manual_seed(seed)
    x64 = torch.randn((n, c, *spatial), generator=gen, dtype=torch.float64) * 2 + mean
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


def _max_element_error(y, ref: np.ndarray) -> float:
    result = y.double().cpu().numpy()
    assert np.isfinite(result).all(), "unwritten or non-finite outputs"
    return max_element_error(result, ref)


def _run(x, g, gamma, beta, layout: str, silu: bool = False, path=k.LaunchPath.AUTO):
    """group_norm into an output poisoned with NaN: every element must be written."""
    import torch

    out = torch.full_like(x, float("nan"))
    y = k.group_norm(x, g, gamma, beta, silu=silu, layout=layout, out=out, path=path)
    torch.cuda.synchronize()
    assert y.data_ptr() == out.data_ptr()
    return y


def _refused(x, g: int, layout: str, path: k.LaunchPath) -> bool:
    """Whether path cannot serve x here; if so, the forced call must say so (INVALID_PATH)."""
    if path == k.LaunchPath.AUTO or _serves(
        _shape_of(x, g, layout), _dtype_of(x), layout, path, aligned=x.data_ptr() % 16 == 0
    ):
        return False
    with pytest.raises(k.KernelError, match="INVALID_PATH"):
        k.group_norm(x, g, layout=layout, path=path)
    return True


def _shape_of(x, g: int, layout: str) -> tuple:
    spatial = tuple(x.shape[2:]) if layout == "NCHW" else tuple(x.shape[1:-1])
    return (x.shape[0], x.shape[1] if layout == "NCHW" else x.shape[-1], spatial, g)


def _dtype_of(x) -> str:
    return str(x.dtype).removeprefix("torch.")


def _serves(shape: tuple, dtype: str, layout: str, path: k.LaunchPath, aligned: bool) -> bool:
    n, c, spatial, g = shape
    params = k.make_params(
        n, c, int(np.prod(spatial)), g, layout=k.Layout[layout], dtype=k.DType[dtype.upper()]
    )
    try:
        k.plan(params, k.query_device(), path, aligned)
    except k.KernelError as err:
        assert err.status == k.Status.INVALID_PATH
        return False
    return True


@pytest.mark.parametrize("silu", [False, True], ids=["plain", "silu"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_matches_reference(shape: tuple, dtype: str, layout: str, silu: bool) -> None:
    x, gamma, beta, g = _case(shape, dtype, layout)
    y = _run(x, g, gamma, beta, layout, silu)
    ref = _reference(x, gamma, beta, g, layout, silu)
    assert relative_l2(y.double().cpu().numpy(), ref) <= tolerance_for(dtype)
    assert _max_element_error(y, ref) <= ELEMENT_TOLERANCES[dtype]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name.lower())
def test_every_path_matches_reference(path: k.LaunchPath, dtype: str, layout: str) -> None:
    served = 0
    for shape in PATH_SHAPES:
        x, gamma, beta, g = _case(shape, dtype, layout)
        if not _serves(shape, dtype, layout, path, aligned=True):
            with pytest.raises(k.KernelError, match="INVALID_PATH"):
                k.group_norm(x, g, gamma, beta, layout=layout, path=path)
            continue
        served += 1
        y = _run(x, g, gamma, beta, layout, True, path)
        err = _max_element_error(y, _reference(x, gamma, beta, g, layout, True))
        assert err <= ELEMENT_TOLERANCES[dtype], f"{shape}: {err:.2e}"
    assert served >= 2, f"{path.name} served only {served} shapes"


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("path", [k.LaunchPath.AUTO, *PATHS], ids=lambda p: p.name.lower())
@pytest.mark.parametrize(("dtype", "mean"), [("float32", 1000.0), ("float16", 200.0)])
def test_large_mean_inputs_lose_no_more_than_torch(
    dtype: str, mean: float, path: k.LaunchPath, layout: str
) -> None:
    import torch

    x, gamma, beta, g = _case((2, 64, (32, 32), 8), dtype, layout, mean=mean)
    if _refused(x, g, layout, path):
        return
    x = (x.double() - mean) / 2 + mean  # N(mean, 1)
    x = x.to(getattr(torch, dtype))
    ref = _reference(x, gamma, beta, g, layout, False)
    ours = _max_element_error(_run(x, g, gamma, beta, layout, path=path), ref)
    channels_first = x if layout == "NCHW" else x.movedim(-1, 1)
    theirs_y = torch.nn.functional.group_norm(
        channels_first.float(), g, gamma.float(), beta.float(), 1e-5
    ).to(x.dtype)
    if layout == "NHWC":
        theirs_y = theirs_y.movedim(1, -1)
    theirs = _max_element_error(theirs_y, ref)
    assert ours <= max(theirs, ELEMENT_TOLERANCES[dtype]), f"ours {ours:.2e}, torch {theirs:.2e}"


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("path", [k.LaunchPath.AUTO, *PATHS], ids=lambda p: p.name.lower())
def test_constant_groups_give_beta(path: k.LaunchPath, layout: str) -> None:
    import torch

    shape = (2, 64, (32, 32), 8)
    x, gamma, beta, g = _case(shape, "float16", layout)
    if _refused(x, g, layout, path):
        return
    channel_axis = 1 if layout == "NCHW" else -1
    x = torch.full_like(x, 3.25)
    x.narrow(channel_axis, 0, 8).fill_(-7.5)  # groups 0 and 1 differ in value, each constant
    y = _run(x, g, gamma, beta, layout, path=path)
    expected = beta.view(-1, *([1] * (x.dim() - 2))) if layout == "NCHW" else beta
    torch.testing.assert_close(y.double(), expected.double().expand_as(y), atol=2e-3, rtol=0)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("path", [k.LaunchPath.AUTO, *PATHS], ids=lambda p: p.name.lower())
@pytest.mark.parametrize("shape", [(2, 16, (6, 6), 4), (1, 16, (512, 512), 2)], ids=_shape_id)
def test_nan_stays_in_its_group(shape: tuple, path: k.LaunchPath, layout: str) -> None:
    import torch

    x, gamma, beta, g = _case(shape, "float32", layout)
    if _refused(x, g, layout, path):
        return
    channels_first = x if layout == "NCHW" else x.movedim(-1, 1)
    channels_first[0, 0].view(-1)[3] = float("nan")
    y = _run(x, g, gamma, beta, layout, path=path).cpu()
    y = y if layout == "NCHW" else y.movedim(-1, 1)
    per_group = shape[1] // g
    assert torch.isnan(y[0, :per_group]).all()
    assert torch.isfinite(y[0, per_group:]).all() and torch.isfinite(y[1:]).all()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("path", [k.LaunchPath.AUTO, *PATHS], ids=lambda p: p.name.lower())
def test_fp16_extremes_stay_finite(path: k.LaunchPath, layout: str) -> None:
    import torch

    shape = (2, 64, (32, 32), 8)
    x, gamma, beta, g = _case(shape, "float16", layout)
    if _refused(x, g, layout, path):
        return
    x = (torch.rand_like(x, dtype=torch.float32) * 120000 - 60000).half()
    y = _run(x, g, gamma, beta, layout, path=path)
    ref = _reference(x, gamma, beta, g, layout, False)
    assert torch.isfinite(y).all()
    assert _max_element_error(y, ref) <= ELEMENT_TOLERANCES["float16"]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", [k.LaunchPath.AUTO, *PATHS], ids=lambda p: p.name.lower())
def test_unaligned_pointers(path: k.LaunchPath, dtype: str, layout: str) -> None:
    import torch

    shape = (2, 64, (16, 16), 8)
    x, gamma, beta, g = _case(shape, dtype, layout)
    shifted = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)[1:].view(x.shape)
    shifted.copy_(x)
    out = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)[1:].view(x.shape)
    if not _serves(shape, dtype, layout, path, aligned=False):
        assert path in (k.LaunchPath.TILED, k.LaunchPath.CLUSTER, k.LaunchPath.REGISTERS)
        with pytest.raises(k.KernelError, match="INVALID_PATH"):
            k.group_norm(shifted, g, gamma, beta, layout=layout, out=out, path=path)
        return
    y = k.group_norm(shifted, g, gamma, beta, layout=layout, out=out, path=path)
    ref = _reference(x, gamma, beta, g, layout, False)
    assert _max_element_error(y, ref) <= ELEMENT_TOLERANCES[dtype]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", [k.LaunchPath.AUTO, *PATHS], ids=lambda p: p.name.lower())
def test_silu_at_extreme_preactivations(path: k.LaunchPath, dtype: str, layout: str) -> None:
    # one channel a group, shifted by beta from -1000 to 1000 with gamma 40: e^-v overflows
    # fp32 below v = -88 (the CPU kernels once returned NaN there)
    import torch

    x, _, _, g = _case((2, 9, (7, 5), 9), dtype, layout)
    gamma = torch.full((9,), 40.0, dtype=torch.float64, device=x.device)
    beta = torch.tensor([-1000.0, -120, -89, -87, 0, 87, 89, 120, 1000], device=x.device)
    if _refused(x, g, layout, path):
        return
    y = _run(x, g, gamma, beta.double(), layout, True, path)
    ref = _reference(x, gamma, beta.double(), g, layout, True)
    assert _max_element_error(y, ref) <= ELEMENT_TOLERANCES[dtype]


@pytest.mark.parametrize("silu", [False, True], ids=["plain", "silu"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", REGISTER_PATH_SHAPES, ids=_shape_id)
def test_registers_path_matches_reference(
    shape: tuple, dtype: str, layout: str, silu: bool
) -> None:
    # every vectors-per-thread variant, one block and a 2-block cluster per group
    x, gamma, beta, g = _case(shape, dtype, layout, seed=1)
    y = _run(x, g, gamma, beta, layout, silu, k.LaunchPath.REGISTERS)
    ref = _reference(x, gamma, beta, g, layout, silu)
    assert relative_l2(y.double().cpu().numpy(), ref) <= tolerance_for(dtype)
    assert _max_element_error(y, ref) <= ELEMENT_TOLERANCES[dtype]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", [(2, 320, (64, 64), 40), (6, 1024, (16, 16), 32)], ids=_shape_id)
def test_registers_path_is_deterministic_and_captured(shape: tuple, layout: str) -> None:
    # a 2-block cluster per group, then one block per group (N*G >= SMs on an H200)
    import torch

    x, gamma, beta, g = _case(shape, "float16", layout)
    path = k.LaunchPath.REGISTERS
    first = k.group_norm(x, g, gamma, beta, silu=True, layout=layout, path=path)
    for _ in range(3):
        again = k.group_norm(x, g, gamma, beta, silu=True, layout=layout, path=path)
        assert torch.equal(again, first)
    y = torch.empty_like(x)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        k.group_norm(x, g, gamma, beta, silu=True, layout=layout, out=y, path=path)
    y.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(y, first)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", [(2, 320, (64, 64), 32), (1, 128, (512, 512), 32)], ids=_shape_id)
def test_bitwise_deterministic(shape: tuple, layout: str) -> None:
    import torch

    x, gamma, beta, g = _case(shape, "float16", layout)
    first = k.group_norm(x, g, gamma, beta, silu=True, layout=layout)
    for _ in range(3):
        assert torch.equal(k.group_norm(x, g, gamma, beta, silu=True, layout=layout), first)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", [(2, 320, (32, 32), 32), (1, 256, (256, 256), 32)], ids=_shape_id)
def test_captured_in_a_cuda_graph(shape: tuple, layout: str) -> None:
    import torch

    x, gamma, beta, g = _case(shape, "float16", layout)
    y = torch.empty_like(x)
    k.group_norm(x, g, gamma, beta, silu=True, layout=layout, out=y)  # warm up (attributes)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        k.group_norm(x, g, gamma, beta, silu=True, layout=layout, out=y)
    y.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    ref = _reference(x, gamma, beta, g, layout, True)
    assert _max_element_error(y, ref) <= ELEMENT_TOLERANCES["float16"]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_empty_tensors(layout: str) -> None:
    import torch

    x = torch.empty((0, 64, 8, 8) if layout == "NCHW" else (0, 8, 8, 64), device="cuda")
    assert k.group_norm(x, 8, layout=layout).shape == x.shape
    x = torch.empty((2, 64, 0) if layout == "NCHW" else (2, 0, 64), device="cuda")
    assert k.group_norm(x, 8, layout=layout).numel() == 0


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_more_than_2_pow_31_elements(layout: str) -> None:
    import torch

    n, c, s, g = 1, 8, (1 << 28) + 8, 2  # 2^31 + 64 fp16 elements, two groups of 2^30 + 32
    torch.manual_seed(0)
    shape = (n, c, s) if layout == "NCHW" else (n, s, c)
    x = (torch.randn(shape, device="cuda", dtype=torch.float16) + 3).contiguous()
    y = k.group_norm(x, g, layout=layout)
    channels_first = (x if layout == "NCHW" else x.movedim(-1, 1)).reshape(n, g, -1)
    out_first = (y if layout == "NCHW" else y.movedim(-1, 1)).reshape(n, g, -1)
    for group in range(g):
        xs = channels_first[0, group].double()
        mean, var = xs.mean(), xs.var(unbiased=False)
        ref = (xs - mean) / torch.sqrt(var + 1e-5)
        err = ((out_first[0, group].double() - ref).abs() / (1 + ref.abs())).max().item()
        assert err <= ELEMENT_TOLERANCES["float16"], f"group {group}: {err:.2e}"
        del xs, ref


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_registers_path_past_2_pow_31_elements(layout: str) -> None:
    import torch

    # 2^31 + 2^16 fp16 elements in 131076 groups of 16 x 1024: the last sample starts at 2^31
    n, c, s, g = 32769, 64, 1024, 4
    torch.manual_seed(0)
    shape = (n, c, s) if layout == "NCHW" else (n, s, c)
    x = torch.randn(shape, device="cuda", dtype=torch.float16) + 3
    y = k.group_norm(x, g, layout=layout, path=k.LaunchPath.REGISTERS)
    last_x, last_y = (x[-1], y[-1]) if layout == "NCHW" else (x[-1].T, y[-1].T)
    xs = last_x.reshape(g, -1).double()
    ref = (xs - xs.mean(1, keepdim=True)) / torch.sqrt(
        xs.var(1, unbiased=False, keepdim=True) + 1e-5
    )
    err = ((last_y.reshape(g, -1).double() - ref).abs() / (1 + ref.abs())).max().item()
    assert err <= ELEMENT_TOLERANCES["float16"]
