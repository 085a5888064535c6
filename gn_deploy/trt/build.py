"""Build an engine from ONNX (TensorRT 10/11, or TensorRT-RTX ahead of time) with our plugin."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from gn_deploy import plugin_op
from gn_deploy.errors import GnDeployError, UsageError
from gn_deploy.modelio import check_external_data, load_proto
from gn_deploy.outputs import Outputs, guard, inputs_of, proto_data_files
from gn_deploy.trt.layer_info import capturing_logger, engine_layers, plugin_formats
from gn_deploy.trt.plugin import find_plugin_library, load_plugin
from gn_deploy.trt.precision import convert_to_fp16, plan_precision
from gn_deploy.trt.profiles import profiles_for
from gn_deploy.trt.runtimes import load_runtime, note, parse_compute_capabilities, rtx_targets


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
    runtime: str = "auto",
    compute_capabilities: str | None = None,
    report_path: str | os.PathLike[str] | None = None,
) -> BuildReport:
    """Build ``model`` into a serialized engine at ``output`` (written atomically).

    ``shapes`` are ``name:MIN,OPT,MAX`` profiles (static inputs default to their shape).
    ``runtime``: ``tensorrt`` (10: builder precision flags; 11: strongly typed), ``tensorrt-rtx``
    (ahead of time for ``compute_capabilities`` such as ``"8.6,12.0"``, no GPU needed), or
    ``auto`` (TensorRT if installed). Strongly typed fp16 builds convert the graph first (GN
    gamma/beta stay fp32). Returns what was built; ``report_path`` receives it as JSON.
    """
    source, out = Path(model), Path(output)
    cache_path = Path(timing_cache) if timing_cache else None
    report_file = Path(report_path) if report_path else None
    proto = load_proto(source)
    check_external_data(proto, source)
    guard(
        [
            (out, "-o"),
            *([(cache_path, "--timing-cache")] if cache_path else []),
            *([(report_file, "--report")] if report_file else []),
        ],
        inputs_of(source, proto_data_files(proto, source.parent)),
    )
    profiles = profiles_for(proto, shapes)
    plugin_nodes = _plugin_nodes(proto)
    plugin_op.check_nodes(proto, source)
    wanted = parse_compute_capabilities(compute_capabilities)
    rt = load_runtime(runtime)
    for text in rt.notes:
        note(text)
    if rt.ahead_of_time and cache_path is not None:
        raise UsageError("--timing-cache: TensorRT-RTX has no timing cache")
    if not rt.ahead_of_time and wanted:
        raise UsageError(
            "--compute-capability is for TensorRT-RTX (--runtime tensorrt-rtx); TensorRT "
            "builds for the GPU it runs on"
        )
    targets = rtx_targets(rt, wanted) if rt.ahead_of_time else []
    plan = plan_precision(11 if rt.strongly_typed else rt.major, precision)
    trt = rt.trt
    logger = capturing_logger(trt, rt.name)
    if plugin is not None or plugin_nodes:
        load_plugin(trt, find_plugin_library(plugin))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if plan.convert_to == "float16":
            converted = Path(tmp) / "model.fp16.onnx"
            convert_to_fp16(source, converted)
            source = converted
        if rt.ahead_of_time and any(_unmarked(n) for n in proto.graph.node):
            source = _channels_last_copy(source, Path(tmp) / "channels-last")
        builder = trt.Builder(logger)
        flags = 0
        if plan.strongly_typed and not rt.ahead_of_time:  # TensorRT-RTX: always strongly typed
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise GnDeployError(f"{model}: {rt.name}'s ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # logs the layer formats
        for flag in plan.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        for flag in plan.cleared_flags:
            if hasattr(trt.BuilderFlag, flag):
                config.clear_flag(getattr(trt.BuilderFlag, flag))
        if targets:
            config.num_compute_capabilities = len(targets)
            for index, target in enumerate(targets):
                config.set_compute_capability(target, index)
        profile = builder.create_optimization_profile()
        for p in profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
        if not rt.ahead_of_time:
            cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
            config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
        config.progress_monitor = _progress_monitor(trt)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise GnDeployError(
                f"{model}: {rt.name} could not build the engine (see its log above)"
            )
        report = BuildReport(
            engine=str(out),
            runtime=rt.name,
            version=rt.version,
            compute_capabilities=wanted or (["local GPU"] if rt.ahead_of_time else []),
            precision=precision,
            inputs=[
                {"name": p.name, "min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
                for p in profiles
            ],
            layers=network.num_layers,
            engine_layers=engine_layers(logger.layers),
            plugin_layers=_plugin_layers(trt, network),
            plugin_formats=plugin_formats(logger.layers, plugin_nodes),
            engine_bytes=serialized.nbytes,
            seconds=round(time.perf_counter() - start, 3),
        )
        with Outputs() as outputs:
            outputs.stage_bytes(out, memoryview(serialized))
            if cache_path is not None:
                outputs.stage_bytes(cache_path, memoryview(config.get_timing_cache().serialize()))
            if report_file is not None:
                outputs.stage_text(report_file, json.dumps(asdict(report), indent=2) + "\n")
            outputs.commit()
    return report


@dataclass
class BuildReport:
    """What `gn-deploy build --report` writes."""

    engine: str
    runtime: str
    version: str
    compute_capabilities: list[str]
    precision: str
    inputs: list[dict[str, Any]]
    layers: int  # of the network the parser made
    engine_layers: int | None  # of the engine built (reformats included); None if not logged
    plugin_layers: int
    # per plugin layer: node, x and y formats chosen; None if the builder did not say
    plugin_formats: list[dict[str, str]] | None
    engine_bytes: int
    seconds: float

    def summary(self) -> str:
        """One line: the engine's layers and the formats its plugin layers run in."""
        if self.engine_layers is None:
            text = f"{self.layers} network layers"
        else:
            text = f"{self.engine_layers} engine layers"
        if self.plugin_layers:
            chosen = sorted({f["x"] for f in self.plugin_formats or []})
            text += f", {self.plugin_layers} of them gn-deploy's plugin"
            if chosen:
                text += f" (x and y in {' / '.join(chosen)})"
        return f"{text}, {self.engine_bytes} bytes, built in {self.seconds:.1f} s"


def _channels_last_copy(source: Path, folder: Path) -> Path:
    """``source`` with ``channels_last=1`` on every FusedGroupNorm node that does not set it.

    TensorRT-RTX building ahead of time takes the first format the plugin accepts (linear)
    and transposes to and from its channels-last convolutions around every plugin layer; the
    attribute makes the plugin accept channels-last only. The copy lies in ``folder`` with
    links to the source's external data files, which stay where they are.
    """
    proto = load_proto(source)
    for node in proto.graph.node:
        if _unmarked(node):
            node.attribute.append(onnx.helper.make_attribute("channels_last", 1))
    for data in proto_data_files(proto, source.parent):
        link = folder / data.relative_to(source.parent)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(data.resolve())
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / source.name
    onnx.save(proto, copy)
    return copy


def _unmarked(node: onnx.NodeProto) -> bool:
    """A FusedGroupNorm node that leaves channels_last to the builder."""
    return plugin_op.is_plugin_node(node) and all(a.name != "channels_last" for a in node.attribute)


def _plugin_nodes(proto: Any) -> list[str]:
    """Names of the FusedGroupNorm nodes of the model's graph."""
    return [n.name for n in proto.graph.node if plugin_op.is_plugin_node(n)]


def _plugin_layers(trt: Any, network: Any) -> int:
    """Layers the parser made from FusedGroupNorm nodes (plugin layers of the network)."""
    kinds = {
        getattr(trt.LayerType, k) for k in ("PLUGIN_V3", "PLUGIN_V2") if hasattr(trt.LayerType, k)
    }
    return sum(1 for i in range(network.num_layers) if network.get_layer(i).type in kinds)
