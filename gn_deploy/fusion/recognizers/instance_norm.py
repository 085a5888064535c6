"""torch's GN spelling: Reshape(x, [N, G, -1]) → InstanceNormalization → Reshape(·, shape(x)).

Both torch exporters (and paddle2onnx) write it; the affine Mul/Add that follows is absorbed by
:func:`gn_deploy.fusion.recognizers.affine.absorb_affine`. InstanceNormalization's own per-group
scale and bias are folded into gamma and beta exactly.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import fold
from gn_deploy.fusion.recognizers.grouping import grouped_view, refusal, site_on_view
from gn_deploy.fusion.site import GroupNormSite, Refusal

FAMILY = "instancenorm-sandwich"


def recognize(node: ir.Node, opset: int) -> GroupNormSite | Refusal | None:
    view = grouped_view(node.inputs[0])
    if view is None:
        return None  # a plain InstanceNormalization, not a GN candidate
    if isinstance(view, str):
        return refusal(node, view)
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
