"""ONNX's own GroupNormalization: opset 21 (per-channel scale) and 18 (per-group scale)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import fold
from gn_deploy.fusion.site import GroupNormSite, Refusal

FAMILY_21 = "onnx-groupnorm-21"
FAMILY_18 = "onnx-groupnorm-18"


def recognize(node: ir.Node, opset: int) -> GroupNormSite | Refusal | None:
    if node.domain not in ("", "ai.onnx"):
        return None
    x = node.inputs[0]
    if x is None:
        return None
    num_groups = node.attributes.get_int("num_groups")
    scale, bias = fold(node.inputs[1]), fold(node.inputs[2])
    if num_groups is None or num_groups <= 0:
        return Refusal(node.name or "", node.op_type, f"num_groups is {num_groups}")
    if scale is None or bias is None:
        return Refusal(node.name or "", node.op_type, "scale or bias is not a constant")
    per_group = (node.version or opset) < 21
    channels = x.shape[1] if x.shape is not None and len(x.shape) > 1 else None
    expected = num_groups if per_group else channels
    if isinstance(expected, int) and (scale.size != expected or bias.size != expected):
        problem = f"scale/bias have {scale.size}/{bias.size} entries, expected {expected}"
        return Refusal(node.name or "", node.op_type, problem, warnings=[problem])
    if per_group:
        if not isinstance(channels, int):
            return Refusal(
                node.name or "", node.op_type, f"channel count of {x.name!r} is not static"
            )
        if channels % num_groups:
            return Refusal(
                node.name or "", node.op_type, f"{channels} channels, {num_groups} groups"
            )
        gamma = np.repeat(scale.astype(np.float64), channels // num_groups)
        beta = np.repeat(bias.astype(np.float64), channels // num_groups)
    else:
        gamma, beta = scale.astype(np.float64), bias.astype(np.float64)
        channels = gamma.size
    return GroupNormSite(
        family=FAMILY_18 if per_group else FAMILY_21,
        x=x,
        output=node.outputs[0],
        num_groups=num_groups,
        epsilon=node.attributes.get_float("epsilon", 1e-5),
        channels=int(channels),
        nodes=[node],
        gamma=gamma,
        beta=beta,
        opset=18 if per_group else None,
    )
