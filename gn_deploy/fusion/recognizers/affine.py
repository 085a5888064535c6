"""Absorb the per-channel Mul/Add chain that follows a normalization into gamma and beta."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import fold
from gn_deploy.fusion.graph import is_op, other_input, sole_consumer
from gn_deploy.fusion.site import GroupNormSite, Layout


def per_channel(const: np.ndarray, rank: int, channels: int, layout: Layout) -> np.ndarray | None:
    """``const`` as a [C] vector if it broadcasts against [N, C, *] (or [N, *, C]) per channel."""
    if const.dtype == object or const.ndim > rank:
        return None
    shape = (1,) * (rank - const.ndim) + const.shape
    axis = 1 if layout is Layout.NCHW else rank - 1
    if any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    if shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(const.astype(np.float64).reshape(-1), (channels,)).copy()


def absorb_affine(site: GroupNormSite) -> None:
    """Fold every following ``Mul``/``Add`` by a per-channel constant into the site.

    Stops at the first node that is not such an op, or at a value read by more than one node
    (the fused op then produces that value and the other readers keep working).
    """
    rank = len(site.x.shape) if site.x.shape is not None else None
    if rank is None:
        return
    while True:
        node = sole_consumer(site.output)
        if not (is_op(node, "Mul") or is_op(node, "Add")):
            return
        assert node is not None
        operand = other_input(node, site.output)
        const = fold(operand) if operand is not None else None
        vec = None if const is None else per_channel(const, rank, site.channels, site.layout)
        if vec is None:
            return
        if node.op_type == "Mul":
            site.gamma = vec if site.gamma is None else site.gamma * vec
            site.beta = None if site.beta is None else site.beta * vec
        else:
            site.beta = vec if site.beta is None else site.beta + vec
        site.nodes.append(node)
        site.output = node.outputs[0]


def fold_silu(site: GroupNormSite) -> None:
    """Fold ``y * Sigmoid(y)`` (either operand order) after the site into its activation."""
    out: ir.Value = site.output
    if out.is_graph_output():
        return
    users = {use.node for use in out.uses()}
    sigmoid = next((n for n in users if is_op(n, "Sigmoid")), None)
    if sigmoid is None or len(users) != 2:
        return
    mul = sole_consumer(sigmoid.outputs[0])
    if not is_op(mul, "Mul") or mul not in users:
        return
    assert mul is not None
    if {mul.inputs[0], mul.inputs[1]} != {out, sigmoid.outputs[0]}:
        return
    site.nodes.extend([sigmoid, mul])
    site.output = mul.outputs[0]
    site.activation = site.activation.SILU


_HALF = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


def fold_upcast(site: GroupNormSite) -> None:
    """Fold guided-diffusion's ``GN(x.float()).type(x.dtype)`` into the site.

    A GN between Cast(half → float) and Cast(float → the same half type) equals the fused op on
    the half tensor: it keeps statistics in fp32 and rounds once, as the Casts did.
    """
    cast_in = site.x.producer()
    if not is_op(cast_in, "Cast") or cast_in is None or cast_in.inputs[0] is None:
        return
    source = cast_in.inputs[0]
    if source.dtype not in _HALF or site.x.dtype != ir.DataType.FLOAT:
        return
    cast_out = sole_consumer(site.output)
    if not is_op(cast_out, "Cast") or cast_out is None:
        return
    if cast_out.attributes.get_int("to") != source.dtype:
        return
    if site.x.uses() and all(use.node in site.nodes for use in site.x.uses()):
        site.nodes.insert(0, cast_in)
    site.x = source
    site.nodes.append(cast_out)
    site.output = cast_out.outputs[0]
