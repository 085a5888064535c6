"""The kernel library's C API on the CPU: argument validation and the launch planner."""

from __future__ import annotations

import ctypes
import math

import pytest

from gn_deploy import kernels as k
from tests.kernel_support import cuda_available, needs_library

pytestmark = needs_library
H200 = k.Device(132, 232448, 9, 0)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"c": 10, "groups": 3}, k.Status.INVALID_GROUPS),
        ({"groups": 0}, k.Status.INVALID_GROUPS),
        ({"groups": -4}, k.Status.INVALID_GROUPS),
        ({"n": 0}, k.Status.INVALID_SHAPE),
        ({"c": 0}, k.Status.INVALID_SHAPE),
        ({"spatial": 0}, k.Status.INVALID_SHAPE),
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
    # sd-unet-64: a group is 10 channels x 4096 positions of fp16 = 80 KiB
    plan = k.plan(k.make_params(8, 320, 64 * 64, 32, dtype=k.DType.FLOAT16), H200)
    assert plan.path == k.LaunchPath.ONCHIP and plan.blocks == 256
    assert plan.smem_bytes == 10 * 4096 * 2


def test_large_groups_stream_and_fill_the_gpu() -> None:
    # sdxl-vae-1024: 32 groups of 4 Mi elements cannot sit in shared memory
    plan = k.plan(k.make_params(1, 128, 1024 * 1024, 32, dtype=k.DType.FLOAT16), H200)
    assert plan.path == k.LaunchPath.STREAM
    assert plan.blocks >= 4 * H200.sm_count
    assert plan.blocks == 32 * plan.chunks
    assert plan.workspace_bytes == plan.blocks * 8


def test_stream_chunks_are_bounded_by_work() -> None:
    device = k.Device(132, 0, 9, 0)  # no shared memory: everything streams
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
def test_vector_width(layout: int, c: int, g: int, spatial: int, dtype: int, vec: int) -> None:
    plan = k.plan(k.make_params(2, c, spatial, g, layout=layout, dtype=dtype), H200)
    assert plan.vec == vec


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


A100 = k.Device(108, 166912, 8, 0)


def test_hopper_clusters_read_x_once_when_groups_are_few() -> None:
    # sd-unet-64: 64 groups of 80 KiB would leave half an H200 idle with one block per group
    params = k.make_params(2, 320, 64 * 64, 32, dtype=k.DType.FLOAT16)
    plan = k.plan(params, H200)
    assert plan.path == k.LaunchPath.CLUSTER
    assert plan.chunks == 4 and plan.blocks == 256 >= H200.sm_count
    assert plan.smem_bytes == 10 * 4096 * 2 // 4 and plan.workspace_bytes == 0
    assert k.plan(params, A100).path == k.LaunchPath.STREAM, "no clusters before Hopper"


def test_cluster_holds_groups_larger_than_one_block() -> None:
    # det-head fp32: a group is 8 x 15200 floats = 475 KiB, over one block's shared memory
    plan = k.plan(k.make_params(2, 256, 100 * 152, 32), H200)
    assert plan.path == k.LaunchPath.CLUSTER and plan.chunks == 4
    assert plan.smem_bytes <= H200.max_smem_per_block


def test_groups_too_large_for_a_cluster_stream() -> None:
    # sd-vae-256: 2 MiB groups exceed 8 blocks' shared memory
    plan = k.plan(k.make_params(1, 512, 256 * 256, 32, dtype=k.DType.FLOAT16), H200)
    assert plan.path == k.LaunchPath.STREAM
