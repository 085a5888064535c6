"""The FusedGroupNorm op contract shared by `fuse --target trt-plugin` and the TensorRT plugin.

docs/design.md, "The plugin op", is the specification; this module is its single Python spelling,
plus a numpy implementation for ONNX's reference evaluator.
"""

from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun

from gn_deploy.reference import group_norm_reference

OP_TYPE = "FusedGroupNorm"
DOMAIN = "gn_deploy"
DOMAIN_VERSION = 1
PLUGIN_NAMESPACE = "gn_deploy"
PLUGIN_VERSION = "1"


def fused_group_norm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    num_groups: int,
    epsilon: float,
    activation: int,
) -> np.ndarray:
    """FusedGroupNorm on numpy arrays: fp32 statistics, result in x's dtype."""
    y = group_norm_reference(x, num_groups, epsilon, gamma, beta, activation)
    return y.astype(x.dtype)


class FusedGroupNorm(OpRun):
    """`onnx.reference` implementation: pass ``new_ops=[FusedGroupNorm]`` to the evaluator."""

    op_domain = DOMAIN

    def _run(  # type: ignore[override]
        self,
        x: np.ndarray,
        gamma: np.ndarray,
        beta: np.ndarray,
        num_groups: int = 1,
        epsilon: float = 1e-5,
        activation: int = 0,
        channels_last: int = 0,
        plugin_namespace: str = PLUGIN_NAMESPACE,
        plugin_version: str = PLUGIN_VERSION,
    ) -> tuple[np.ndarray]:
        return (fused_group_norm(x, gamma, beta, num_groups, epsilon, activation),)
