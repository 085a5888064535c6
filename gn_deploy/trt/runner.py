"""Run a TensorRT engine (used by `gn-deploy validate --engine`).

Device memory comes from torch's CUDA tensors, or from cuda-python where torch is absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gn_deploy.errors import GnDeployError
from gn_deploy.trt.plugin import find_plugin_library, load_plugin
from gn_deploy.trt.runtimes import Runtime, gpu_compute_capability, load_runtime, rtx_capabilities


class DeviceMemory(Protocol):
    """Device buffers and a stream: what running an engine needs from a CUDA library."""

    def upload(self, array: np.ndarray) -> int: ...
    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> int: ...
    def download(self, pointer: int) -> np.ndarray: ...
    def stream(self) -> int: ...
    def synchronize(self) -> None: ...


class TorchMemory:
    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.tensors: dict[int, Any] = {}

    def _keep(self, tensor: Any) -> int:
        self.tensors[tensor.data_ptr()] = tensor
        return int(tensor.data_ptr())

    def upload(self, array: np.ndarray) -> int:
        return self._keep(self.torch.from_numpy(np.ascontiguousarray(array)).cuda())

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> int:
        like = self.torch.from_numpy(np.empty(0, dtype))
        return self._keep(self.torch.empty(shape, dtype=like.dtype, device="cuda"))

    def download(self, pointer: int) -> np.ndarray:
        return self.tensors[pointer].cpu().numpy()

    def stream(self) -> int:
        return int(self.torch.cuda.current_stream().cuda_stream)

    def synchronize(self) -> None:
        self.torch.cuda.current_stream().synchronize()


class CudaPythonMemory:
    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # type: ignore[no-redef]
            except ImportError as exc:
                raise GnDeployError(
                    "running an engine needs torch with CUDA or cuda-python "
                    "(pip install 'gn-deploy[torch]' or cuda-python)"
                ) from exc
        self.cudart = cudart
        self.buffers: dict[int, tuple[tuple[int, ...], np.dtype]] = {}
        self._stream = self._check(cudart.cudaStreamCreate())

    def _check(self, result: tuple) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.cudart.cudaError_t.cudaSuccess:
            raise GnDeployError(f"CUDA call failed: {err}")
        return values[0] if values else None

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> int:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        pointer = int(self._check(self.cudart.cudaMalloc(nbytes)))
        self.buffers[pointer] = (shape, np.dtype(dtype))
        return pointer

    def upload(self, array: np.ndarray) -> int:
        host = np.ascontiguousarray(array)
        pointer = self.allocate(host.shape, host.dtype)
        self._check(
            self.cudart.cudaMemcpy(
                pointer,
                host.ctypes.data,
                host.nbytes,
                self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
            )
        )
        return pointer

    def download(self, pointer: int) -> np.ndarray:
        shape, dtype = self.buffers[pointer]
        host = np.empty(shape, dtype)
        self._check(
            self.cudart.cudaMemcpy(
                host.ctypes.data,
                pointer,
                host.nbytes,
                self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            )
        )
        return host

    def stream(self) -> int:
        return int(self._stream)

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self._stream))

    def __del__(self) -> None:
        for pointer in self.buffers:
            self.cudart.cudaFree(pointer)


def device_memory() -> DeviceMemory:
    """torch's CUDA memory where torch sees a GPU, else cuda-python's (a CPU build of torch,
    as `make test` installs, next to a GPU)."""
    try:
        import torch
    except ImportError:
        return CudaPythonMemory()
    if torch.cuda.is_available():
        return TorchMemory()
    try:
        return CudaPythonMemory()
    except GnDeployError as exc:
        raise GnDeployError(
            f"running an engine needs torch with CUDA or cuda-python: torch {torch.__version__} "
            "sees no CUDA device and cuda-python is not installed (pip install cuda-python)"
        ) from exc


def _why_not(tried: list[Runtime]) -> str:
    """Why no installed runtime read an engine: what each runs on, against this GPU."""
    names = ", ".join(f"{rt.name} {rt.version}" for rt in tried)
    gpu = gpu_compute_capability()
    text = (
        f"no installed runtime could deserialize it (tried {names}): it was built for "
        "another GPU or runtime version, or it is not an engine ("
        + (f"this GPU: compute capability {gpu}" if gpu else "no GPU here")
    )
    rtx = next((rt for rt in tried if rt.ahead_of_time), None)
    if rtx is not None:
        text += f"; TensorRT-RTX {rtx.version} runs engines on {rtx_capabilities(rtx)}"
    return text + ")"


class EngineRunner:
    """Deserialize an engine (the plugin library loaded first) and run it on numpy feeds."""

    def __init__(
        self, engine: str | os.PathLike[str], plugin: str | os.PathLike[str] | None = None
    ):
        self.path = Path(engine)
        if not self.path.is_file():
            raise GnDeployError(f"{self.path}: no such engine file")
        self.runtime, self.engine = self._deserialize(plugin)
        self.trt = self.runtime.trt
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]

    def _deserialize(self, plugin: str | os.PathLike[str] | None) -> tuple[Runtime, Any]:
        """The engine, by the first installed runtime that reads it (TensorRT, TensorRT-RTX),
        with the plugin library loaded where one is given or found; and that runtime."""
        data = self.path.read_bytes()
        tried: list[Runtime] = []
        for name in ("tensorrt", "tensorrt-rtx"):
            try:
                rt = load_runtime(name)
            except GnDeployError:
                continue
            trt = rt.trt
            try:
                library = find_plugin_library(plugin)
            except GnDeployError:
                if plugin is not None:
                    raise
                library = None
            if library is not None:
                load_plugin(trt, library)
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            engine = runtime.deserialize_cuda_engine(data)
            if engine is not None:
                self._runtime = runtime  # the engine lives as long as its runtime
                return rt, engine
            tried.append(rt)
        if not tried:
            raise GnDeployError(f"{self.path}: neither TensorRT nor TensorRT-RTX is installed")
        raise GnDeployError(f"{self.path}: {_why_not(tried)}")

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise GnDeployError(f"{self.path}: no input given for {missing}")
        memory = device_memory()
        for name in self.inputs:
            array = np.ascontiguousarray(feeds[name]).astype(self._dtype(name))
            self.context.set_input_shape(name, array.shape)
            self.context.set_tensor_address(name, memory.upload(array))
        pointers = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            pointers.append(memory.allocate(shape, self._dtype(name)))
            self.context.set_tensor_address(name, pointers[-1])
        if not self.context.execute_async_v3(memory.stream()):
            raise GnDeployError(f"{self.path}: TensorRT failed to run the engine")
        memory.synchronize()
        return [memory.download(p) for p in pointers]
