"""Hand-written GN: explicit mean, variance and rsqrt over the grouped view.

    xg = Reshape(x, [N, G, ...]);  m = mean(xg);  v = var(xg)
    n  = (xg - m) / sqrt(v + eps)   or   (xg - m) * rstd(v + eps);  y = Reshape(n, shape(x))

Built from small matchers so that every spelling composes: ``mean_of`` (ReduceMean, or
ReduceSum divided by the count, a weighted mean with weights of ones as Keras 2 writes it through
tf.nn.weighted_moments), ``variance_of`` (mean of squared deviations, or
E[x²] − E[x]²; squares as Mul or Pow 2), ``rstd_of`` (Reciprocal(Sqrt), Pow −0.5, c / Sqrt,
times a constant). Statistics may pass through Reshape/Unsqueeze/Squeeze/Identity (keepdims=0
exports). The anchor is the normalizing Div or Mul.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import fold, fold_float, fold_ints
from gn_deploy.fusion.graph import is_op
from gn_deploy.fusion.recognizers.grouping import (
    BOTH_LAYOUTS,
    GroupedView,
    first_site,
    group_axes,
    grouped_views,
    refusal,
    site_on_view,
    views_only,
)
from gn_deploy.fusion.site import GroupNormSite, Refusal

FAMILY = "moments"
# Ops that only add or drop size-1 axes of per-group statistics.
_STATS_VIEWS = ("Identity", "Reshape", "Unsqueeze", "Squeeze")


class Matched:
    """The nodes a match walked through, each once, in the order met."""

    def __init__(self) -> None:
        self.nodes: list[ir.Node] = []

    def add(self, node: ir.Node | None) -> None:
        if node is not None and node not in self.nodes:
            self.nodes.append(node)


def _producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    node = value.producer() if value is not None else None
    return node if is_op(node, op_type) else None


def _through_views(value: ir.Value | None, seen: Matched) -> ir.Value | None:
    while value is not None:
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in _STATS_VIEWS:
            return value
        seen.add(node)
        value = node.inputs[0]
    return value


def _reduce_axes(node: ir.Node, rank: int) -> set[int] | None:
    axes_attr = node.attributes.get_ints("axes")
    if axes_attr is not None:
        axes = list(axes_attr)
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        folded = fold_ints(node.inputs[1])
        if folded is None:
            return None
        axes = [int(a) for a in folded]
    else:
        return set(range(rank))  # no axes: every axis
    return {a % rank for a in axes}


def _group_reduce(
    value: ir.Value | None, source: ir.Value, view: GroupedView, op: str, seen: Matched
) -> bool:
    """``value`` is ``op`` (ReduceMean / ReduceSum) of ``source`` over the group's axes."""
    node = _producer(_through_views(value, seen), op)
    if node is None or node.inputs[0] is not source:
        return False
    if _reduce_axes(node, view.rank) != group_axes(view):
        return False
    seen.add(node)
    return True


def _group_count(view: GroupedView) -> int | None:
    shape = view.x.shape
    if shape is None or not all(isinstance(d, int) for d in list(shape)[1:]):
        return None
    return int(np.prod(list(shape)[1:])) // view.num_groups


def _filled(value: ir.Value | None, fill: float) -> bool:
    """``value`` is a tensor of ``fill`` only: a constant, or ConstantOfShape (ones_like)
    through shape-only ops."""
    while value is not None:
        constant = fold(value)
        if constant is not None:
            return constant.dtype != object and bool(np.all(constant == fill))
        node = value.producer()
        if is_op(node, "ConstantOfShape") and node is not None:
            attr = node.attributes.get("value")
            tensor = attr.as_tensor() if attr is not None else None
            filled = 0.0 if tensor is None else float(tensor.numpy().reshape(-1)[0])
            return filled == fill
        if node is None or node.op_type not in (*_STATS_VIEWS, "Cast", "Expand"):
            return False
        value = node.inputs[0]
    return False


def _group_sum(value: ir.Value | None, view: GroupedView, seen: Matched) -> ir.Value | None:
    """x for ``ReduceSum(x)`` over the group's axes, else None."""
    node = _producer(_through_views(value, seen), "ReduceSum")
    if node is None or _reduce_axes(node, view.rank) != group_axes(view):
        return None
    seen.add(node)
    return node.inputs[0]


def _made_from_shapes(value: ir.Value | None, view: GroupedView, seen: Matched) -> None:
    """Add every node that computes ``value`` from constants and the shapes of x and the
    grouped view (the ones_like / zeros_like tensors of weighted moments, and their shapes)."""
    stack = [value]
    while stack:
        current = stack.pop()
        if current is None or current is view.x or current is view.grouped:
            continue
        node = current.producer()
        if node is None or node in seen.nodes:
            continue
        seen.add(node)
        if node.op_type != "Shape":  # a Shape reads only the shape of its input: stop there
            stack.extend(node.inputs)


def _weighted_mean_source(
    value: ir.Value | None, view: GroupedView, seen: Matched
) -> ir.Value | None:
    """s when ``value`` is tf.nn.weighted_moments' mean of s with weights of ones (Keras 2's
    GroupNormalization): div_no_nan(ReduceSum(w * s), ReduceSum(w + zeros)), the division
    guarded by Where(Equal(sum, 0), 0, ·)."""
    trial = Matched()
    value = _through_views(value, trial)
    node = value.producer() if value is not None else None
    guard = None
    if is_op(node, "Where") and node is not None and fold_float(node.inputs[1]) == 0.0:
        guard = _producer(node.inputs[0], "Equal")
        trial.add(node)
        node = _producer(node.inputs[2], "Div")
    if not is_op(node, "Div") or node is None:
        return None
    product = _producer(_group_sum(node.inputs[0], view, trial), "Mul")
    if product is None:
        return None
    weights, source = product.inputs[0], product.inputs[1]
    if not _filled(weights, 1.0):
        weights, source = source, weights
    if not _filled(weights, 1.0):
        return None
    total = node.inputs[1]
    summed = _group_sum(total, view, trial)
    added = _producer(summed, "Add")
    if added is not None and _filled(added.inputs[1], 0.0):
        trial.add(added)
        summed = added.inputs[0]
    if summed is not weights:
        return None
    _made_from_shapes(weights, view, trial)
    if added is not None:
        _made_from_shapes(added.inputs[1], view, trial)
    if guard is not None:
        if guard.inputs[0] is not total or fold_float(guard.inputs[1]) != 0.0:
            return None
        trial.add(guard)
    for n in [*trial.nodes, product, node]:
        seen.add(n)
    return source


def _mean(value: ir.Value | None, source: ir.Value, view: GroupedView, seen: Matched) -> bool:
    """``value`` is the mean of ``source`` over the group: ReduceMean, ReduceSum / count, or
    a weighted mean with weights of ones."""
    value = _through_views(value, seen)
    if _group_reduce(value, source, view, "ReduceMean", seen):
        return True
    weighted = Matched()
    if _weighted_mean_source(value, view, weighted) is source:
        for n in weighted.nodes:
            seen.add(n)
        return True
    node = value.producer() if value is not None else None
    if is_op(node, "Div") and node is not None:
        total, count = node.inputs[0], fold_float(node.inputs[1])
    elif is_op(node, "Mul") and node is not None:
        total, inverse = node.inputs[0], fold_float(node.inputs[1])
        if inverse is None:
            total, inverse = node.inputs[1], fold_float(node.inputs[0])
        count = 1.0 / inverse if inverse else None
    else:
        return False
    expected = _group_count(view)
    if count is None or expected is None or not np.isclose(count, expected, rtol=1e-6):
        return False
    if not _group_reduce(total, source, view, "ReduceSum", seen):
        return False
    seen.add(node)
    return True


def mean_of(value: ir.Value | None, view: GroupedView, seen: Matched) -> bool:
    """``value`` is the mean of the grouped view over each group."""
    return _mean(value, view.grouped, view, seen)


def _square_of(value: ir.Value | None, seen: Matched) -> ir.Value | None:
    """a for ``a * a`` or ``a ** 2``."""
    node = value.producer() if value is not None else None
    if is_op(node, "Mul") and node is not None and node.inputs[0] is node.inputs[1]:
        seen.add(node)
        return node.inputs[0]
    if is_op(node, "Pow") and node is not None and fold_float(node.inputs[1]) == 2.0:
        seen.add(node)
        return node.inputs[0]
    return None


def deviation_of(value: ir.Value | None, view: GroupedView, seen: Matched) -> bool:
    """``value`` is ``xg - mean(xg)``."""
    node = _producer(value, "Sub")
    if node is None or node.inputs[0] is not view.grouped:
        return False
    if not mean_of(node.inputs[1], view, seen):
        return False
    seen.add(node)
    return True


def variance_of(value: ir.Value | None, view: GroupedView, seen: Matched) -> bool:
    """``value`` is the population variance of each group."""
    value = _through_views(value, seen)
    node = value.producer() if value is not None else None
    if node is None:
        return False
    if is_op(node, "Sub"):  # E[x²] − E[x]²
        square_source = Matched()
        mean_sq = _through_views(node.inputs[0], square_source)
        reduce = mean_sq.producer() if mean_sq is not None else None
        squared = reduce.inputs[0] if reduce is not None and reduce.inputs else None
        if squared is None or _square_of(squared, square_source) is not view.grouped:
            return False
        if not _mean(mean_sq, squared, view, square_source):
            return False
        mean = _square_of(node.inputs[1], square_source)
        if mean is None or not mean_of(mean, view, square_source):
            return False
        for n in square_source.nodes:
            seen.add(n)
        seen.add(node)
        return True
    squared = node.inputs[0] if node.op_type in ("ReduceMean", "Div", "Mul") else None
    if is_op(node, "Div") or is_op(node, "Mul"):  # ReduceSum(d²) / count
        inner = _producer(node.inputs[0], "ReduceSum")
        squared = inner.inputs[0] if inner is not None else None
    if is_op(node, "Where") or is_op(node, "Div"):  # weighted mean of d² (weights of ones)
        squared = _weighted_mean_source(value, view, Matched()) or squared
    trial = Matched()
    deviation = _square_of(squared, trial)
    if deviation is None or not deviation_of(deviation, view, trial):
        return False
    if squared is None or not _mean(value, squared, view, trial):
        return False
    for n in trial.nodes:
        seen.add(n)
    return True


def _add_epsilon(value: ir.Value | None, seen: Matched) -> tuple[ir.Value, float] | None:
    """(v, eps) for ``v + eps`` with a constant scalar eps (either order)."""
    node = _producer(value, "Add")
    if node is None or node.inputs[0] is None or node.inputs[1] is None:
        return None
    for var, eps in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        epsilon = fold_float(eps)
        if epsilon is not None and fold(var) is None:
            seen.add(node)
            return var, epsilon
    return None


def std_of(value: ir.Value | None, seen: Matched) -> tuple[ir.Value, float] | None:
    """(v, eps) for ``sqrt(v + eps)``."""
    node = _producer(value, "Sqrt")
    if node is None:
        return None
    found = _add_epsilon(node.inputs[0], seen)
    if found is not None:
        seen.add(node)
    return found


def rstd_of(value: ir.Value | None, seen: Matched) -> tuple[ir.Value, float, float] | None:
    """(v, eps, c) for ``c / sqrt(v + eps)`` in any of its spellings."""
    node = value.producer() if value is not None else None
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    found: tuple[ir.Value, float] | None = None
    scale = 1.0
    if node.op_type == "Reciprocal":
        found = std_of(node.inputs[0], seen)
    elif node.op_type == "Pow" and fold_float(node.inputs[1]) == -0.5:
        found = _add_epsilon(node.inputs[0], seen)
    elif node.op_type == "Div":
        numerator = fold_float(node.inputs[0])
        if numerator is not None:
            found, scale = std_of(node.inputs[1], seen), numerator
    elif node.op_type == "Mul":
        for inner, const in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
            factor = fold_float(const)
            if factor is not None:
                nested = rstd_of(inner, seen)
                if nested is not None:
                    seen.add(node)
                    return nested[0], nested[1], nested[2] * factor
        return None
    if found is None:
        return None
    seen.add(node)
    return found[0], found[1], scale


def recognize(node: ir.Node, opset: int) -> GroupNormSite | Refusal | None:
    """Anchor: the Div or Mul that normalizes ``xg - mean``."""
    if node.op_type not in ("Div", "Mul") or node.inputs[0] is None or node.inputs[1] is None:
        return None
    pairs = [(node.inputs[0], node.inputs[1])]
    if node.op_type == "Mul":
        pairs.append((node.inputs[1], node.inputs[0]))
    subs = [(_producer(centred, "Sub"), centred, scaler) for centred, scaler in pairs]
    return first_site(
        _site(node, sub, centred, scaler, view)
        for sub, centred, scaler in subs
        if sub is not None
        for view in views_only(grouped_views(sub.inputs[0], BOTH_LAYOUTS))
    )


def _site(
    node: ir.Node, sub: ir.Node, centred: ir.Value, scaler: ir.Value, view: GroupedView
) -> GroupNormSite | Refusal | None:
    seen = Matched()
    if not deviation_of(centred, view, seen):
        mean = sub.inputs[1].producer() if sub.inputs[1] is not None else None
        if is_op(mean, "ReduceMean") and mean is not None:
            axes = _reduce_axes(mean, view.rank)
            return refusal(
                node,
                f"the mean reduces axes {sorted(axes or [])} of the grouped "
                f"view, not the group's axes {sorted(group_axes(view))}",
            )
        return None
    if node.op_type == "Div":
        found = std_of(scaler, seen)
        stats = None if found is None else (found[0], found[1], 1.0)
    else:
        stats = rstd_of(scaler, seen)
    if stats is None:
        return refusal(node, "the deviation is not divided by sqrt(variance + constant epsilon)")
    variance, epsilon, scale = stats
    if not variance_of(variance, view, seen):
        return refusal(node, "the divisor is not the population variance of each group")
    site = site_on_view(view, FAMILY, node.outputs[0], [*seen.nodes, node], epsilon)
    if isinstance(site, str):
        return refusal(node, site)
    if scale != 1.0:
        site.gamma = np.full(view.channels, scale)
    return site
