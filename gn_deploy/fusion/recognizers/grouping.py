"""The grouped view every decomposed GN works on: x reshaped to expose the groups, and back.

Channels first: Reshape(x [N, C, *S], [N, G, ...]); channels last (Keras/tf2onnx):
Reshape(x [N, *S, C], [N, *S, G, C/G]). Shared by the recognizers whose normalization runs on
the grouped view (InstanceNormalization, moments chains, LayerNormalization).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import onnx_ir as ir

from gn_deploy.fusion.constants import Dim, fold_ints
from gn_deploy.fusion.graph import is_op, skip_identity_down, skip_identity_up, sole_consumer
from gn_deploy.fusion.site import GroupNormSite, Layout, Refusal

BOTH_LAYOUTS = (Layout.NCHW, Layout.NHWC)


@dataclass
class GroupedView:
    """x reshaped to [N, G, ...]: the value the normalization reads, and how it got there."""

    x: ir.Value
    grouped: ir.Value
    num_groups: int
    channels: int
    rank: int  # rank of the grouped view
    nodes: list[ir.Node] = field(default_factory=list)  # the Reshape and any Identity after it
    layout: Layout = Layout.NCHW
    view_shape: tuple[int, ...] | None = None  # x read as [N', C, ...] (see GroupNormSite)


def grouped_views(
    value: ir.Value | None, layouts: tuple[Layout, ...] = (Layout.NCHW,)
) -> list[GroupedView] | str | None:
    """Every reading of ``value`` as a grouped view in ``layouts`` (a reshape can read both
    ways when dims are 1); a reason when it is a reshape of x that is no grouped view; else None.
    """
    if value is None:
        return None
    identities: list[ir.Node] = []
    grouped = skip_identity_up(value, identities)
    reshape = grouped.producer()
    if not is_op(reshape, "Reshape") or reshape is None or reshape.inputs[0] is None:
        return None
    x = reshape.inputs[0]
    if x.shape is None or len(x.shape) < 2:
        return f"the rank of input {x.name!r} is unknown"
    target = fold_ints(reshape.inputs[1], anchor=x)
    nodes = [reshape, *reversed(identities)]
    views = []
    reason = f"Reshape {reshape.name!r} does not split input {x.name!r} into [N, G, ...] groups"
    if Layout.NCHW in layouts:
        channels = x.shape[1] if isinstance(x.shape[1], int) else channel_hint(x)
        groups = _groups(target, x.shape)
        if not isinstance(channels, int):
            reason = f"the channel count (axis 1) of input {x.name!r} is not static"
        elif groups is not None and target is not None and channels % groups:
            reason = f"channels {channels} are not divisible by the {groups} groups"
        elif groups is not None and target is not None:
            views.append(GroupedView(x, value, groups, channels, len(target), nodes))
        elif (folded := _folded_batch(target, x.shape)) is not None:
            view_shape, folded_groups = folded
            views.append(
                GroupedView(
                    x,
                    value,
                    folded_groups,
                    view_shape[1],
                    len(target or []),
                    nodes,
                    view_shape=view_shape,
                )
            )
    if Layout.NHWC in layouts:
        channels_last = _channels_last_groups(target, x.shape)
        if channels_last is not None:
            groups, channels = channels_last
            views.append(
                GroupedView(x, value, groups, channels, len(target or []), nodes, Layout.NHWC)
            )
    return views or reason


# Ops whose output has the channels (axis 1) of their first input.
_CHANNEL_KEEPING = {
    "Pad", "MaxPool", "AveragePool", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Elu",
    "HardSigmoid", "HardSwish", "Softplus", "Identity", "Cast", "Dropout",
}  # fmt: skip
_HINT_DEPTH = 16


def channel_hint(x: ir.Value) -> int | None:
    """x's channel count where shape inference lost it (a Pad whose pads are computed, as for
    timm's and transformers' BiT "same" padding): from the convolution that made x, through
    ops that keep channels. The verifier proves whatever is read from it."""
    value = x
    for _ in range(_HINT_DEPTH):
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type == "Conv":
            weight = node.inputs[1]
            shape = weight.shape if weight is not None else None
            return shape[0] if shape is not None and isinstance(shape[0], int) else None
        if node.op_type not in _CHANNEL_KEEPING or node.inputs[0] is None:
            return None
        value = node.inputs[0]
        if value.shape is not None and len(value.shape) > 1 and isinstance(value.shape[1], int):
            return value.shape[1]
    return None


def views_only(found: list[GroupedView] | str | None) -> list[GroupedView]:
    """The readings :func:`grouped_views` found, none when it gave a reason or nothing."""
    return found if isinstance(found, list) else []


def grouped_view(value: ir.Value | None) -> GroupedView | str | None:
    """The channels-first grouped view behind ``value`` (see :func:`grouped_views`)."""
    views = grouped_views(value)
    return views[0] if isinstance(views, list) else views


def restored_output(value: ir.Value, view: GroupedView) -> tuple[ir.Value, list[ir.Node]] | str:
    """Follow ``value`` (on the grouped view) to the Reshape that restores x's shape.

    Returns that Reshape's output and the nodes passed, or the reason there is none.
    """
    identities: list[ir.Node] = []
    normalized = skip_identity_down(value, identities)
    reshape = sole_consumer(normalized)
    if not is_op(reshape, "Reshape") or reshape is None:
        return f"the normalized groups are not reshaped back to the shape of {view.x.name!r}"
    assert view.x.shape is not None
    target = fold_ints(reshape.inputs[1], anchor=view.x)
    if view.view_shape is not None:
        restores = target is not None and _is_shape_of(target, ir.Shape(view.view_shape))
    else:
        restores = _is_shape_of(target, view.x.shape)
    if not restores:
        return f"Reshape {reshape.name!r} does not restore the shape of {view.x.name!r}"
    return reshape.outputs[0], [*identities, reshape]


def site_on_view(
    view: GroupedView, family: str, normalized: ir.Value, nodes: list[ir.Node], epsilon: float
) -> GroupNormSite | str:
    """The site whose ``nodes`` normalize the grouped view into ``normalized``, reshaped back.

    Returns the reason instead when ``normalized`` is not restored to the shape of x.
    """
    restored = restored_output(normalized, view)
    if isinstance(restored, str):
        return restored
    output, after = restored
    return GroupNormSite(
        family=family,
        x=view.x,
        output=output,
        num_groups=view.num_groups,
        epsilon=epsilon,
        channels=view.channels,
        nodes=[*view.nodes, *nodes, *after],
        layout=view.layout,
        view_shape=view.view_shape,
    )


def first_site(
    results: Iterable[GroupNormSite | Refusal | None],
) -> GroupNormSite | Refusal | None:
    """The first site among ``results`` (tried in order, lazily), else the first refusal."""
    first_refusal: Refusal | None = None
    for result in results:
        if isinstance(result, GroupNormSite):
            return result
        first_refusal = first_refusal or result
    return first_refusal


def refusal(node: ir.Node, reason: str) -> Refusal:
    return Refusal(node=node.name or "", op_type=node.op_type, reason=reason)


def group_axes(view: GroupedView) -> set[int]:
    """The axes of the grouped view that one group's statistics run over."""
    if view.layout is Layout.NHWC:  # [N, *S, G, C/G]: all but the batch and group axes
        return set(range(1, view.rank - 2)) | {view.rank - 1}
    return set(range(2, view.rank))


def _channels_last_groups(
    target: list[int | Dim] | None, shape: ir.Shape
) -> tuple[int, int] | None:
    """(G, C) when ``target`` is [N, *S, G, C/G] for x of ``shape`` [N, *S, C], C static."""
    if target is None or len(target) != len(shape) + 1 or len(shape) < 3:
        return None
    channels = shape[-1]
    groups, per_group = target[-2], target[-1]
    if not (isinstance(channels, int) and isinstance(groups, int) and isinstance(per_group, int)):
        return None
    if per_group == -1 and groups > 0 and channels % groups == 0:  # x.reshape(..., G, -1)
        per_group = channels // groups
    if groups <= 0 or per_group <= 0 or groups * per_group != channels:
        return None
    spatial = target[1:-2]
    if not all(_dim_matches(t, i + 1, shape[i + 1]) for i, t in enumerate(spatial)):
        return None
    batch = target[0]
    return (groups, channels) if batch in (0, -1) or _dim_matches(batch, 0, shape[0]) else None


def _dim_matches(entry: int | Dim, axis: int, dim: object) -> bool:
    if isinstance(entry, Dim):
        return entry.axis == axis
    return isinstance(dim, int) and entry == dim


def _folded_batch(
    target: list[int | Dim] | None, shape: ir.Shape
) -> tuple[tuple[int, ...], int] | None:
    """(view shape, G) when ``target`` is [A0*...*Ak-1, G, -1 or rest] for a static x
    [A0, ..., Ak-1, C, *S] (k >= 2): a batch folded from leading axes, channels at axis k."""
    dims = list(shape)
    if target is None or len(target) < 3 or not all(isinstance(d, int) for d in dims):
        return None
    if not all(isinstance(t, int) and t != 0 and t >= -1 for t in target):
        return None
    ints = [int(d) for d in dims]  # type: ignore[arg-type]
    for k in range(2, len(ints) - 1):
        batch, channels, groups = math.prod(ints[:k]), ints[k], target[1]
        if target[0] != batch or groups <= 0 or channels % groups:
            continue
        rest = [int(t) for t in target[2:]]
        known = math.prod(r for r in rest if r != -1)
        if rest.count(-1) > 1 or (
            rest.count(-1) == 0 and known * groups * batch != math.prod(ints)
        ):
            continue
        return (batch, channels, *ints[k + 1 :]), groups
    return None


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
