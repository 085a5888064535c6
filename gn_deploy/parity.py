"""Parity: run the same inputs through torch, ONNX Runtime and TensorRT."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from gn_deploy import plugin_op
from gn_deploy.errors import GnDeployError, UsageError
from gn_deploy.modelio import load_proto, shown_dims, value_dims
from gn_deploy.reference import relative_l2, tolerance_for
from gn_deploy.specs import InputSpec
from gn_deploy.validity import first_line


@dataclass
class Comparison:
    backend: str
    output: str
    max_abs: float
    max_rel: float
    rel_l2: float
    cosine: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.rel_l2 <= self.tolerance


@dataclass
class ValidationReport:
    reference: str
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.comparisons) and all(c.ok for c in self.comparisons)

    def table(self) -> str:
        head = ("backend", "output", "max abs", "max rel", "rel L2", "cosine", "tol", "result")
        rows = [head] + [
            (
                c.backend,
                c.output,
                f"{c.max_abs:.2e}",
                f"{c.max_rel:.2e}",
                f"{c.rel_l2:.2e}",
                f"{c.cosine:.6f}",
                f"{c.tolerance:.0e}",
                "ok" if c.ok else "MISMATCH",
            )
            for c in self.comparisons
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        return f"reference: {self.reference}\n" + "\n".join(lines)


def compare(
    backend: str,
    output: str,
    actual: np.ndarray,
    expected: np.ndarray,
    tolerance: float | None = None,
) -> Comparison:
    """Per-output metrics of ``actual`` against ``expected`` (the design's tolerance by dtype)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise GnDeployError(f"{backend}: output {output!r} has shape {a.shape}, expected {e.shape}")
    diff = np.abs(a - e)
    denom = np.linalg.norm(a) * np.linalg.norm(e)
    return Comparison(
        backend=backend,
        output=output,
        max_abs=float(diff.max(initial=0.0)),
        max_rel=float((diff / (np.abs(e) + 1e-6)).max(initial=0.0)),
        rel_l2=relative_l2(a, e),
        cosine=float(np.sum(a * e) / denom) if denom > 0 else 1.0,
        tolerance=tolerance if tolerance is not None else tolerance_for(str(expected.dtype)),
    )


def make_inputs(
    specs: Sequence[InputSpec],
    inputs_file: str | os.PathLike[str] | None,
    onnx_files: Sequence[str | os.PathLike[str]],
    seed: int,
) -> dict[str, np.ndarray]:
    """Feeds from ``--inputs file.npz``, else random ones from ``--input`` specs or the model."""
    if inputs_file is not None:
        path = Path(inputs_file)
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise UsageError(f"--inputs {path}: cannot read it as .npz ({exc})") from exc
    if not specs:
        if not onnx_files:
            raise UsageError("--input: give input shapes, e.g. --input x:1x4x32x32")
        specs = _specs_from_onnx(onnx_files[0])
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        if s.dtype == "bfloat16":
            raise UsageError(f"--input {s.name}: bfloat16 inputs are not supported by validate")
        arr = rng.standard_normal(s.shape) if "float" in s.dtype else rng.integers(0, 4, s.shape)
        feeds[s.name] = arr.astype(s.dtype)
    return feeds


def _graph_inputs(path: str | os.PathLike[str]) -> list[onnx.ValueInfoProto]:
    model = load_proto(path)
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _dtype(value: onnx.ValueInfoProto) -> str:
    return str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))


def _feed_error(value: onnx.ValueInfoProto, feed: np.ndarray) -> str | None:
    """How ``feed`` does not fit the model input ``value`` (dtype, rank, static sizes)."""
    if not value.type.HasField("tensor_type"):
        return None
    given = "x".join(map(str, feed.shape))
    if _dtype(value) != str(feed.dtype):
        return f"the model's input is {_dtype(value)}, given {feed.dtype}"
    dims = value_dims(value)
    if value.type.tensor_type.HasField("shape") and len(dims) != feed.ndim:
        return f"the model's input has {len(dims)} axes, given {feed.ndim} ({given})"
    for axis, (want, got) in enumerate(zip(dims, feed.shape, strict=False)):
        if isinstance(want, int) and want != got:
            return f"axis {axis} is {want} in the model, given {got} ({given})"
    return None


def _check_feeds(feeds: dict[str, np.ndarray], path: str | os.PathLike[str], option: str) -> None:
    """Every model input is fed, every feed is a model input (names as the model has them), and
    each feed has the input's dtype, rank and static sizes."""
    wanted = {value.name: value for value in _graph_inputs(path)}
    unknown = [name for name in feeds if name not in wanted]
    if unknown:
        raise UsageError(
            f"{option} {unknown[0]}: {path} has no input of that name (its inputs: "
            f"{', '.join(wanted)})"
        )
    missing = [name for name in wanted if name not in feeds]
    if missing:
        raise UsageError(f"{option}: {path} needs input {missing[0]!r} too")
    for name, value in wanted.items():
        error = _feed_error(value, feeds[name])
        if error is not None:
            raise UsageError(f"{option} {name}: does not fit {path}: {error}")


def _specs_from_onnx(path: str | os.PathLike[str]) -> list[InputSpec]:
    specs = []
    for value in _graph_inputs(path):
        dims = value_dims(value)
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise UsageError(
                f"{path}: input {value.name!r} has dynamic dimensions "
                f"{shown_dims(dims)}; give its shape with --input {value.name}:1x..."
            )
        specs.append(InputSpec(value.name, tuple(int(d) for d in dims), _dtype(value)))
    return specs


def run_onnx(
    path: str | os.PathLike[str], feeds: dict[str, np.ndarray]
) -> tuple[str, list[np.ndarray]]:
    """Run on ONNX Runtime (FusedGroupNorm ops through gn-deploy's op library)."""
    from gn_deploy.backends.ort import run_model
    from gn_deploy.modelio import load_model

    load_model(path)  # clear errors for missing / corrupt files
    model = onnx.load(path, load_external_data=False)
    names = [i.name for i in model.graph.input]
    own = {k: v for k, v in feeds.items() if k in names}
    plugin_op.check_nodes(model, path)
    try:
        return "onnxruntime", run_model(path, own)
    except GnDeployError:
        raise
    except Exception as exc:  # ORT raises its own exception types
        raise GnDeployError(f"{path}: ONNX Runtime failed: {first_line(exc)}") from exc


def run_torch(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from gn_deploy.export import load_torch_model, require_torch

    torch = require_torch()
    module = load_torch_model(model)
    with torch.no_grad():
        out = module(*[torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [o.detach().float().numpy() if o.dtype == torch.bfloat16 else o.numpy() for o in outs]


def validate(
    model: Any = None,
    onnx_files: Sequence[str | os.PathLike[str]] = (),
    inputs: Sequence[InputSpec | str] = (),
    inputs_file: str | os.PathLike[str] | None = None,
    seed: int = 0,
    tolerance: float | None = None,
    engines: Sequence[str | os.PathLike[str]] = (),
    plugin: str | os.PathLike[str] | None = None,
) -> ValidationReport:
    """Compare ONNX files and TensorRT engines with the first of them (or the torch model)."""
    if (model is not None) + len(onnx_files) + len(engines) < 2:
        raise UsageError("validate needs at least two of: --model, ONNX files, --engine files")
    specs = [s if isinstance(s, InputSpec) else InputSpec.parse(s) for s in inputs]
    feeds = make_inputs(specs, inputs_file, onnx_files, seed)
    for path in onnx_files:
        _check_feeds(feeds, path, "--inputs" if inputs_file is not None else "--input")
    runs: list[tuple[str, list[np.ndarray]]] = []
    if model is not None:
        runs.append(("torch", run_torch(model, feeds)))
    for path in onnx_files:
        backend, outs = run_onnx(path, feeds)
        runs.append((f"{backend}:{Path(path).name}", outs))
    for path in engines:
        from gn_deploy.trt.runner import EngineRunner
        from gn_deploy.trt.runtimes import has_gpu

        if not Path(path).is_file():
            raise UsageError(f"--engine {path}: no such file")
        if not has_gpu():
            raise GnDeployError(
                f"--engine {path}: cannot run here: no NVIDIA GPU on this machine (an engine "
                "runs only on a GPU it was built for; compare it on such a machine)"
            )
        runner = EngineRunner(path, plugin)
        runs.append((f"{runner.runtime.name}:{Path(path).name}", runner.run(feeds)))
    (ref_name, ref_outs), rest = runs[0], runs[1:]
    report = ValidationReport(reference=ref_name)
    for name, outs in rest:
        if len(outs) != len(ref_outs):
            raise GnDeployError(f"{name}: {len(outs)} outputs, the reference has {len(ref_outs)}")
        for k, (a, e) in enumerate(zip(outs, ref_outs, strict=True)):
            report.comparisons.append(compare(name, f"output{k}", a, e, tolerance))
    return report
