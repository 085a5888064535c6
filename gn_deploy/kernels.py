"""ctypes binding of the GN kernel library (`plugins/groupnorm`, built by `make kernels`).

The C API's validation and launch planner run on any machine; :func:`group_norm` runs the
kernels on torch CUDA tensors (tests, benchmarks, eager use).
"""

from __future__ import annotations

import ctypes
import enum
import math
import os
from functools import cache
from pathlib import Path
from typing import Any

from gn_deploy.errors import GnDeployError

LIBRARY_ENV = "GN_DEPLOY_KERNELS_LIB"
_BUILT = Path(__file__).resolve().parent.parent / "build" / "groupnorm" / "libgn_kernels.so"


class Status(enum.IntEnum):
    SUCCESS = 0
    NULL_POINTER = 1
    INVALID_SHAPE = 2
    INVALID_GROUPS = 3
    INVALID_EPSILON = 4
    INVALID_DTYPE = 5
    INVALID_LAYOUT = 6
    INVALID_ACTIVATION = 7
    WORKSPACE = 8
    INVALID_DEVICE = 9
    CUDA = 10
    INVALID_FIELD = 11
    INVALID_PATH = 12
    HOST = 13


class DType(enum.IntEnum):
    FLOAT32 = 0
    FLOAT16 = 1
    BFLOAT16 = 2


class Layout(enum.IntEnum):
    NCHW = 0
    NHWC = 1


class LaunchPath(enum.IntEnum):
    AUTO = -1
    ONCHIP = 0
    STREAM = 1
    CLUSTER = 2
    TILED = 3
    EMPTY = 4
    REGISTERS = 5  # a candidate, only on request: never the planner's choice yet


class Feature(enum.IntFlag):
    CLUSTER = 1
    COOPERATIVE = 2


class Params(ctypes.Structure):
    _fields_ = [
        ("n", ctypes.c_int64),
        ("c", ctypes.c_int64),
        ("spatial", ctypes.c_int64),
        ("groups", ctypes.c_int32),
        ("epsilon", ctypes.c_float),
        ("activation", ctypes.c_int32),
        ("layout", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
    ]


class Device(ctypes.Structure):
    _fields_ = [
        ("sm_count", ctypes.c_int32),
        ("max_smem_per_block", ctypes.c_int32),
        ("cc_major", ctypes.c_int32),
        ("cc_minor", ctypes.c_int32),
        ("smem_per_sm", ctypes.c_int32),
        ("features", ctypes.c_int32),
    ]


class Plan(ctypes.Structure):
    _fields_ = [
        ("path", ctypes.c_int32),
        ("threads", ctypes.c_int32),
        ("vec", ctypes.c_int32),
        ("chunks", ctypes.c_int32),
        ("blocks", ctypes.c_int64),
        ("smem_bytes", ctypes.c_int64),
        ("workspace_bytes", ctypes.c_int64),
        ("tiles", ctypes.c_int32),
        ("units_per_wave", ctypes.c_int32),
        ("tile", ctypes.c_int64),
        ("slot_elems", ctypes.c_int64),
    ]


class KernelError(GnDeployError):
    def __init__(self, status: int, what: str) -> None:
        self.status = Status(status)
        super().__init__(f"{what}: {self.status.name} ({status_string(status)})")


def library_path() -> Path:
    return Path(os.environ.get(LIBRARY_ENV, _BUILT))


@cache
def library() -> ctypes.CDLL:
    """The kernel library, with argument types declared."""
    path = library_path()
    if not path.is_file():
        raise GnDeployError(
            f"GN kernel library not found at {path}: build it with `make kernels` (needs nvcc), "
            f"or point {LIBRARY_ENV} at libgn_kernels.so"
        )
    lib = ctypes.CDLL(str(path))
    pp, vp = ctypes.POINTER(Params), ctypes.c_void_p
    lib.gn_validate.argtypes = [pp]
    lib.gn_plan_launch.argtypes = [pp, ctypes.POINTER(Device), ctypes.POINTER(Plan)]
    lib.gn_plan_launch_path.argtypes = [
        pp,
        ctypes.POINTER(Device),
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.POINTER(Plan),
    ]
    lib.gn_query_device.argtypes = [ctypes.POINTER(Device)]
    lib.gn_workspace_size.argtypes = [pp, ctypes.POINTER(ctypes.c_size_t)]
    lib.gn_forward.argtypes = [pp, vp, vp, vp, vp, vp, ctypes.c_size_t, vp]
    lib.gn_forward_path.argtypes = [pp, ctypes.c_int32, vp, vp, vp, vp, vp, ctypes.c_size_t, vp]
    lib.gn_status_string.argtypes = [ctypes.c_int]
    lib.gn_plugin_parse_fields.argtypes = [
        ctypes.POINTER(Field),
        ctypes.c_int32,
        ctypes.POINTER(PluginConfig),
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.gn_plugin_supports_format.argtypes = [ctypes.c_int32] * 3 + [ctypes.c_int64, ctypes.c_int32]
    lib.gn_status_string.restype = ctypes.c_char_p
    for fn in (
        "gn_validate",
        "gn_plan_launch",
        "gn_plan_launch_path",
        "gn_query_device",
        "gn_workspace_size",
        "gn_forward",
        "gn_forward_path",
        "gn_plugin_parse_fields",
        "gn_plugin_supports_format",
    ):
        getattr(lib, fn).restype = ctypes.c_int
    return lib


def status_string(status: int) -> str:
    return library().gn_status_string(status).decode()


def make_params(
    n: int,
    c: int,
    spatial: int,
    groups: int,
    epsilon: float = 1e-5,
    activation: int = 0,
    layout: int = Layout.NCHW,
    dtype: int = DType.FLOAT32,
) -> Params:
    return Params(n, c, spatial, groups, epsilon, activation, layout, dtype)


def validate(params: Params | None) -> Status:
    return Status(library().gn_validate(ctypes.byref(params) if params is not None else None))


def plan(
    params: Params, device: Device, path: LaunchPath = LaunchPath.AUTO, aligned: bool = True
) -> Plan:
    """The launch plan for ``params`` on ``device`` (``path``: force one, for tests)."""
    out = Plan()
    status = library().gn_plan_launch_path(
        ctypes.byref(params), ctypes.byref(device), int(path), int(aligned), ctypes.byref(out)
    )
    if status != Status.SUCCESS:
        raise KernelError(status, "gn_plan_launch")
    return out


def query_device() -> Device:
    """The current CUDA device as the planner sees it (needs a GPU)."""
    out = Device()
    status = library().gn_query_device(ctypes.byref(out))
    if status != Status.SUCCESS:
        raise KernelError(status, "gn_query_device")
    return out


def workspace_size(params: Params) -> int:
    """Device bytes that cover gn_forward for params and any smaller batch, on any GPU."""
    size = ctypes.c_size_t()
    status = library().gn_workspace_size(ctypes.byref(params), ctypes.byref(size))
    if status != Status.SUCCESS:
        raise KernelError(status, "gn_workspace_size")
    return size.value


_TORCH_DTYPES = {"float32": DType.FLOAT32, "float16": DType.FLOAT16, "bfloat16": DType.BFLOAT16}


def _check_affine(value: Any, channels: int, name: str) -> None:
    if value is not None and (value.dim() != 1 or value.numel() != channels):
        raise GnDeployError(
            f"group_norm: {name} must have shape [{channels}] (one value per channel), "
            f"got {list(value.shape)}"
        )


def _affine(torch: Any, value: Any, default: float, channels: int, x: Any, name: str) -> Any:
    """gamma or beta as a contiguous fp32 [C] tensor on x's device."""
    if value is None:
        return torch.full((channels,), default, device=x.device)
    if value.device != x.device:
        raise GnDeployError(f"group_norm: {name} is on {value.device}, x on {x.device}")
    return value.float().contiguous()


def group_norm(
    x: Any,
    num_groups: int,
    gamma: Any = None,
    beta: Any = None,
    epsilon: float = 1e-5,
    silu: bool = False,
    layout: str = "NCHW",
    out: Any = None,
    path: LaunchPath = LaunchPath.AUTO,
) -> Any:
    """GN of a CUDA tensor with gn-deploy's kernels.

    ``layout="NCHW"``: x is [N, C, *spatial]; ``"NHWC"``: x is [N, *spatial, C]; contiguous.
    gamma and beta are [C] (any float dtype; passed as fp32); ``out`` receives the result.
    ``path`` forces one launch path (tests, benchmarks); the default lets the planner choose.
    """
    import torch

    dtype = _TORCH_DTYPES.get(str(x.dtype).removeprefix("torch."))
    if dtype is None:
        raise GnDeployError(f"group_norm: unsupported dtype {x.dtype}")
    if x.dim() < 2:
        raise GnDeployError(f"group_norm: x must have rank >= 2, got shape {list(x.shape)}")
    lay = Layout[layout]
    channels = x.shape[1] if lay is Layout.NCHW else x.shape[-1]
    spatial = math.prod(x.shape[2:]) if lay is Layout.NCHW else math.prod(x.shape[1:-1])
    _check_affine(gamma, channels, "gamma")
    _check_affine(beta, channels, "beta")
    if not x.is_cuda or not x.is_contiguous():
        raise GnDeployError("group_norm: x must be a contiguous CUDA tensor")
    params = make_params(x.shape[0], channels, spatial, num_groups, epsilon, int(silu), lay, dtype)
    gamma = _affine(torch, gamma, 1.0, channels, x, "gamma")
    beta = _affine(torch, beta, 0.0, channels, x, "beta")
    y = torch.empty_like(x) if out is None else out
    if y.shape != x.shape or y.dtype != x.dtype or not y.is_contiguous() or y.device != x.device:
        raise GnDeployError("group_norm: out must be a contiguous tensor like x")
    size = workspace_size(params)
    workspace = torch.empty(max(size, 1), dtype=torch.uint8, device=x.device)
    stream = torch.cuda.current_stream(x.device).cuda_stream
    status = library().gn_forward_path(
        ctypes.byref(params),
        int(path),
        x.data_ptr(),
        gamma.data_ptr(),
        beta.data_ptr(),
        y.data_ptr(),
        workspace.data_ptr(),
        size,
        stream,
    )
    if status != Status.SUCCESS:
        raise KernelError(status, "gn_forward")
    return y


class Format(enum.IntEnum):
    """Tensor formats of the plugin (TensorRT's kLINEAR, kHWC/kDHWC, kHWC8/kDHWC8, kHWC16)."""

    LINEAR = 0
    HWC = 1
    HWC8 = 2
    HWC16 = 3


class FieldType(enum.IntEnum):
    INT32 = 0
    INT64 = 1
    FLOAT32 = 2
    FLOAT64 = 3
    OTHER = 4


class Field(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("data", ctypes.c_void_p),
        ("type", ctypes.c_int32),
        ("length", ctypes.c_int32),
    ]


class PluginConfig(ctypes.Structure):
    _fields_ = [
        ("num_groups", ctypes.c_int32),
        ("epsilon", ctypes.c_float),
        ("activation", ctypes.c_int32),
        ("channels_last", ctypes.c_int32),
    ]


def parse_plugin_fields(
    fields: list[tuple[str, Any, FieldType]],
) -> tuple[Status, PluginConfig, str]:
    """Run the plugin's field parser on ``(name, numpy array, type)`` triples."""
    keep = [np_array for _, np_array, _ in fields]  # keep the buffers alive during the call
    array = (Field * len(fields))(
        *[
            Field(name.encode(), data.ctypes.data, int(kind), data.size)
            for (name, _, kind), data in zip(fields, keep, strict=True)
        ]
    )
    config = PluginConfig()
    message = ctypes.create_string_buffer(256)
    status = library().gn_plugin_parse_fields(
        array, len(fields), ctypes.byref(config), message, 256
    )
    return Status(status), config, message.value.decode()


def plugin_supports_format(
    dtype: DType, fmt: Format, rank: int, channels: int, channels_last: bool = False
) -> bool:
    return bool(
        library().gn_plugin_supports_format(int(dtype), int(fmt), rank, channels, channels_last)
    )
