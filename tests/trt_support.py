"""Skip markers for tests that need TensorRT (lean runtime, or the builder and a GPU)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.kernel_support import cuda_available

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_LIBRARY = Path(
    os.environ.get("GN_DEPLOY_TRT_PLUGIN", ROOT / "build" / "groupnorm-trt" / "libgn_trt_plugin.so")
)
INTERFACE_TEST = PLUGIN_LIBRARY.parent / "plugin_interface_test"

needs_lean_runtime = [
    pytest.mark.skipif(
        importlib.util.find_spec("tensorrt_lean_bindings") is None,
        reason="needs the TensorRT lean runtime: pip install tensorrt-lean-cu13-libs "
        "tensorrt-lean-cu13-bindings (make test-trt-lean does it)",
    ),
    pytest.mark.skipif(
        not PLUGIN_LIBRARY.is_file(),
        reason=f"needs the plugin library built against TensorRT headers at {PLUGIN_LIBRARY}: "
        "make plugin TENSORRT_INCLUDE_DIR=/path/to/TensorRT/include",
    ),
]

needs_builder = [
    pytest.mark.trt,
    pytest.mark.skipif(
        importlib.util.find_spec("tensorrt") is None,
        reason="needs TensorRT's builder (the tensorrt package)",
    ),
    pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU and torch with CUDA"),
    pytest.mark.skipif(
        not PLUGIN_LIBRARY.is_file(),
        reason=f"needs the plugin library at {PLUGIN_LIBRARY} (make plugin)",
    ),
]
