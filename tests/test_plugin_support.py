"""The plugin's TensorRT-free logic (fields, formats, workspace) through the C API, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from gn_deploy import kernels as k
from tests.kernel_support import needs_library

pytestmark = needs_library
I32, F32 = k.FieldType.INT32, k.FieldType.FLOAT32


def _fields(groups=32, eps=1e-5, act=1, eps_type=F32):
    eps_array = np.array([eps], np.float64 if eps_type == k.FieldType.FLOAT64 else np.float32)
    return [
        ("num_groups", np.array([groups], np.int32), I32),
        ("epsilon", eps_array, eps_type),
        ("activation", np.array([act], np.int32), I32),
    ]


def test_valid_fields() -> None:
    status, config, _ = k.parse_plugin_fields(_fields())
    assert status == k.Status.SUCCESS
    assert (config.num_groups, config.activation) == (32, 1)
    assert config.epsilon == pytest.approx(1e-5)


def test_float64_epsilon_and_extra_fields_accepted() -> None:
    fields = [
        *_fields(eps=1e-6, eps_type=k.FieldType.FLOAT64),
        ("plugin_version", np.frombuffer(b"1", np.uint8).copy(), k.FieldType.OTHER),
    ]
    status, config, _ = k.parse_plugin_fields(fields)
    assert status == k.Status.SUCCESS and config.epsilon == pytest.approx(1e-6)


def test_activation_and_channels_last_default_to_zero() -> None:
    status, config, _ = k.parse_plugin_fields(_fields()[:2])
    assert status == k.Status.SUCCESS and (config.activation, config.channels_last) == (0, 0)


def test_channels_last_field() -> None:
    status, config, _ = k.parse_plugin_fields(
        [*_fields(), ("channels_last", np.array([1], np.int64), k.FieldType.INT64)]
    )
    assert status == k.Status.SUCCESS and config.channels_last == 1


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        (_fields(groups=0), k.Status.INVALID_GROUPS, "num_groups must be a positive integer"),
        (_fields()[1:], k.Status.INVALID_GROUPS, "missing field num_groups"),
        (_fields()[::2], k.Status.INVALID_EPSILON, "missing field epsilon"),
        (_fields(eps=-1.0), k.Status.INVALID_EPSILON, "epsilon must be a finite float"),
        (_fields(eps=float("nan")), k.Status.INVALID_EPSILON, "epsilon must be a finite float"),
        (_fields(act=2), k.Status.INVALID_ACTIVATION, "activation must be 0"),
        (
            [*_fields(), ("channels_last", np.array([2], np.int32), I32)],
            k.Status.INVALID_FIELD,
            "channels_last must be 0 or 1",
        ),
        (
            [("num_groups", np.array([1.5], np.float32), F32), *_fields()[1:]],
            k.Status.INVALID_FIELD,
            "num_groups must be an integer",
        ),
        (
            [("num_groups", np.array([4, 8], np.int32), I32), *_fields()[1:]],
            k.Status.INVALID_FIELD,
            "num_groups must hold exactly one value",
        ),
    ],
)
def test_invalid_fields_name_the_field(fields: list, status: k.Status, message: str) -> None:
    got, _, text = k.parse_plugin_fields(fields)
    assert got == status
    assert message in text


@pytest.mark.parametrize(
    ("dtype", "fmt", "rank", "channels", "ok"),
    [
        (k.DType.FLOAT32, k.Format.LINEAR, 4, 64, True),
        (k.DType.BFLOAT16, k.Format.LINEAR, 3, 7, True),
        (k.DType.FLOAT16, k.Format.HWC8, 4, 64, True),
        (k.DType.FLOAT16, k.Format.HWC8, 4, 36, False),  # TensorRT pads C to 40: not our NHWC
        (k.DType.FLOAT32, k.Format.HWC8, 4, 64, False),
        (k.DType.FLOAT32, k.Format.HWC, 5, 3, True),
        (k.DType.FLOAT16, k.Format.HWC, 4, 64, False),
        (k.DType.FLOAT16, k.Format.HWC16, 4, 48, True),
        (k.DType.FLOAT16, k.Format.HWC16, 4, 40, False),
        (k.DType.FLOAT16, k.Format.HWC8, 4, -1, False),  # C unknown at build time
    ],
)
def test_formats(dtype: k.DType, fmt: k.Format, rank: int, channels: int, ok: bool) -> None:
    assert k.plugin_supports_format(dtype, fmt, rank, channels) is ok


@pytest.mark.parametrize(
    ("dtype", "fmt", "rank", "ok"),
    [
        # 4-D: unpadded channels-last only, every dtype (what TensorRT-RTX's convolutions use)
        (k.DType.FLOAT16, k.Format.HWC, 4, True),
        (k.DType.BFLOAT16, k.Format.HWC, 4, True),
        (k.DType.FLOAT32, k.Format.HWC, 4, True),
        (k.DType.FLOAT16, k.Format.LINEAR, 4, False),
        (k.DType.FLOAT32, k.Format.LINEAR, 4, False),
        (k.DType.FLOAT16, k.Format.HWC8, 4, False),
        (k.DType.FLOAT16, k.Format.HWC16, 4, False),
        # 5-D fp32: kDHWC only; 5-D 16-bit: TensorRT-RTX offers no kDHWC, so as without it
        (k.DType.FLOAT32, k.Format.HWC, 5, True),
        (k.DType.FLOAT32, k.Format.LINEAR, 5, False),
        (k.DType.FLOAT16, k.Format.LINEAR, 5, True),
        (k.DType.FLOAT16, k.Format.HWC8, 5, True),
        # no channels-last format below 4-D
        (k.DType.FLOAT16, k.Format.LINEAR, 3, True),
        (k.DType.FLOAT32, k.Format.HWC, 3, False),
    ],
)
def test_formats_with_channels_last(dtype: k.DType, fmt: k.Format, rank: int, ok: bool) -> None:
    assert k.plugin_supports_format(dtype, fmt, rank, 64, channels_last=True) is ok


DEVICES = [
    k.Device(132, 232448, 9, 0, 233472, 3),  # H100/H200
    k.Device(108, 166912, 8, 0, 167936, 2),  # A100
    k.Device(28, 101376, 8, 9, 102400, 2),  # a small Ada part
    k.Device(2048, 232448, 12, 0, 233472, 0),  # more SMs than any GPU, no cooperative launch
]


@pytest.mark.parametrize("dtype", list(k.DType))
@pytest.mark.parametrize("layout", list(k.Layout))
@pytest.mark.parametrize("spatial", [1, 64, 4096, 1 << 20])
def test_workspace_bound_covers_every_smaller_shape_on_every_device(
    dtype: k.DType, layout: k.Layout, spatial: int
) -> None:
    # The bound is what the plugin asks TensorRT for at build time, maybe on a machine with
    # no GPU or another GPU: it may depend on the shape only, and cover any device's plan.
    bound = k.workspace_size(k.make_params(8, 128, spatial, 32, layout=layout, dtype=dtype))
    for n in range(0, 9):
        for s in {0, 1, spatial // 2, spatial}:
            params = k.make_params(n, 128, s, 32, layout=layout, dtype=dtype)
            assert k.workspace_size(params) <= bound
            for device in DEVICES:
                for path in (k.LaunchPath.AUTO, k.LaunchPath.STREAM, k.LaunchPath.TILED):
                    try:
                        plan = k.plan(params, device, path)
                    except k.KernelError as err:
                        assert err.status == k.Status.INVALID_PATH
                        continue
                    assert plan.workspace_bytes <= bound
