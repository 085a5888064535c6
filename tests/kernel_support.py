"""Skip markers for tests of the kernel library."""

from __future__ import annotations

import pytest

from gn_deploy import kernels

needs_library = pytest.mark.skipif(
    not kernels.library_path().is_file(),
    reason=f"GN kernel library not built at {kernels.library_path()}: needs nvcc (make kernels)",
)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_gpu = [
    pytest.mark.gpu,
    needs_library,
    pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU and torch with CUDA"),
]
