"""ONNX Runtime: run a model (file or proto) on CPU, or on CUDA where onnxruntime-gpu has it."""

from __future__ import annotations

import os

import numpy as np
import onnx


def providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available]


def session(model: onnx.ModelProto | str | os.PathLike[str]):  # -> ort.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=providers())


def run_model(
    model: onnx.ModelProto | str | os.PathLike[str], feeds: dict[str, np.ndarray]
) -> list[np.ndarray]:
    return [np.asarray(o) for o in session(model).run(None, feeds)]
