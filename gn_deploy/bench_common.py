"""What the benchmarks share: timing, and the built-in models exported into a folder."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def timed(run: Callable[[], T], repeat: int) -> tuple[T, list[float]]:
    """The last result and the wall times of ``repeat`` runs after one warm-up run."""
    times = []
    result = run()
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, times


def export_builtin(
    workdir: Path, factory: str, shape: str, exporter: str = "torchscript", opset: int = 17
) -> Path:
    """Export ``gn_deploy.models:<factory>`` with a dynamic batch into ``workdir``."""
    from gn_deploy.export import export_model

    path = workdir / f"{factory}_{exporter}_op{opset}.onnx"
    print(f"exporting {factory} with {exporter} ...", file=sys.stderr)
    export_model(
        f"gn_deploy.models:{factory}",
        [f"x:{shape}"],
        path,
        dynamic=["x:0=batch"],
        opset=opset,
        exporter=exporter,
    )
    return path
