"""Recognizers: one module per pattern family, each turning a matched subgraph into a site.

A recognizer is a function ``(anchor node, default-domain opset) -> site | refusal | None``:
``None`` means the node is not a GN candidate at all, a :class:`Refusal` says why a candidate
is not one.
Recognizers never write the graph.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from gn_deploy.fusion.recognizers import (
    group_norm_op,
    instance_norm,
    layer_norm,
    moments,
    moments_folded,
)
from gn_deploy.fusion.site import GroupNormSite, Refusal

Recognizer = Callable[[ir.Node, int], GroupNormSite | Refusal | None]

# Anchor op type -> recognizers tried on it, in order.
RECOGNIZERS: dict[str, list[Recognizer]] = {
    "InstanceNormalization": [instance_norm.recognize],
    "GroupNormalization": [group_norm_op.recognize],
    "LayerNormalization": [layer_norm.recognize],
    "Div": [moments.recognize],
    "Mul": [moments.recognize],
    "Add": [moments_folded.recognize],
}
