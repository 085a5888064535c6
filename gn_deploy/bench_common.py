"""What the benchmarks share: timing, and the built-in models exported into a folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gn_deploy.progress import Progress

T = TypeVar("T")


def timed(
    run: Callable[[], T], repeat: int, progress: Progress | None = None, label: str = ""
) -> tuple[T, list[float]]:
    """The last result and the wall times of ``repeat`` runs after one warm-up run (each run a
    step of ``progress``, named after ``label``)."""
    times = []
    if progress is not None:
        progress.step(f"{label}: warm-up")
    result = run()
    for k in range(repeat):
        if progress is not None:
            progress.step(f"{label}: run {k + 1}/{repeat}")
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, times


def export_builtin(
    workdir: Path,
    factory: str,
    shape: str,
    exporter: str = "torchscript",
    opset: int = 17,
    progress: Progress | None = None,
) -> Path:
    """Export ``gn_deploy.models:<factory>`` with a dynamic batch into ``workdir`` (a step of
    ``progress``, or of its own)."""
    from gn_deploy.export import export_model

    path = workdir / f"{factory}_{exporter}_op{opset}.onnx"
    (progress or Progress(1)).step(f"exporting {factory} with {exporter}")
    export_model(
        f"gn_deploy.models:{factory}",
        [f"x:{shape}"],
        path,
        dynamic=["x:0=batch"],
        opset=opset,
        exporter=exporter,
    )
    return path
