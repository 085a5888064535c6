"""Proving an export's dynamic axes: the exported model, run on ONNX Runtime at the example
shape and at another size on each dynamic axis, must match torch within the design tolerance.

torch.export specialises example dims of size 0 or 1 (and a trace may bake a size into a
Reshape): such an export loads fine and fails, or silently computes something else, at any
other size. An export that does not hold is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gn_deploy.errors import GnDeployError
from gn_deploy.reference import relative_l2, tolerance_for
from gn_deploy.specs import InputSpec

Axes = dict[str, dict[int, str]]


@dataclass(frozen=True)
class Trial:
    """One shape set to run, and the dynamic axis it moves (None: the example shapes)."""

    specs: list[InputSpec]
    axis: tuple[str, int, str] | None = None


def traced_specs(specs: Sequence[InputSpec], axes: Axes) -> list[InputSpec]:
    """The example shapes given to the exporter: 2 on a dynamic axis the user gave as 1, which
    torch.export would specialise."""
    traced = []
    for spec in specs:
        dynamic = axes.get(spec.name, {})
        shape = tuple(max(d, 2) if k in dynamic else d for k, d in enumerate(spec.shape))
        traced.append(replace(spec, shape=shape))
    return traced


def trials(specs: Sequence[InputSpec], axes: Axes) -> list[Trial]:
    """The example shapes, then each dynamic axis at a size the export was not traced at."""
    runs = [Trial(list(specs))]
    for name, dims in axes.items():
        for axis, label in dims.items():
            moved = [
                replace(s, shape=_with(s.shape, axis, max(s.shape[axis], 2) + 1))
                if s.name == name
                else s
                for s in specs
            ]
            runs.append(Trial(moved, (name, axis, label)))
    return runs


def _with(shape: tuple[int, ...], axis: int, size: int) -> tuple[int, ...]:
    return (*shape[:axis], size, *shape[axis + 1 :])


def _session(path: Path) -> Any | None:
    """An ONNX Runtime session of the export, or None where ORT's CPU has no kernel for it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types
        if "NOT_IMPLEMENTED" in str(exc):  # bf16 on the CPU: nothing to run it on here
            return None
        raise GnDeployError(f"{path.name}: ONNX Runtime cannot load the export: {exc}") from exc


def _leaves(out: Any) -> list[Any]:
    """A forward's output tensors in the order the exporters write them."""
    if isinstance(out, dict):
        return [leaf for value in out.values() for leaf in _leaves(value)]
    if isinstance(out, (tuple, list)):
        return [leaf for value in out for leaf in _leaves(value)]
    return [out]


def _torch_outputs(module: Any, tensors: list[Any]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(*tensors)
    return [
        o.detach().float().numpy() if o.dtype == torch.bfloat16 else o.numpy() for o in _leaves(out)
    ]


def _fault(trial: Trial, session: Any, module: Any, tensors: list[Any]) -> str | None:
    """What goes wrong running ``trial`` on ONNX Runtime against torch (None: it holds)."""
    feeds = {s.name: t.numpy() for s, t in zip(trial.specs, tensors, strict=True)}
    try:
        got = session.run(None, feeds)
    except Exception as exc:  # ORT raises its own exception types
        return f"ONNX Runtime fails: {str(exc).strip().splitlines()[0]}"
    want = _torch_outputs(module, tensors)
    for k, (a, e) in enumerate(zip(got, want, strict=False)):
        error = relative_l2(np.asarray(a, np.float64), np.asarray(e, np.float64))
        if np.shape(a) != np.shape(e) or not error <= tolerance_for(str(e.dtype)):
            return (
                f"output {k} differs from torch (shape {list(np.shape(a))} for "
                f"{list(np.shape(e))}, relative L2 {error:.1e})"
            )
    return None


def prove(path: Path, module: Any, specs: Sequence[InputSpec], axes: Axes, seed: int) -> None:
    """Raise GnDeployError naming the first dynamic axis at which the export at ``path`` does
    not compute what ``module`` does (or the example shapes, if even those fail)."""
    from gn_deploy.export import example_inputs

    if not axes or any(s.dtype == "bfloat16" for s in specs):  # numpy and ORT's CPU lack bf16
        return
    session = _session(path)
    if session is None:
        return
    for trial in trials(specs, axes):
        fault = _fault(trial, session, module, example_inputs(trial.specs, seed))
        if fault is None:
            continue
        if trial.axis is None:
            raise GnDeployError(
                f"{path.name}: the export does not hold at the example shapes: {fault}"
            )
        name, axis, label = trial.axis
        size = next(s for s in trial.specs if s.name == name).shape[axis]
        raise GnDeployError(
            f"--dynamic {name}:{axis}={label}: the export does not hold at size {size} "
            f"({fault}); the exporter fixed that axis: export with another example size on it, "
            "or without --dynamic for it"
        )
