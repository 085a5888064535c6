"""torch's GN spelling: Reshape(x, [N, G, -1]) → InstanceNormalization → Reshape(·, shape(x)).

Both torch exporters (and paddle2onnx) write it; the affine Mul/Add that follows is absorbed by
:func:`gn_deploy.fusion.recognizers.affine.absorb_affine`. InstanceNormalization's own per-group
scale and bias are folded into gamma and beta exactly.

With G = C the Reshapes are no-ops that graph simplifiers (onnxsim, onnxslim) remove, and the
dynamo exporter drops the one back when the shapes already match (wav2vec2/HuBERT feature
encoders): an InstanceNormalization straight on x [N, C, *spatial] is a GN with G = C, read as
such (family ``instancenorm-channels``).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import fold
from gn_deploy.fusion.graph import is_op, sole_consumer
from gn_deploy.fusion.recognizers.grouping import (
    GroupedView,
    grouped_view,
    refusal,
    site_on_view,
)
from gn_deploy.fusion.site import GroupNormSite, Layout, Refusal

FAMILY = "instancenorm-sandwich"
PER_CHANNEL = "instancenorm-channels"


def recognize(node: ir.Node, opset: int) -> GroupNormSite | Refusal | None:
    view = grouped_view(node.inputs[0])
    if view is None:
        return _per_channel(node)
    if isinstance(view, str):
        return refusal(node, view)
    if view.num_groups == view.channels and _keeps_shape(view):
        return _per_channel(node, view.x, view.nodes)
    scale, bias = fold(node.inputs[1]), fold(node.inputs[2])
    if scale is None or bias is None:
        return refusal(node, "InstanceNormalization's scale or bias is not a constant")
    if scale.size != view.num_groups or bias.size != view.num_groups:
        return refusal(
            node, f"InstanceNormalization's scale/bias do not have {view.num_groups} entries"
        )
    epsilon = node.attributes.get_float("epsilon", 1e-5)
    site = site_on_view(view, FAMILY, node.outputs[0], [node], epsilon)
    if isinstance(site, str):
        return refusal(node, site)
    per_group = view.channels // view.num_groups
    scale64 = np.asarray(scale, np.float64).reshape(-1)
    bias64 = np.asarray(bias, np.float64).reshape(-1)
    if not (np.all(scale64 == 1.0) and np.all(bias64 == 0.0)):
        site.gamma = np.repeat(scale64, per_group)
        site.beta = np.repeat(bias64, per_group)
    return site


def _keeps_shape(view: GroupedView) -> bool:
    """Whether the grouped view has x's very shape (G = C on [N, C, L]): no Reshape back."""
    x, grouped = view.x.shape, view.grouped.shape
    return (
        view.layout is Layout.NCHW
        and x is not None
        and grouped is not None
        and len(x) == len(grouped) == 3
        and all(
            isinstance(a, int) and a == b for a, b in zip(x.dims[1:], grouped.dims[1:], strict=True)
        )
    )


def _per_channel(
    node: ir.Node, x: ir.Value | None = None, before: list[ir.Node] | None = None
) -> GroupNormSite | Refusal | None:
    """InstanceNormalization on x [N, C, *spatial] (through a shape-keeping Reshape when
    ``before``): a GN with one group per channel, its scale and bias the affine."""
    x = node.inputs[0] if x is None else x
    if x is None or x.shape is None or len(x.shape) < 3 or not isinstance(x.shape[1], int):
        return None  # rank or channels unknown: nothing to say
    channels = x.shape[1]
    scale, bias = fold(node.inputs[1]), fold(node.inputs[2])
    if scale is None or bias is None or scale.size != channels or bias.size != channels:
        if before is None:
            return None  # an InstanceNorm as written
        return refusal(node, "InstanceNormalization's scale or bias is not a constant per channel")
    scale64 = np.asarray(scale, np.float64).reshape(-1)
    bias64 = np.asarray(bias, np.float64).reshape(-1)
    trivial = bool(np.all(scale64 == 1.0) and np.all(bias64 == 0.0))
    if before is None and not (trivial and is_op(sole_consumer(node.outputs[0]), "Mul")):
        # What GroupNorm leaves: ones and zeros inside, its affine as a Mul (and Add) after.
        # Anything else is an InstanceNorm as written, and stays one.
        return None
    return GroupNormSite(
        family=PER_CHANNEL,
        x=x,
        output=node.outputs[0],
        num_groups=channels,
        epsilon=node.attributes.get_float("epsilon", 1e-5),
        channels=channels,
        nodes=[*(before or []), node],
        gamma=None if trivial else scale64,
        beta=None if trivial else bias64,
    )
