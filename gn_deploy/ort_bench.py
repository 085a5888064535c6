"""`gn-deploy bench ort`: what each fuse target does for ONNX Runtime users.

The same model, unfused and fused with `--target onnx`, run by ONNX Runtime on the CPU with
the same inputs and session options (all graph optimizations on, 2 intra-op threads), timed in
one process. ONNX Runtime's CPU provider expands GroupNormalization-21 into its function body;
`--target trt-plugin` models run only in TensorRT (ONNX's reference evaluator for checks).
"""

from __future__ import annotations

import datetime
import platform
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

THREADS = 2


def _session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _median_ms(path: Path, feeds: dict[str, np.ndarray], repeat: int) -> float:
    from gn_deploy.bench import _timed

    session = _session(path)
    _, times = _timed(lambda: session.run(None, feeds), repeat)
    return statistics.median(times) * 1e3


def bench_ort(models: Sequence[str | Path], repeat: int) -> str:
    from gn_deploy.bench import _builtin_models
    from gn_deploy.fusion import fuse_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(m) for m in models] or _builtin_models(Path(tmp))
        for path in paths:
            fused = Path(tmp) / f"{path.stem}.fused.onnx"
            report = fuse_model(path, fused, target="onnx")
            feeds = _feeds(path)
            original = _median_ms(path, feeds, repeat)
            onnx_target = _median_ms(fused, feeds, repeat)
            rows.append(
                f"| {path.name} | {report.count('fused')} | {original:.3g} | {onnx_target:.3g} | "
                f"{onnx_target / original:.2f} |"
            )
    head = [
        f"command: `gn-deploy bench ort --repeat {repeat}`",
        f"date: {datetime.date.today().isoformat()}; machine: {platform.machine()}; "
        f"ONNX Runtime CPU, {THREADS} intra-op threads, all graph optimizations",
        "",
        "Median ms per inference of the same inputs, unfused and fused with `--target onnx`, "
        "in one process.",
        "",
        "| model | GN fused | unfused ms | `--target onnx` ms | fused / unfused |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


def _feeds(path: Path) -> dict[str, np.ndarray]:
    """Random inputs of the model's types; dynamic dims (the built-in models' batch) at 1."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        tensor = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        feeds[inp.name] = rng.standard_normal(dims).astype(dtype)
    return feeds
