"""The FusedGroupNorm op contract shared by `fuse --target trt-plugin` and the TensorRT plugin.

docs/design.md, "The plugin op", is the specification; this module is its single Python spelling,
plus a numpy implementation for ONNX's reference evaluator.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx.reference.op_run import OpRun

from gn_deploy.errors import GnDeployError
from gn_deploy.reference import group_norm_reference

OP_TYPE = "FusedGroupNorm"
DOMAIN = "gn_deploy"
DOMAIN_VERSION = 1
PLUGIN_NAMESPACE = "gn_deploy"
PLUGIN_VERSION = "1"


def is_plugin_node(node: Any) -> bool:
    """Whether an ONNX node (protobuf or onnx-ir) is a FusedGroupNorm."""
    return bool(node.domain == DOMAIN and node.op_type == OP_TYPE)


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


# What the plugin's creator accepts (plugins/groupnorm/src/plugin_support.cpp): per attribute,
# its ONNX types, the values allowed in words, and the test of a value.
_INT, _FLOAT = onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT
_ATTRIBUTES: dict[str, tuple[tuple[int, ...], str, Callable[[Any], bool]]] = {
    "num_groups": ((_INT,), "a positive integer", lambda v: 0 < v < 2**31),
    "epsilon": ((_FLOAT, _INT), "a finite float >= 0", lambda v: math.isfinite(v) and v >= 0),
    "activation": ((_INT,), "0 (none) or 1 (SiLU)", lambda v: v in (0, 1)),
    "channels_last": ((_INT,), "0 or 1", lambda v: v in (0, 1)),
}


def node_error(node: onnx.NodeProto, channels: int | None = None) -> str | None:
    """Why the plugin would refuse this FusedGroupNorm node, or None: its attributes, and
    ``num_groups`` against the channel count where it is known (gamma's length)."""
    given = {a.name: a for a in node.attribute}
    for required in ("num_groups", "epsilon"):
        if required not in given:
            return f"node {node.name!r}: FusedGroupNorm needs the attribute {required}"
    for name, (kinds, allowed, test) in _ATTRIBUTES.items():
        if name in given:
            value = onnx.helper.get_attribute_value(given[name])
            if given[name].type not in kinds or not test(value):
                return f"node {node.name!r}: attribute {name} must be {allowed}, not {value!r}"
    groups = onnx.helper.get_attribute_value(given["num_groups"])
    if channels is not None and channels % groups:
        return f"node {node.name!r}: C = {channels} is not divisible by num_groups = {groups}"
    return None


def check_nodes(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Refuse, naming it, the first FusedGroupNorm node of ``path`` that the plugin's creator
    would refuse (its channel count taken from gamma where gamma is an initializer)."""
    lengths = {t.name: int(np.prod(t.dims)) for t in proto.graph.initializer}
    for node in filter(is_plugin_node, proto.graph.node):
        channels = lengths.get(node.input[1]) if len(node.input) > 1 else None
        error = node_error(node, channels)
        if error:
            raise GnDeployError(f"{path}: {error}")
