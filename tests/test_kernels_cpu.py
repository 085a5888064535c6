"""The kernel library's C API on the CPU: argument validation and the launch planner."""

from __future__ import annotations

import ctypes
import math

import pytest

from gn_deploy import kernels as k
from tests.kernel_support import REGISTER_PATH_SHAPES, cuda_available, needs_library

pytestmark = needs_library
H200 = k.Device(132, 232448, 9, 0, 233472, k.Feature.CLUSTER | k.Feature.COOPERATIVE)
A100 = k.Device(108, 166912, 8, 0, 167936, k.Feature.COOPERATIVE)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"c": 10, "groups": 3}, k.Status.INVALID_GROUPS),
        ({"groups": 0}, k.Status.INVALID_GROUPS),
        ({"groups": -4}, k.Status.INVALID_GROUPS),
        ({"n": -1}, k.Status.INVALID_SHAPE),
        ({"c": 0}, k.Status.INVALID_SHAPE),
        ({"spatial": -1}, k.Status.INVALID_SHAPE),
        ({"n": 2**40, "c": 2**20, "spatial": 2**20, "groups": 1}, k.Status.INVALID_SHAPE),
        ({"epsilon": -1e-5}, k.Status.INVALID_EPSILON),
        ({"epsilon": math.nan}, k.Status.INVALID_EPSILON),
        ({"epsilon": math.inf}, k.Status.INVALID_EPSILON),
        ({"dtype": 3}, k.Status.INVALID_DTYPE),
        ({"layout": 2}, k.Status.INVALID_LAYOUT),
        ({"activation": 2}, k.Status.INVALID_ACTIVATION),
    ],
)
def test_invalid_params(changes: dict, status: k.Status) -> None:
    args = {"n": 2, "c": 8, "spatial": 16, "groups": 4, **changes}
    params = k.make_params(**args)
    assert k.validate(params) == status
    with pytest.raises(k.KernelError) as err:
        k.plan(params, H200)
    assert err.value.status == status
    buf = ctypes.create_string_buffer(64)
    assert k.library().gn_forward(ctypes.byref(params), buf, buf, buf, buf, None, 0, None) == status


def test_null_pointers() -> None:
    lib = k.library()
    params = k.make_params(2, 8, 16, 4)
    buf = ctypes.create_string_buffer(64)
    assert k.validate(None) == k.Status.NULL_POINTER
    assert lib.gn_forward(None, buf, buf, buf, buf, None, 0, None) == k.Status.NULL_POINTER
    for hole in range(4):
        ptrs = [buf] * 4
        ptrs[hole] = None
        status = lib.gn_forward(ctypes.byref(params), *ptrs, None, 0, None)
        assert status == k.Status.NULL_POINTER
    assert lib.gn_plan_launch(ctypes.byref(params), None, None) == k.Status.NULL_POINTER
    assert lib.gn_workspace_size(ctypes.byref(params), None) == k.Status.NULL_POINTER


@pytest.mark.skipif(cuda_available(), reason="checks behaviour on a machine without a GPU")
def test_forward_without_gpu_reports_cuda_error() -> None:
    params = k.make_params(2, 8, 16, 4)
    buf = ctypes.create_string_buffer(64)
    status = k.library().gn_forward(ctypes.byref(params), buf, buf, buf, buf, None, 0, None)
    assert status == k.Status.CUDA


def test_status_strings_are_distinct() -> None:
    texts = [k.status_string(s) for s in k.Status]
    assert all(texts) and len(set(texts)) == len(texts)
    assert k.status_string(99) == "unknown status"


def test_small_groups_stay_on_chip() -> None:
    plan = k.plan(k.make_params(2, 1280, 8 * 8, 32, dtype=k.DType.FLOAT16), H200)
    assert plan.path == k.LaunchPath.ONCHIP
    assert (plan.blocks, plan.chunks, plan.vec, plan.workspace_bytes) == (64, 1, 8, 0)
    assert plan.smem_bytes == 40 * 64 * 2


def test_many_groups_that_fit_stay_on_chip() -> None:
    # sd-unet-64 at batch 8: a group is 10 channels x 4096 positions of fp16 = 80 KiB
    plan = k.plan(k.make_params(8, 320, 64 * 64, 32, dtype=k.DType.FLOAT16), H200)
    assert plan.path == k.LaunchPath.ONCHIP and plan.blocks == 256
    assert plan.smem_bytes == 10 * 4096 * 2


def _unit_len(params: k.Params) -> int:
    if params.layout == k.Layout.NHWC:
        return params.spatial
    return params.c // params.groups * params.spatial


# (N, C, spatial, G, dtype, layout): every benchmark shape of docs/design.md in both layouts, and
# odd ones (G = C, one position, channels not a multiple of 8 per group).
TILED_SHAPES = [
    (n, c, sp, g, dt, lay)
    for (n, c, sp, g, dt) in [
        (2, 320, 64 * 64, 32, k.DType.FLOAT16),
        (2, 1280, 8 * 8, 32, k.DType.FLOAT16),
        (1, 512, 256 * 256, 32, k.DType.FLOAT16),
        (1, 128, 1024 * 1024, 32, k.DType.FLOAT16),
        (2, 256, 100 * 152, 32, k.DType.FLOAT32),
        (1, 64, 16 * 64 * 64, 32, k.DType.BFLOAT16),
        (4, 2560, 3 * 4, 2560, k.DType.FLOAT32),
        (64, 40, 4, 4, k.DType.FLOAT16),
        (1, 8, 1 << 26, 1, k.DType.FLOAT32),
    ]
    for lay in (k.Layout.NCHW, k.Layout.NHWC)
    if lay == k.Layout.NCHW or g <= 256  # the NHWC tiled path keeps per-group partials
]


@pytest.mark.parametrize("shape", TILED_SHAPES)
@pytest.mark.parametrize("device", [H200, A100], ids=["h200", "a100"])
def test_tiled_plan_covers_every_element_within_the_chip(shape: tuple, device: k.Device) -> None:
    n, c, spatial, g, dtype, layout = shape
    params = k.make_params(n, c, spatial, g, layout=layout, dtype=dtype)
    plan = k.plan(params, device, k.LaunchPath.TILED)
    esize = 4 if dtype == k.DType.FLOAT32 else 2
    assert plan.path == k.LaunchPath.TILED and plan.vec * esize == 16
    unit_len = _unit_len(params)
    # every tile of a unit is owned by one of its blocks, and fits one shared-memory slot
    assert plan.chunks * plan.tiles * plan.tile >= unit_len
    assert plan.chunks * plan.tiles * plan.tile - unit_len < plan.chunks * plan.tiles * plan.vec
    row = c if layout == k.Layout.NHWC else 1
    assert plan.slot_elems == plan.tile * row and plan.slot_elems % plan.vec == 0
    # all blocks resident at once (the grid waits on itself): two per SM
    assert plan.blocks == plan.chunks * plan.units_per_wave <= 2 * device.sm_count
    assert 2 * (plan.smem_bytes + 2048) <= device.smem_per_sm
    assert plan.smem_bytes <= device.max_smem_per_block
    assert plan.workspace_bytes <= k.workspace_size(params)


def test_tiled_keeps_units_on_chip_when_they_fit() -> None:
    # sdxl-vae-1024 NCHW: 32 groups of 8 MiB, each on all 264 blocks with one tile per block
    # (the other slot stages the next group)
    plan = k.plan(k.make_params(1, 128, 1024 * 1024, 32, dtype=k.DType.FLOAT16), H200)
    assert plan.path == k.LaunchPath.TILED and plan.tiles == 1
    assert plan.units_per_wave == 1 and plan.chunks == 264
    # sd-vae-256 NCHW: 2 MiB groups, four at a time on 66 blocks each
    plan = k.plan(k.make_params(1, 512, 256 * 256, 32, dtype=k.DType.FLOAT16), H200)
    assert (plan.tiles, plan.units_per_wave, plan.chunks) == (1, 4, 66)
    # its NHWC twin: one 256 MiB sample is over the chip, so tiles are read again
    nhwc = k.make_params(1, 128, 1024 * 1024, 32, layout=k.Layout.NHWC, dtype=k.DType.FLOAT16)
    plan = k.plan(nhwc, H200)
    assert plan.path == k.LaunchPath.TILED and plan.tiles > 2 and plan.chunks == 264


@pytest.mark.parametrize(("c", "g"), [(320, 32), (640, 32), (128, 32), (2560, 2560 // 16), (8, 8)])
def test_nhwc_is_vectorized_for_any_channels_per_group(c: int, g: int) -> None:
    params = k.make_params(2, c, 32 * 32, g, layout=k.Layout.NHWC, dtype=k.DType.FLOAT16)
    plan = k.plan(params, H200)
    assert plan.path in (k.LaunchPath.TILED, k.LaunchPath.ONCHIP) and plan.vec == 8


def test_unaligned_pointers_never_get_the_tiled_path() -> None:
    params = k.make_params(2, 320, 64 * 64, 32, dtype=k.DType.FLOAT16)
    plan = k.plan(params, H200, aligned=False)
    assert plan.path != k.LaunchPath.TILED and plan.vec == 1
    with pytest.raises(k.KernelError) as err:
        k.plan(params, H200, k.LaunchPath.TILED, aligned=False)
    assert err.value.status == k.Status.INVALID_PATH


def test_tiled_sharing_units_needs_cooperative_launch() -> None:
    no_coop = k.Device(132, 232448, 9, 0, 233472, k.Feature.CLUSTER)
    params = k.make_params(1, 512, 256 * 256, 32, dtype=k.DType.FLOAT16)
    assert k.plan(params, no_coop).path != k.LaunchPath.TILED
    with pytest.raises(k.KernelError) as err:
        k.plan(params, no_coop, k.LaunchPath.TILED)
    assert err.value.status == k.Status.INVALID_PATH


@pytest.mark.parametrize("shape", TILED_SHAPES)
@pytest.mark.parametrize("features", [0, 1, 2, 3])
@pytest.mark.parametrize("cc", [(8, 0), (9, 0), (12, 0)])
def test_planner_never_picks_a_path_the_binary_lacks(shape: tuple, features: int, cc) -> None:
    # Clusters only where gn_query_device found cluster code for the GPU in the library,
    # whatever the compute capability says; shared tiled units only with cooperative launch.
    n, c, spatial, g, dtype, layout = shape
    device = k.Device(132, 232448, cc[0], cc[1], 233472, features)
    plan = k.plan(k.make_params(n, c, spatial, g, layout=layout, dtype=dtype), device)
    if not features & k.Feature.CLUSTER:
        assert plan.path != k.LaunchPath.CLUSTER
    if not features & k.Feature.COOPERATIVE:
        assert plan.path != k.LaunchPath.TILED or plan.chunks == 1


def test_forced_paths_refuse_what_they_cannot_serve() -> None:
    big = k.make_params(1, 128, 1024 * 1024, 32, dtype=k.DType.FLOAT16)
    with pytest.raises(k.KernelError) as err:
        k.plan(big, H200, k.LaunchPath.ONCHIP)  # 8 MiB groups do not fit one block
    assert err.value.status == k.Status.INVALID_PATH
    with pytest.raises(k.KernelError) as err:
        k.plan(k.make_params(2, 320, 4096, 32), A100, k.LaunchPath.CLUSTER)
    assert err.value.status == k.Status.INVALID_PATH
    assert k.plan(big, H200, k.LaunchPath.STREAM).path == k.LaunchPath.STREAM


# The registers path (a candidate): every benchmark shape it serves, a group in one block on
# any GPU (N*G >= SMs), and groups at the limits of one block and of a 2-block cluster.
REGISTER_SHAPES = [
    *TILED_SHAPES,
    (8, 320, 64 * 64, 32, k.DType.FLOAT16, k.Layout.NCHW),
    (1, 8, 8192, 1, k.DType.FLOAT16, k.Layout.NCHW),  # 8192 vectors: one full block
    (1, 8, 8200, 1, k.DType.FLOAT16, k.Layout.NCHW),  # one vector more
    (1, 8, 16384, 1, k.DType.FLOAT16, k.Layout.NCHW),  # 16384 vectors: a full cluster
    (1, 4, 16388, 1, k.DType.FLOAT32, k.Layout.NCHW),  # one vector more
    (3, 96, 7, 12, k.DType.FLOAT32, k.Layout.NHWC),
]


def _register_plan(shape: tuple, device: k.Device, aligned: bool = True) -> k.Plan | None:
    n, c, spatial, g, dtype, layout = shape
    params = k.make_params(n, c, spatial, g, layout=layout, dtype=dtype)
    try:
        return k.plan(params, device, k.LaunchPath.REGISTERS, aligned)
    except k.KernelError as err:
        assert err.status == k.Status.INVALID_PATH
        return None


@pytest.mark.parametrize("shape", REGISTER_SHAPES)
@pytest.mark.parametrize("device", [H200, A100], ids=["h200", "a100"])
def test_registers_plan_covers_every_vector_of_a_group(shape: tuple, device: k.Device) -> None:
    n, c, spatial, g, dtype, layout = shape
    esize = 4 if dtype == k.DType.FLOAT32 else 2
    vec = 16 // esize
    per_group = c // g
    within = per_group % vec == 0 if layout == k.Layout.NHWC else spatial % vec == 0
    vectors = per_group * spatial // vec
    max_chunks = 2 if device.features & k.Feature.CLUSTER else 1
    plan = _register_plan(shape, device)
    assert (plan is not None) == (within and vectors <= 8192 * max_chunks)
    if plan is None:
        return
    assert plan.path == k.LaunchPath.REGISTERS and plan.vec == vec
    assert plan.chunks in range(1, max_chunks + 1) and plan.blocks == n * g * plan.chunks
    assert plan.tiles in (1, 2, 4, 8)
    assert plan.threads % 32 == 0 and 32 <= plan.threads <= 1024
    # each block's threads hold its share of the group, with no warp to spare; a thread holds
    # more vectors only where the block would otherwise pass 512 threads
    per_block = -(-vectors // plan.chunks)
    assert plan.threads * plan.tiles >= per_block > (plan.threads - 32) * plan.tiles
    assert plan.tiles == 8 or plan.threads <= 512
    assert plan.tiles == 1 or -(-per_block // (plan.tiles // 2)) > 512
    # nothing on the device besides registers: no staging, no workspace
    assert plan.smem_bytes == 0 and plan.workspace_bytes == 0
    # two blocks per group exactly where one per group would leave SMs idle or not fit
    wants_two = n * g < device.sm_count or vectors > 8192
    assert plan.chunks == (2 if max_chunks == 2 and wants_two else 1)


def test_registers_plan_of_sd_unet_64() -> None:
    # 64 groups of 5120 fp16 vectors on 132 SMs: a 2-block cluster per group, 8 vectors each
    plan = _register_plan((2, 320, 64 * 64, 32, k.DType.FLOAT16, k.Layout.NCHW), H200)
    assert plan is not None
    assert (plan.chunks, plan.blocks, plan.threads, plan.tiles) == (2, 128, 320, 8)
    plan = _register_plan((2, 320, 64 * 64, 32, k.DType.FLOAT16, k.Layout.NCHW), A100)
    assert plan is not None and (plan.chunks, plan.threads, plan.tiles) == (1, 640, 8)


@pytest.mark.parametrize("dtype", [k.DType.FLOAT32, k.DType.FLOAT16, k.DType.BFLOAT16])
@pytest.mark.parametrize("layout", [k.Layout.NCHW, k.Layout.NHWC])
def test_gpu_shapes_run_every_register_variant(dtype: int, layout: int) -> None:
    # tests/test_kernels_gpu.py forces the registers path on these shapes: on an H200 they run
    # every vectors-per-thread variant and both block counts per group
    plans = [
        _register_plan((n, c, math.prod(spatial), g, dtype, layout), H200)
        for n, c, spatial, g in REGISTER_PATH_SHAPES
    ]
    assert all(plan is not None for plan in plans)
    assert {plan.tiles for plan in plans if plan is not None} == {1, 2, 4, 8}
    assert {plan.chunks for plan in plans if plan is not None} == {1, 2}


def test_registers_path_is_only_on_request() -> None:
    # a candidate until a GPU run records it passing: the planner never picks it
    for n, c, spatial, g, dtype, layout in REGISTER_SHAPES:
        params = k.make_params(n, c, spatial, g, layout=layout, dtype=dtype)
        for device in (H200, A100):
            for aligned in (True, False):
                assert k.plan(params, device, aligned=aligned).path != k.LaunchPath.REGISTERS


def test_registers_path_needs_aligned_16_byte_vectors() -> None:
    shape = (2, 320, 64 * 64, 32, k.DType.FLOAT16, k.Layout.NCHW)
    assert _register_plan(shape, H200, aligned=False) is None
    # sd-unet-64 NHWC: 10 channels per group, so a vector would span two groups
    assert _register_plan((2, 320, 4096, 32, k.DType.FLOAT16, k.Layout.NHWC), H200) is None
    # 7x7 positions: an NCHW vector would span two channels
    assert _register_plan((2, 64, 49, 8, k.DType.FLOAT16, k.Layout.NCHW), H200) is None


@pytest.mark.parametrize(("n", "spatial"), [(0, 64), (2, 0), (0, 0)])
def test_empty_tensors_are_a_successful_no_op(n: int, spatial: int) -> None:
    params = k.make_params(n, 8, spatial, 4)
    assert k.validate(params) == k.Status.SUCCESS
    assert k.plan(params, H200).path == k.LaunchPath.EMPTY
    # nothing is launched and no pointer is needed, GPU or not
    status = k.library().gn_forward(ctypes.byref(params), None, None, None, None, None, 0, None)
    assert status == k.Status.SUCCESS


def test_stream_chunks_are_bounded_by_work() -> None:
    device = k.Device(132, 0, 9, 0, 0, 0)  # no shared memory: everything streams
    plan = k.plan(k.make_params(1, 4, 9, 2), device)
    assert plan.path == k.LaunchPath.STREAM and plan.chunks == 1 and plan.vec == 1


@pytest.mark.parametrize(
    ("layout", "c", "g", "spatial", "dtype", "vec"),
    [
        (k.Layout.NCHW, 8, 4, 49, k.DType.FLOAT16, 1),  # 7x7 positions: not a multiple of 8
        (k.Layout.NCHW, 8, 4, 64, k.DType.FLOAT16, 8),
        (k.Layout.NCHW, 8, 4, 12, k.DType.FLOAT32, 4),
        (k.Layout.NHWC, 40, 4, 9, k.DType.FLOAT16, 1),  # 10 channels per group
        (k.Layout.NHWC, 64, 8, 9, k.DType.BFLOAT16, 8),
        (k.Layout.NHWC, 32, 8, 9, k.DType.FLOAT32, 4),
    ],
)
def test_stream_vector_width(
    layout: int, c: int, g: int, spatial: int, dtype: int, vec: int
) -> None:
    params = k.make_params(2, c, spatial, g, layout=layout, dtype=dtype)
    assert k.plan(params, H200, k.LaunchPath.STREAM).vec == vec


def test_unusable_device() -> None:
    with pytest.raises(k.KernelError) as err:
        k.plan(k.make_params(2, 8, 16, 4), k.Device(0, 1024, 9, 0))
    assert err.value.status == k.Status.INVALID_DEVICE


def test_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(k.LIBRARY_ENV, str(tmp_path / "nope.so"))
    k.library.cache_clear()
    try:
        with pytest.raises(k.GnDeployError, match="make kernels"):
            k.library()
    finally:
        monkeypatch.undo()
        k.library.cache_clear()


@pytest.mark.skipif(cuda_available(), reason="checks the message on a machine without a GPU")
def test_bench_kernels_without_gpu_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch", reason="bench kernels needs torch")
    from gn_deploy.cli import main

    assert main(["bench", "kernels"]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_hopper_clusters_hold_groups_larger_than_one_block() -> None:
    # det-head fp32: a group is 8 x 15200 floats = 475 KiB, over one block's shared memory
    plan = k.plan(k.make_params(2, 256, 100 * 152, 32), H200, k.LaunchPath.CLUSTER)
    assert plan.path == k.LaunchPath.CLUSTER and plan.chunks == 4
    assert plan.smem_bytes <= H200.max_smem_per_block


@pytest.mark.parametrize("name", ["gamma", "beta"])
@pytest.mark.parametrize("length", [7, 9])
def test_short_or_long_gamma_beta_is_an_error(name: str, length: int) -> None:
    torch = pytest.importorskip("torch", reason="group_norm takes torch tensors")
    x = torch.zeros(2, 8, 4, 4)
    with pytest.raises(k.GnDeployError, match=rf"{name} must have shape \[8\]"):
        k.group_norm(x, 4, **{name: torch.ones(length)})
