"""Benchmarks. `fuse`: wall time of `gn-deploy fuse` on real exporter output."""

from __future__ import annotations

import datetime
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import onnx


def _builtin_models(workdir: Path) -> list[Path]:
    """The SD-1.5-layout UNet (61 GroupNorms) through both torch exporters."""
    from gn_deploy.export import export_model

    paths = []
    for exporter, opset in (("torchscript", 17), ("dynamo", 18)):
        path = workdir / f"sd15_unet_{exporter}_op{opset}.onnx"
        print(f"exporting the SD-1.5-layout UNet with {exporter} ...", file=sys.stderr)
        export_model(
            "gn_deploy.models:sd15_unet",
            ["x:1x4x32x32"],
            path,
            dynamic=["x:0=batch"],
            opset=opset,
            exporter=exporter,
        )
        paths.append(path)
    return paths


def bench_fuse(models: Sequence[str | Path], repeat: int) -> str:
    from gn_deploy.fusion import fuse_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(m) for m in models] or _builtin_models(Path(tmp))
        for path in paths:
            nodes = len(onnx.load(path, load_external_data=False).graph.node)
            for target in ("onnx", "trt-plugin"):
                out = Path(tmp) / f"fused-{target}.onnx"
                times = []
                for _ in range(repeat + 1):  # the first run warms imports and caches
                    start = time.perf_counter()
                    report = fuse_model(path, out, target=target)
                    times.append(time.perf_counter() - start)
                runs = times[1:]
                rows.append(
                    f"| {path.name} | {nodes} | {target} | {report.count('fused')} | "
                    f"{report.count('refused')} | {statistics.median(runs):.3f} | "
                    f"{min(runs):.3f} |"
                )
    head = [
        f"command: `gn-deploy bench fuse{' ' if models else ''}{' '.join(map(str, models))} "
        f"--repeat {repeat}`",
        f"date: {datetime.date.today().isoformat()}; machine: {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "",
        "Wall time of the whole `fuse` (load, shape inference, recognize, verify every site "
        "on ONNX Runtime, rewrite, save), median of the timed runs after one warm-up.",
        "",
        "| model | nodes | target | fused | refused | median s | min s |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


def run(what: str, models: Sequence[str], repeat: int) -> str:
    if what == "fuse":
        return bench_fuse(models, repeat)
    raise ValueError(what)
