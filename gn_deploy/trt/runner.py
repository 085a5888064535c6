"""Run a TensorRT engine on torch CUDA tensors (used by `gn-deploy validate --engine`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from gn_deploy.errors import GnDeployError
from gn_deploy.trt.build import require_tensorrt
from gn_deploy.trt.plugin import find_plugin_library, load_plugin


def _require_cuda_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise GnDeployError("running an engine needs torch with CUDA (gn-deploy[torch])") from exc
    if not torch.cuda.is_available():
        raise GnDeployError("running an engine needs an NVIDIA GPU (torch sees no CUDA device)")
    return torch


class EngineRunner:
    """Deserialize an engine (the plugin library loaded first) and run it on numpy feeds."""

    def __init__(
        self, engine: str | os.PathLike[str], plugin: str | os.PathLike[str] | None = None
    ):
        self.path = Path(engine)
        if not self.path.is_file():
            raise GnDeployError(f"{self.path}: no such engine file")
        self.trt = require_tensorrt()
        self.torch = _require_cuda_torch()
        load_plugin(self.trt, find_plugin_library(plugin))
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        runtime = self.trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise GnDeployError(f"{self.path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]

    def _torch_dtype(self, name: str) -> Any:
        dtype = self.engine.get_tensor_dtype(name)
        return self.torch.from_numpy(np.empty(0, self.trt.nptype(dtype))).dtype

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise GnDeployError(f"{self.path}: no input given for {missing}")
        keep = []
        for name in self.inputs:
            tensor = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
            tensor = tensor.to(self._torch_dtype(name))
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
            keep.append(tensor)
        results = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            results.append(out)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise GnDeployError(f"{self.path}: TensorRT failed to run the engine")
        stream.synchronize()
        return [
            r.float().cpu().numpy() if r.dtype == torch.bfloat16 else r.cpu().numpy()
            for r in results
        ]
