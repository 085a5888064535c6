"""Build a TensorRT engine (TensorRT 10 or 11) from ONNX with gn-deploy's plugin loaded."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gn_deploy.errors import GnDeployError
from gn_deploy.modelio import load_proto
from gn_deploy.outputs import Outputs, guard, inputs_of
from gn_deploy.trt.plugin import find_plugin_library, load_plugin
from gn_deploy.trt.precision import convert_to_fp16, plan_precision
from gn_deploy.trt.profiles import profiles_for

INSTALL_HINT = (
    "TensorRT's builder is not installed: `gn-deploy build` needs the `tensorrt` Python "
    "package (TensorRT 10 or 11 with its builder, e.g. `pip install tensorrt-cu13` from "
    "NVIDIA's package index) and an NVIDIA GPU"
)


def require_tensorrt() -> Any:
    """The full TensorRT module (builder included), or a clear error naming what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise GnDeployError(INSTALL_HINT) from exc
    if not hasattr(trt, "Builder"):
        raise GnDeployError(INSTALL_HINT + " (the installed tensorrt has no Builder)")
    return trt


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def _progress_monitor(trt: Any) -> Any:
    """A monitor printing TensorRT's build phases to stderr (the build takes minutes)."""

    class Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._start = time.perf_counter()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            depth = "  " if parent_phase else ""
            print(
                f"[{time.perf_counter() - self._start:6.1f}s] {depth}{phase_name} ...",
                file=sys.stderr,
                flush=True,
            )

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True

        def phase_finish(self, phase_name: str) -> None:
            return None

    return Progress()


def build_engine(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    shapes: Sequence[str] = (),
    precision: str = "fp32",
    timing_cache: str | os.PathLike[str] | None = None,
    plugin: str | os.PathLike[str] | None = None,
) -> Path:
    """Build ``model`` into a serialized engine at ``output`` (written atomically).

    ``shapes`` are ``name:MIN,OPT,MAX`` profiles (static inputs default to their shape).
    TensorRT 10 builds with builder precision flags; TensorRT 11 builds strongly typed, so for
    fp16 the graph is converted first (GN gamma/beta stay fp32).
    """
    source, out = Path(model), Path(output)
    cache_path = Path(timing_cache) if timing_cache else None
    guard(
        [(out, "-o"), *([(cache_path, "--timing-cache")] if cache_path else [])],
        inputs_of(source),
    )
    profiles = profiles_for(load_proto(source), shapes)
    trt = require_tensorrt()
    plan = plan_precision(trt_major(trt), precision)
    logger = trt.Logger(trt.Logger.WARNING)
    load_plugin(trt, find_plugin_library(plugin))
    with tempfile.TemporaryDirectory() as tmp:
        if plan.convert_to == "float16":
            converted = Path(tmp) / "model.fp16.onnx"
            convert_to_fp16(source, converted)
            source = converted
        builder = trt.Builder(logger)
        flags = 0
        if plan.strongly_typed:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise GnDeployError(f"{model}: TensorRT's ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        for flag in plan.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        for flag in plan.cleared_flags:
            config.clear_flag(getattr(trt.BuilderFlag, flag))
        profile = builder.create_optimization_profile()
        for p in profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
        cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
        cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)
        config.progress_monitor = _progress_monitor(trt)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise GnDeployError(f"{model}: TensorRT could not build the engine (see its log above)")
        with Outputs() as outputs:
            outputs.stage_bytes(out, memoryview(serialized))
            if cache_path is not None:
                outputs.stage_bytes(cache_path, memoryview(config.get_timing_cache().serialize()))
            outputs.commit()
    return out
