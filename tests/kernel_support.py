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

# (N, C, spatial dims, G) for the registers path: 16 channels per group (whole 16-byte vectors
# in both layouts and every dtype), groups from 64 to 4096 positions so that on an H200 every
# vectors-per-thread variant (1, 2, 4, 8) and both block counts per group (1 where N*G >= 132
# SMs, else a 2-block cluster) run (test_kernels_cpu.py checks that coverage).
REGISTER_PATH_SHAPES = [
    (2, 64, (8, 8), 4),
    (2, 64, (20, 20), 4),
    (2, 64, (24, 24), 4),
    (2, 64, (40, 40), 4),
    (2, 64, (64, 64), 4),
    (9, 256, (8, 8), 16),
]
