"""The gate every written model passes: ONNX's full check, and a load in ONNX Runtime when all
of its ops are ONNX Runtime's or gn-deploy's FusedGroupNorm (through gn-deploy's op library) to
run. A model that fails is not written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import onnx

from gn_deploy import plugin_op
from gn_deploy.errors import GnDeployError
from gn_deploy.outputs import proto_data_files

# Domains whose ops ONNX Runtime implements, with gn-deploy's op library for our own.
ORT_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", plugin_op.DOMAIN}
# Loading a model in ONNX Runtime reads all of its weights: only below this size.
ORT_LOAD_MAX_BYTES = 1 << 30


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _size(staged: Path, proto: onnx.ModelProto) -> int:
    files = [staged, *proto_data_files(proto, staged.parent)]
    return sum(f.stat().st_size for f in files if f.is_file())


def checker_error(path: Path) -> str | None:
    """The first line of what ONNX's full check finds wrong with the model at ``path``."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # the checker raises several types (ValidationError, InferenceError)
        return first_line(exc)
    return None


def input_error(path: Path) -> str | None:
    """What makes an input model invalid; an op deprecated at the model's opset (ONNX's
    GroupNormalization-18, which gn-deploy replaces) is a reason to fuse, not an error."""
    error = checker_error(path)
    return None if error is not None and "is deprecated in domain_version" in error else error


def check_model_file(staged: Path, shown: Path, source: Path | None = None) -> None:
    """Raise GnDeployError naming ``shown`` when the model at ``staged`` is not valid.

    ``source``: the model it was made from, already known to be invalid itself; the error
    then says so: the fault was in the input, not in what gn-deploy did to it.
    """
    error = checker_error(staged)
    if error is not None:
        if source is not None:
            raise GnDeployError(
                f"{source}: not a valid ONNX model to begin with ({error}); nothing written"
            )
        raise GnDeployError(
            f"{shown}: not written: the result would be an invalid ONNX model ({error})"
        )
    proto = onnx.load(staged, load_external_data=False)
    domains = {node.domain for node in proto.graph.node}
    local = {function.domain for function in proto.functions}  # ORT runs model-local functions
    if not domains <= ORT_DOMAINS | local or _size(staged, proto) > ORT_LOAD_MAX_BYTES:
        return
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    if plugin_op.DOMAIN in domains and not _registered(options):
        return
    try:
        ort.InferenceSession(str(staged), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types
        if "NOT_IMPLEMENTED" in str(exc):  # an op or type ORT's CPU lacks (bf16): not invalid
            return
        raise GnDeployError(
            f"{shown}: not written: ONNX Runtime would not load the result ({first_line(exc)})"
        ) from exc


def _registered(options: Any) -> bool:
    """Register gn-deploy's op library; where it cannot be built (no compiler), say that the
    check stops at ONNX's checker and return False."""
    from gn_deploy import ort_library

    try:
        ort_library.register(options)
    except GnDeployError as exc:
        print(f"note: {exc}; checked with ONNX's checker only", file=sys.stderr)
        return False
    return True
