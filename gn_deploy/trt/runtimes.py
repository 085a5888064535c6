"""The engine builders gn-deploy drives: TensorRT (10, 11) and TensorRT-RTX.

TensorRT builds for the GPU it runs on. TensorRT-RTX (``pip install 'gn-deploy[trt-rtx]'``)
builds ahead of time for the compute capabilities named, on any machine, a GPU-less one
included; its networks are always strongly typed, and it has no timing cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gn_deploy.errors import GnDeployError, UsageError

RUNTIMES = ("auto", "tensorrt", "tensorrt-rtx")
TENSORRT_HINT = (
    "TensorRT's builder is not installed: the `tensorrt` Python package (TensorRT 10 or 11 "
    "with its builder, from NVIDIA's package index) and an NVIDIA GPU"
)
RTX_HINT = "TensorRT-RTX is not installed: pip install 'gn-deploy[trt-rtx]'"
# What TensorRT-RTX's ONNX parser dlopens by its bare name; its wheel ships only the .so.1.
_RTX_UNVERSIONED = "libtensorrt_rtx.so"


@dataclass(frozen=True)
class Runtime:
    name: str  # "tensorrt" or "tensorrt-rtx"
    trt: Any  # the Python module
    version: str
    strongly_typed: bool
    ahead_of_time: bool  # builds for named compute capabilities, GPU or not
    notes: list[str] = field(default_factory=list)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def load_runtime(choice: str = "auto") -> Runtime:
    """The builder asked for; ``auto``: TensorRT if installed, else TensorRT-RTX."""
    if choice not in RUNTIMES:
        raise UsageError(f"--runtime {choice!r}: choose one of {', '.join(RUNTIMES)}")
    if choice == "tensorrt":
        return _tensorrt()
    if choice == "tensorrt-rtx":
        return _tensorrt_rtx()
    with contextlib.suppress(GnDeployError):
        return _tensorrt()
    try:
        return _tensorrt_rtx()
    except GnDeployError as exc:
        raise GnDeployError(
            "no TensorRT builder is installed: pip install 'gn-deploy[trt-rtx]' "
            "(TensorRT-RTX builds ahead of time, no GPU needed), or install TensorRT 10/11 "
            f"with its builder ({exc})"
        ) from exc


def _tensorrt() -> Runtime:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise GnDeployError(TENSORRT_HINT) from exc
    if not hasattr(trt, "Builder"):
        raise GnDeployError(TENSORRT_HINT + " (the installed tensorrt has no Builder)")
    version = str(trt.__version__)
    if int(version.split(".")[0]) < 10:
        raise GnDeployError(f"TensorRT {version} is too old: gn-deploy builds with 10 or 11")
    major = int(version.split(".")[0])
    return Runtime("tensorrt", trt, version, strongly_typed=major >= 11, ahead_of_time=False)


def _tensorrt_rtx() -> Runtime:
    if importlib.util.find_spec("tensorrt_rtx") is None:
        raise GnDeployError(RTX_HINT)
    notes = _ensure_unversioned_library()
    trt = importlib.import_module("tensorrt_rtx")
    return Runtime("tensorrt-rtx", trt, str(trt.__version__), True, ahead_of_time=True, notes=notes)


def _ensure_unversioned_library() -> list[str]:
    """TensorRT-RTX's ONNX parser dlopens ``libtensorrt_rtx.so`` beside itself (its RPATH is
    $ORIGIN) and aborts the process at the first plugin node when it is missing, which it is in
    the wheel: link it to the versioned library once. Returns a note when it did."""
    spec = importlib.util.find_spec("tensorrt_rtx_libs")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise GnDeployError(RTX_HINT + " (its libraries, tensorrt_rtx_libs, are missing)")
    folder = Path(folders[0])
    link = folder / _RTX_UNVERSIONED
    if link.exists():
        return []
    versioned = sorted(folder.glob(_RTX_UNVERSIONED + ".*"))
    if not versioned:
        raise GnDeployError(f"{folder}: no {_RTX_UNVERSIONED}.* in TensorRT-RTX's libraries")
    try:
        link.symlink_to(versioned[0].name)
    except OSError as exc:
        raise GnDeployError(
            f"TensorRT-RTX's ONNX parser needs {link}, which its wheel does not ship and "
            f"gn-deploy cannot create ({exc.strerror}): run `ln -s {versioned[0].name} {link}`"
        ) from exc
    return [f"linked {link} -> {versioned[0].name} (TensorRT-RTX's parser loads it by that name)"]


def parse_compute_capabilities(text: str | None) -> list[str]:
    """``8.6,12.0`` -> ["8.6", "12.0"], each once (validated against the runtime later)."""
    if text is None:
        return []
    items = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    for item in items:
        major, dot, minor = item.partition(".")
        if not (dot and major.isdigit() and minor.isdigit()):
            raise UsageError(f"--compute-capability {text!r}: expected X.Y[,X.Y...], e.g. 8.6")
    if not items:
        raise UsageError(f"--compute-capability {text!r}: expected X.Y[,X.Y...], e.g. 8.6")
    return items


def rtx_targets(runtime: Runtime, capabilities: list[str]) -> list[Any]:
    """TensorRT-RTX ComputeCapability values for ``capabilities`` (default: the local GPU)."""
    enum = runtime.trt.ComputeCapability
    supported = _rtx_supported(runtime)
    if not capabilities:
        if not has_gpu():
            raise UsageError(
                "no GPU here to build for: name the target GPUs with --compute-capability "
                f"(TensorRT-RTX {runtime.version} builds for {_listed(supported)})"
            )
        return [enum.CURRENT]
    unknown = [c for c in capabilities if c not in supported]
    if unknown:
        raise UsageError(
            f"--compute-capability {unknown[0]}: TensorRT-RTX {runtime.version} builds for "
            f"{_listed(supported)} (Hopper and data-center "
            "Blackwell are TensorRT's, not TensorRT-RTX's)"
        )
    return [supported[c] for c in capabilities]


def _rtx_supported(runtime: Runtime) -> dict[str, Any]:
    """ "8.6" -> TensorRT-RTX's ComputeCapability value, for each one it lists."""
    enum = runtime.trt.ComputeCapability
    return {
        name[2:-1] + "." + name[-1]: getattr(enum, name)
        for name in dir(enum)
        if name.startswith("SM") and name[2:].isdigit()
    }


def _listed(capabilities: dict[str, Any]) -> str:
    return ", ".join(sorted(capabilities, key=lambda c: tuple(int(p) for p in c.split("."))))


def has_gpu() -> bool:
    """Whether the CUDA driver sees a GPU (no CUDA Python package needed)."""
    return gpu_compute_capability() is not None


def gpu_compute_capability() -> str | None:
    """The first GPU's compute capability ("8.6") as the CUDA driver reports it; None without
    a driver or a GPU."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    ok = (
        cuda.cuInit(0) == 0
        and cuda.cuDeviceGet(ctypes.byref(device), 0) == 0
        and cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device) == 0  # ..._MAJOR
        and cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device) == 0  # ..._MINOR
    )
    return f"{major.value}.{minor.value}" if ok else None


def rtx_capabilities(runtime: Runtime) -> str:
    """The compute capabilities a TensorRT-RTX runtime builds and runs engines for, listed."""
    return _listed(_rtx_supported(runtime))


def note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)
