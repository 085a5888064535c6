"""torch → ONNX with either of torch's exporters (dynamo or TorchScript)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gn_deploy.dynamic_axes import prove, traced_specs
from gn_deploy.errors import GnDeployError, UsageError
from gn_deploy.outputs import Outputs, guard
from gn_deploy.specs import InputSpec, load_factory, parse_dynamic, source_files
from gn_deploy.validity import check_model_file

EXPORTERS = ("dynamo", "torchscript")
DEFAULT_OPSET = {"dynamo": 18, "torchscript": 17}


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _summary(exc: Exception) -> str:
    """One line of an exporter's (often long, coloured) failure text: its first real line."""
    lines = [_ANSI.sub("", ln).strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not set(ln) <= set("-=*#~ ")]
    return lines[0] if lines else type(exc).__name__


def _cause(exc: BaseException) -> str:
    """One line of what made an export fail: the innermost exception in the chain that says
    something (the dynamo exporter wraps the real cause in a generic "Failed to export")."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    telling = [e for e in chain if str(e).strip()]
    return _summary(telling[-1] if telling else exc)


# ONNX allows bfloat16 in Conv (and the other ops of its 2024 type update) from this opset on.
BF16_OPSET = 22


def _checked(staged: Path, out: Path, opset: int) -> None:
    """The validity gate, with the fix named where a bfloat16 model needs a newer opset."""
    try:
        check_model_file(staged, out)
    except GnDeployError as exc:
        if "tensor(bfloat16)" not in str(exc) or opset >= BF16_OPSET:
            raise
        raise GnDeployError(
            f"{exc}; ONNX allows bfloat16 there from opset {BF16_OPSET}: export with "
            f"--opset {BF16_OPSET}"
        ) from exc


def require_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise GnDeployError(
            "this needs PyTorch: pip install 'gn-deploy[torch]' (or torch itself)"
        ) from exc
    return torch


# Random generators are seeded with this while a factory runs: export and validate call it
# once each, and random weights must come out the same both times.
FACTORY_SEED = 0


@contextlib.contextmanager
def _seeded(torch: Any) -> Iterator[None]:
    """torch's, numpy's and Python's global generators seeded, their states restored after."""
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(FACTORY_SEED)
        np.random.seed(FACTORY_SEED)
        torch.manual_seed(FACTORY_SEED)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def load_torch_model(model: Any) -> Any:
    """An ``nn.Module`` in eval mode from a module, or from a ``module:factory`` reference
    (called under :data:`FACTORY_SEED`, so that random weights are the same on every call)."""
    torch = require_torch()
    if isinstance(model, str):
        factory = load_factory(model)
        try:
            with _seeded(torch):
                model = factory()
        except SystemExit as exc:  # user code that exits
            raise GnDeployError(
                f"--model {model!r}: the factory called sys.exit({exc.code!r})"
            ) from exc
        except Exception as exc:  # user code
            raise GnDeployError(f"--model {model!r}: the factory raised {exc!r}") from exc
    if not isinstance(model, torch.nn.Module):
        raise GnDeployError(f"--model: expected a torch.nn.Module, got {type(model).__name__}")
    return model.eval()


def _model_sources(model: Any, module: Any) -> list[tuple[Path, str]]:
    """What the model was read from, for the output guard: its source and its package's files."""
    files = source_files(model if isinstance(model, str) else None, module)
    return [(f, "a source file of the --model") for f in files]


def example_inputs(specs: Sequence[InputSpec], seed: int = 0) -> list[Any]:
    """Random tensors (standard normal for floats) matching ``specs``."""
    torch = require_torch()
    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for spec in specs:
        dtype = getattr(torch, spec.dtype)
        if dtype.is_floating_point:
            t = torch.randn(spec.shape, generator=gen).to(dtype)
        else:
            t = torch.randint(0, 4, spec.shape, generator=gen).to(dtype)
        tensors.append(t)
    return tensors


# Lists every optional op library it did not find (torchvision's nms, roi_align, ...) on each
# dynamo export: four lines that say nothing about the model being exported.
REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"


# torch logs what fails inside torch.export (``E1202 ... fake_tensor.py ...`` and its traceback)
# at error level, then raises: the raised error is what gn-deploy reports, in one line.
TORCH_LOGGER = "torch"


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Nothing below critical from the logger ``name`` while the block runs."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def export_model(
    model: Any,
    inputs: Sequence[InputSpec | str],
    output: str | os.PathLike[str],
    dynamic: Sequence[str] | dict[str, dict[int, str]] = (),
    opset: int | None = None,
    exporter: str = "dynamo",
    seed: int = 0,
) -> Path:
    """Export ``model`` (an ``nn.Module`` or ``module:factory``) to ONNX at ``output``.

    ``inputs`` name each forward argument with a concrete example shape; ``dynamic`` marks axes
    as dynamic (``"x:0=batch"`` strings or ``{"x": {0: "batch"}}``): a dynamic axis given as 1
    is traced at 2, and the export is proved on ONNX Runtime against torch at the example shapes
    and at another size on each dynamic axis before it is written (GnDeployError naming the axis
    otherwise). The file is written atomically; the dynamo exporter may put weights in
    ``<output>.data`` beside it.
    """
    torch = require_torch()
    if exporter not in EXPORTERS:
        raise UsageError(f"--exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    specs = [s if isinstance(s, InputSpec) else InputSpec.parse(s) for s in inputs]
    if not specs:
        raise UsageError("--input: at least one input is needed, e.g. --input x:1x3x64x64")
    axes = dict(dynamic) if isinstance(dynamic, dict) else dict(parse_dynamic(d) for d in dynamic)
    names = [s.name for s in specs]
    for name, dims in axes.items():
        if name not in names:
            raise UsageError(f"--dynamic {name!r}: no --input of that name ({', '.join(names)})")
        rank = len(specs[names.index(name)].shape)
        for axis in dims:
            if axis >= rank:
                raise UsageError(
                    f"--dynamic {name}:{axis}=...: input {name!r} has {rank} axes (0 to {rank - 1})"
                )
    out = Path(output)
    guard([(out, "-o")], [])
    module = load_torch_model(model)
    guard([(out, "-o")], _model_sources(model, module))
    opset = opset or DEFAULT_OPSET[exporter]
    args = tuple(example_inputs(traced_specs(specs, axes), seed))
    with Outputs() as outputs:
        staging = outputs.stage_folder(out)
        try:
            with warnings.catch_warnings(), _quiet(REGISTRY_LOGGER), _quiet(TORCH_LOGGER):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    args,
                    os.fspath(staging / out.name),
                    input_names=names,
                    opset_version=opset,
                    dynamic_axes=axes or None,
                    dynamo=exporter == "dynamo",
                    verbose=False,
                )
        except Exception as exc:  # exporter failures come in many types
            raise GnDeployError(f"{exporter} export of the model failed: {_cause(exc)}") from exc
        # the weights file (dynamo) first, the model last
        for produced in sorted(staging.iterdir(), key=lambda p: p.name == out.name):
            outputs.add(produced, out.parent / produced.name)
        outputs.replaces_model(out)
        _checked(staging / out.name, out, opset)
        prove(staging / out.name, module, specs, axes, seed)
        outputs.commit()
    return out
