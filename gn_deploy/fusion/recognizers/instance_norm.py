"""torch's GN spelling: Reshape(x, [N, G, -1]) → InstanceNormalization → Reshape(·, shape(x)).

Both torch exporters (and paddle2onnx) write it; the affine Mul/Add that follows is absorbed by
:func:`gn_deploy.fusion.recognizers.affine.absorb_affine`. InstanceNormalization's own per-group
scale and bias are folded into gamma and beta exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import Dim, fold, fold_ints
from gn_deploy.fusion.graph import is_op, skip_identity_down, skip_identity_up, sole_consumer
from gn_deploy.fusion.site import GroupNormSite, Refusal

FAMILY = "torch-instancenorm"


def recognize(node: ir.Node, opset: int) -> GroupNormSite | Refusal | None:
    before: list[ir.Node] = []
    grouped = skip_identity_up(node.inputs[0], before) if node.inputs[0] is not None else None
    reshape_in = grouped.producer() if grouped is not None else None
    if not is_op(reshape_in, "Reshape"):
        return None  # a plain InstanceNormalization, not a GN candidate
    assert reshape_in is not None
    x = reshape_in.inputs[0]
    if x is None:
        return None
    refuse = _refuser(node)
    if x.shape is None or len(x.shape) < 2:
        return refuse(f"the rank of input {x.name!r} is unknown")
    channels = x.shape[1]
    if not isinstance(channels, int):
        return refuse(f"the channel count (axis 1) of input {x.name!r} is not static")
    num_groups = _groups(fold_ints(reshape_in.inputs[1], anchor=x), x.shape)
    if num_groups is None:
        return refuse(
            f"Reshape {reshape_in.name!r} does not split input {x.name!r} into [N, G, ...] groups"
        )
    if channels % num_groups:
        return refuse(f"channels {channels} are not divisible by the {num_groups} groups")
    scale, bias = fold(node.inputs[1]), fold(node.inputs[2])
    if scale is None or bias is None:
        return refuse("InstanceNormalization's scale or bias is not a constant")
    if scale.size != num_groups or bias.size != num_groups:
        return refuse(f"InstanceNormalization's scale/bias do not have {num_groups} entries")
    after: list[ir.Node] = []
    normalized = skip_identity_down(node.outputs[0], after)
    reshape_out = sole_consumer(normalized)
    if not is_op(reshape_out, "Reshape") or reshape_out is None:
        return refuse("the normalized groups are not reshaped back to the input's shape")
    if not _is_shape_of(fold_ints(reshape_out.inputs[1], anchor=x), x.shape):
        return refuse(f"Reshape {reshape_out.name!r} does not restore the shape of {x.name!r}")
    site = GroupNormSite(
        family=FAMILY,
        x=x,
        output=reshape_out.outputs[0],
        num_groups=num_groups,
        epsilon=node.attributes.get_float("epsilon", 1e-5),
        channels=channels,
        nodes=[reshape_in, *reversed(before), node, *after, reshape_out],
    )
    per_group = channels // num_groups
    scale64 = np.asarray(scale, np.float64).reshape(-1)
    bias64 = np.asarray(bias, np.float64).reshape(-1)
    if not (np.all(scale64 == 1.0) and np.all(bias64 == 0.0)):
        site.gamma = np.repeat(scale64, per_group)
        site.beta = np.repeat(bias64, per_group)
    return site


def _refuser(node: ir.Node) -> Callable[[str], Refusal]:
    def refuse(reason: str) -> Refusal:
        return Refusal(node=node.name or "", op_type=node.op_type, reason=reason)

    return refuse


def _dim_matches(entry: int | Dim, axis: int, dim: int | object) -> bool:
    if isinstance(entry, Dim):
        return entry.axis == axis
    return isinstance(dim, int) and entry == dim


def _groups(target: list[int | Dim] | None, shape: ir.Shape) -> int | None:
    """G when reshaping to ``target`` keeps the batch axis and splits channels into G groups."""
    if target is None or len(target) < 3:
        return None
    batch, groups, rest = target[0], target[1], target[2:]
    if not (batch == 0 or _dim_matches(batch, 0, shape[0])):
        return None
    if groups == 0:
        groups = shape[1]
    if not isinstance(groups, int) or groups <= 0:
        return None
    if any(isinstance(r, Dim) or r == 0 or r < -1 for r in rest):
        return None
    if rest.count(-1) > 1:
        return None
    if -1 not in rest:
        dims = list(shape)[1:]
        if not all(isinstance(d, int) for d in dims):
            return None
        if math.prod(rest) * groups != math.prod(dims):  # type: ignore[arg-type]
            return None
    return groups


def _is_shape_of(target: list[int | Dim] | None, shape: ir.Shape) -> bool:
    """Whether reshaping to ``target`` (no zeros, at most one -1) gives exactly ``shape``."""
    if target is None or len(target) != len(shape):
        return False
    unknown = [i for i, t in enumerate(target) if t == -1]
    if len(unknown) > 1:
        return False
    return all(i in unknown or _dim_matches(t, i, shape[i]) for i, t in enumerate(target))
