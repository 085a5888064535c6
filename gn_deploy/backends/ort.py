"""ONNX Runtime: run a model (file or proto) on CPU, or on CUDA where onnxruntime-gpu has it.

A model with gn_deploy.FusedGroupNorm ops runs with gn-deploy's custom-op library registered
(`gn_deploy/ort_library.py`, CPU execution provider)."""

from __future__ import annotations

import os

import numpy as np
import onnx

from gn_deploy import plugin_op


def providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available]


def uses_fused_op(model: onnx.ModelProto | str | os.PathLike[str]) -> bool:
    """Whether the model imports gn_deploy's op domain (its FusedGroupNorm ops)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(model, load_external_data=False)
    return any(o.domain == plugin_op.DOMAIN for o in model.opset_import)


def session(model: onnx.ModelProto | str | os.PathLike[str], threads: int = 0):
    """An InferenceSession; ``threads=1`` for tiny models run once (one thread, no pool whose
    spinning steals cores, no graph optimization)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Models run once: optimizing their graph would cost more than it saves.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if uses_fused_op(model):
        from gn_deploy import ort_library

        ort_library.register(options)
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=providers())


def run_model(
    model: onnx.ModelProto | str | os.PathLike[str], feeds: dict[str, np.ndarray], threads: int = 0
) -> list[np.ndarray]:
    return [np.asarray(o) for o in session(model, threads).run(None, feeds)]


def run_small_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a model of a few small ops (the verifier's) on one thread.

    Where ONNX Runtime cannot load it (no CPU kernel: bf16 GN ops, say; FusedGroupNorm where
    gn-deploy's op library cannot be built), ONNX's reference evaluator runs it; when that fails
    too, its error is the one raised.
    """
    try:
        return run_model(model, feeds, threads=1)
    except Exception:  # ORT's errors have many types, or no op library (no compiler): fall back
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model, new_ops=[plugin_op.FusedGroupNorm])
        return [np.asarray(o) for o in evaluator.run(None, feeds)]
