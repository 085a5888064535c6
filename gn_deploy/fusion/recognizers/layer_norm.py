"""GN spelled as LayerNormalization over the grouped view.

``F.layer_norm(x.view(N, G, -1), (C/G·H·W,))`` or ``F.layer_norm(x.view(N, G, C/G, H, W),
(C/G, H, W))``: LayerNormalization normalizing every axis from 2 on. Its scale and bias are
shared by all groups; they fold into per-channel gamma and beta when they are constant over each
channel's positions (else the site is refused: a per-position affine is not GN's).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import fold
from gn_deploy.fusion.recognizers.grouping import (
    GroupedView,
    grouped_view,
    refusal,
    site_on_view,
)
from gn_deploy.fusion.site import GroupNormSite, Refusal

FAMILY = "layernorm-grouped"


def _per_channel(const: np.ndarray | None, view: GroupedView, default: float) -> np.ndarray | None:
    """A [C] vector from LayerNormalization's scale/bias over one group, or None."""
    per_group = view.channels // view.num_groups
    if const is None:
        return np.full(view.channels, default)
    flat = np.asarray(const, np.float64).reshape(-1)
    if flat.size == 1:
        return np.full(view.channels, flat[0])
    if flat.size % per_group:
        return None
    rows = flat.reshape(per_group, -1) if const.ndim <= 1 or const.shape[0] == per_group else None
    if rows is None or not np.all(rows == rows[:, :1]):
        return None
    return np.tile(rows[:, 0], view.num_groups)


def recognize(node: ir.Node, opset: int) -> GroupNormSite | Refusal | None:
    view = grouped_view(node.inputs[0])
    if view is None:
        return None
    if isinstance(view, str):
        return refusal(node, view)
    axis = node.attributes.get_int("axis", -1)
    if axis % view.rank != 2:
        return refusal(
            node,
            f"LayerNormalization axis {axis} does not normalize each whole "
            "group (axes 2 and on of the grouped view)",
        )
    if any(out is not None and out.uses() for out in node.outputs[1:]):
        return refusal(node, "LayerNormalization's mean or inverse-std outputs are used")
    scale = fold(node.inputs[1])
    bias_value = node.inputs[2] if len(node.inputs) > 2 else None
    bias = fold(bias_value) if bias_value is not None else None
    if scale is None or (bias_value is not None and bias is None):
        return refusal(node, "LayerNormalization's scale or bias is not a constant")
    gamma, beta = _per_channel(scale, view, 1.0), _per_channel(bias, view, 0.0)
    if gamma is None or beta is None:
        return refusal(
            node,
            "LayerNormalization's scale/bias vary within a channel (a "
            "per-position affine, not GN's per-channel one)",
        )
    epsilon = node.attributes.get_float("epsilon", 1e-5)
    site = site_on_view(view, FAMILY, node.outputs[0], [node], epsilon)
    if isinstance(site, str):
        return refusal(node, site)
    if not (np.all(gamma == 1.0) and np.all(beta == 0.0)):
        site.gamma, site.beta = gamma, beta
    return site
