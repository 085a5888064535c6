"""Benchmarks. `fuse`: wall time of `gn-deploy fuse`; `kernels`: see kernel_bench.py."""

from __future__ import annotations

import datetime
import math
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gn_deploy.bench_common import export_builtin
from gn_deploy.bench_common import timed as _timed
from gn_deploy.modelio import load_proto
from gn_deploy.progress import Progress


def _builtin_models(workdir: Path, progress: Progress | None = None) -> list[Path]:
    """The SD-1.5-layout UNet (61 GroupNorms) through both torch exporters (two steps of
    ``progress``, or of their own)."""
    progress = progress or Progress(2)
    return [
        export_builtin(workdir, "sd15_unet", "1x4x32x32", exporter, opset, progress)
        for exporter, opset in (("torchscript", 17), ("dynamo", 18))
    ]


def _ort_optimizer(path: Path) -> tuple[int, str]:
    """The peer: ONNX Runtime's transformer optimizer for UNets; returns the GroupNorms made and
    what it printed (it prints, unexplained, when its symbolic shape inference fails)."""
    import contextlib
    import io
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.disable(logging.WARNING)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            model = optimize_model(
                str(path),
                model_type="unet",
                opt_level=0,
                optimization_options=FusionOptions("unet"),
            )
    finally:
        logging.disable(logging.NOTSET)
    return sum(1 for n in model.model.graph.node if n.op_type == "GroupNorm"), printed.getvalue()


def _peer_note(printed: str) -> str:
    """A footnote for the peer's row when its own shape inference failed on the model."""
    if "failed in shape inference" not in printed:
        return ""
    return (
        " (its symbolic shape inference failed on this model, "
        f"{printed.split('failed in shape inference', 1)[1].strip().splitlines()[0]}; "
        "it fuses without shapes)"
    )


def bench_fuse(models: Sequence[str | Path], repeat: int) -> str:
    from gn_deploy.fusion import fuse_model

    rows = []
    peer_repeat = max(1, repeat // 2)
    per_model = 2 * (repeat + 1) + peer_repeat + 1
    total = (len(models) or 2) * per_model + (0 if models else 2)
    with tempfile.TemporaryDirectory() as tmp, Progress(total) as progress:
        paths = [Path(m) for m in models] or _builtin_models(Path(tmp), progress)
        for path in paths:
            nodes = len(load_proto(path).graph.node)
            for target in ("onnx", "trt-plugin"):
                out = Path(tmp) / f"fused-{target}.onnx"
                report, runs = _timed(
                    lambda: fuse_model(path, out, target=target),  # noqa: B023
                    repeat,
                    progress,
                    f"{path.name}: fuse --target {target}",
                )
                rows.append(
                    f"| {path.name} | {nodes} | gn-deploy fuse --target {target} | "
                    f"{report.count('fused')} | {statistics.median(runs):.3f} | "
                    f"{min(runs):.3f} |"
                )
            (made, printed), runs = _timed(
                lambda: _ort_optimizer(path),  # noqa: B023
                peer_repeat,
                progress,
                f"{path.name}: the peer",
            )
            rows.append(
                f"| {path.name} | {nodes} | peer: onnxruntime.transformers optimizer (unet)"
                f"{_peer_note(printed)} | {made} | {statistics.median(runs):.3f} | "
                f"{min(runs):.3f} |"
            )
    head = [
        f"command: `gn-deploy bench fuse{' ' if models else ''}{' '.join(map(str, models))} "
        f"--repeat {repeat}`",
        f"date: {datetime.date.today().isoformat()}; machine: {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "",
        "Wall time of the whole `fuse` (load, shape inference, recognize, verify every site "
        "on ONNX Runtime, rewrite, save), median of the timed runs after one warm-up. The peer "
        "runs in the same process on the same file: ONNX Runtime's transformer optimizer with "
        "its UNet fusions (GroupNorm among others; it also fuses attention, so it does more "
        "work), counting the com.microsoft GroupNorm nodes it makes.",
        "",
        "| model | nodes | tool | GN fused | median s | min s |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


def bench_scaling(copies: Sequence[int] = (1, 2, 4), repeat: int = 3) -> str:
    """`fuse` time against node count: chains of SD-1.5-layout UNets (TorchScript export)."""
    from gn_deploy.export import export_model
    from gn_deploy.fusion import fuse_model
    from gn_deploy.models import sd15_unet_chain

    rows = []
    total = len(copies) * (1 + 2 * (repeat + 1))
    with tempfile.TemporaryDirectory() as tmp, Progress(total) as progress:
        for k in copies:
            src = Path(tmp) / f"chain{k}.onnx"
            progress.step(f"exporting {k} chained UNet(s)")
            export_model(sd15_unet_chain(k), ["x:1x4x32x32"], src, exporter="torchscript")
            nodes = len(load_proto(src).graph.node)
            for target in ("onnx", "trt-plugin"):
                out = Path(tmp) / f"chain{k}-{target}.onnx"
                report, runs = _timed(
                    lambda: fuse_model(src, out, target=target),  # noqa: B023
                    repeat,
                    progress,
                    f"{k} UNet(s): fuse --target {target}",
                )
                median = statistics.median(runs)
                rows.append(
                    f"| {k} | {nodes} | {report.count('fused')} | {target} | "
                    f"{median:.3f} | {1e6 * median / nodes:.0f} |"
                )
    head = [
        f"command: `gn-deploy bench scaling --repeat {repeat}`",
        f"date: {datetime.date.today().isoformat()}; machine: {platform.machine()}",
        "",
        "`fuse` on k SD-1.5-layout UNets in a row (TorchScript export, opset 17): linear "
        "growth shows as a constant time per node.",
        "",
        "| UNets | nodes | GN fused | target | median s | us per node |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


def _large_model(path: Path, gigabytes: float) -> tuple[int, int]:
    """A conv → GN → SiLU chain whose conv weights (external data) total ``gigabytes``.

    Returns (GN sites, weight bytes).
    """
    import numpy as np
    import onnx_ir as ir

    channels, blocks = 1024, max(1, math.ceil(gigabytes * 2**30 / (1024 * 1024 * 9 * 4)))
    x = ir.Value(
        name="x", shape=ir.Shape([1, channels, 8, 8]), type=ir.TensorType(ir.DataType.FLOAT)
    )
    nodes, inits, value = [], [], x
    gshape = ir.Value(name="gshape", const_value=ir.tensor(np.array([0, 32, -1], np.int64)))
    ones = ir.Value(name="ones", const_value=ir.tensor(np.ones(32, np.float32)))
    zeros = ir.Value(name="zeros", const_value=ir.tensor(np.zeros(32, np.float32)))
    inits += [gshape, ones, zeros]
    weight_bytes = 0
    for b in range(blocks):
        w = np.full((channels, channels, 3, 3), 1e-3 * (b + 1), np.float32)
        weight = ir.Value(name=f"w{b}", const_value=ir.tensor(w, name=f"w{b}"))
        weight_bytes += w.nbytes
        inits.append(weight)
        conv = ir.node("Conv", [value, weight], attributes={"pads": [1, 1, 1, 1]})
        grouped = ir.node("Reshape", [conv.outputs[0], gshape])
        norm = ir.node("InstanceNormalization", [grouped.outputs[0], ones, zeros])
        shape = ir.node("Shape", [conv.outputs[0]])
        back = ir.node("Reshape", [norm.outputs[0], shape.outputs[0]])
        nodes += [conv, grouped, norm, shape, back]
        value = back.outputs[0]
    graph = ir.Graph(
        [x], [value], nodes=nodes, initializers=inits, opset_imports={"": 17}, name="large"
    )
    ir.save(ir.Model(graph, ir_version=10), path, external_data=path.name + ".data")
    return blocks, weight_bytes


_CHILD = """
import resource, sys, time
from gn_deploy.fusion import fuse_model
start = time.perf_counter()
report = fuse_model(sys.argv[1], sys.argv[2], target=sys.argv[3])
print(report.count("fused"), time.perf_counter() - start,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def bench_memory(gigabytes: float) -> str:
    """Peak memory of `fuse` on a model over 2 GB, measured in a child process."""
    import subprocess

    rows = []
    with tempfile.TemporaryDirectory() as tmp, Progress(3) as progress:
        src = Path(tmp) / "large.onnx"
        progress.step(f"writing a model with {gigabytes:g} GB of weights")
        sites, weight_bytes = _large_model(src, gigabytes)
        for target in ("onnx", "trt-plugin"):
            progress.step(f"fuse --target {target} in a child process")
            out = Path(tmp) / f"large-{target}.onnx"
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, str(src), str(out), target],
                capture_output=True,
                text=True,
                check=True,
            )
            fused, seconds, peak = done.stdout.split()
            rows.append(
                f"| {target} | {sites} | {fused} | {weight_bytes / 2**30:.3g} | "
                f"{int(peak) / 2**30:.3g} | {int(peak) / weight_bytes:.2f} | "
                f"{float(seconds):.1f} |"
            )
            out.unlink()
            Path(str(out) + ".data").unlink(missing_ok=True)
    head = [
        f"command: `gn-deploy bench memory --gigabytes {gigabytes}`",
        f"date: {datetime.date.today().isoformat()}; machine: {platform.machine()}",
        "",
        "`fuse` in a fresh process on a conv → GN chain whose weights live in external data; "
        "peak = the process's maximum resident set (ru_maxrss), Python and libraries included.",
        "",
        "| target | GN sites | fused | weights GiB | peak GiB | peak / weights | s |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


def run(what: str, models: Sequence[str], repeat: int, gigabytes: float = 2.2) -> str:
    if what == "fuse":
        return bench_fuse(models, repeat)
    if what == "memory":
        return bench_memory(gigabytes)
    if what == "scaling":
        return bench_scaling(repeat=repeat)
    if what == "ort":
        from gn_deploy.ort_bench import bench_ort

        return bench_ort(models, repeat)
    if what == "kernels":
        from gn_deploy.kernel_bench import bench_kernels

        return bench_kernels(max(repeat, 60))
    raise ValueError(what)
