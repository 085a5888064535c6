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
_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE)


class Matched:
    """The nodes a match walked through, each once, in the order met."""

    def __init__(self) -> None:
        self.nodes: list[ir.Node] = []

    def add(self, node: ir.Node | None) -> None:
        if node is not None and node not in self.nodes:
            self.nodes.append(node)

    def merge(self, other: Matched) -> None:
        for node in other.nodes:
            self.add(node)


def _producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    node = value.producer() if value is not None else None
    return node if is_op(node, op_type) else None


def _float_cast(node: ir.Node | None) -> bool:
    """A Cast to a floating-point type: a statistic changes precision, not value."""
    return is_op(node, "Cast") and node is not None and node.attributes.get_int("to") in _FLOATS


def _through_views(value: ir.Value | None, seen: Matched) -> ir.Value | None:
    while value is not None:
        node = value.producer()
        if not (_float_cast(node) or any(is_op(node, op) for op in _STATS_VIEWS)):
            return value
        assert node is not None
        seen.add(node)
        value = node.inputs[0]
    return value


def _reads(value: ir.Value | None, source: ir.Value, seen: Matched) -> bool:
    """``value`` is ``source`` or ``source`` cast to a float type (tf.nn.weighted_moments takes
    the statistics of an fp16 tensor in float32)."""
    if value is source:
        return True
    node = value.producer() if value is not None else None
    if _float_cast(node) and node is not None and node.inputs[0] is source:
        seen.add(node)
        return True
    return False


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
    if node is None or _reduce_axes(node, view.rank) != group_axes(view):
        return False
    if not _reads(node.inputs[0], source, seen):
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
    node = _producer(_div_no_nan(_through_views(value, trial), trial), "Div")
    if node is None:
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
    seen.merge(trial)
    seen.add(product)
    seen.add(node)
    return source


def _div_no_nan(value: ir.Value | None, seen: Matched) -> ir.Value | None:
    """``n / d`` for tf.math.divide_no_nan's ``Where(Equal(d, 0), 0, n / d)``, recording the
    guard; ``value`` itself when it is not one."""
    node = value.producer() if value is not None else None
    if not is_op(node, "Where") or node is None or fold_float(node.inputs[1]) != 0.0:
        return value
    div, equal = _producer(node.inputs[2], "Div"), _producer(node.inputs[0], "Equal")
    if div is None or equal is None or equal.inputs[0] is not div.inputs[1]:
        return value
    if fold_float(equal.inputs[1]) != 0.0:
        return value
    seen.add(equal)
    seen.add(node)
    return node.inputs[2]


def _holds(value: ir.Value | None, expected: float) -> bool:
    """``value`` is a float constant, of any shape, every element of which is ``expected`` as
    its dtype stores it."""
    constant = fold(value)
    if constant is None or constant.size == 0 or constant.dtype.kind in "biuO":
        return False  # an integer "count" would hold 1/count as 0
    stored = np.asarray(expected).astype(constant.dtype).astype(np.float64)
    return bool(np.allclose(constant.astype(np.float64), stored, rtol=1e-6, atol=0.0))


def _sum_over_count(
    value: ir.Value | None, source: ir.Value, view: GroupedView, seen: Matched
) -> bool:
    """``value`` is ReduceSum(source) / count or ReduceSum(source) * (1 / count), maybe through
    divide_no_nan: count is a constant equal to the group's element count everywhere (a scalar,
    or weighted_moments' sum of weights that tf2onnx folds into an initializer when shapes are
    static)."""
    expected = _group_count(view)
    trial = Matched()
    value = _div_no_nan(value, trial)
    node = value.producer() if value is not None else None
    if expected is None or node is None or node.op_type not in ("Div", "Mul"):
        return False
    a, b = node.inputs[0], node.inputs[1]
    if is_op(node, "Div"):
        pairs = [(a, b, float(expected))]
    else:
        pairs = [(a, b, 1.0 / expected), (b, a, 1.0 / expected)]
    for total, count, wanted in pairs:
        if _holds(count, wanted) and _group_reduce(total, source, view, "ReduceSum", trial):
            trial.add(node)
            seen.merge(trial)
            return True
    return False


def reduces_groups(value: ir.Value | None, view: GroupedView) -> bool:
    """``value`` is a ReduceMean, or a ReduceSum divided by something, over the group's axes of
    ``view``: the view the statistic is taken in, whether or not it is a mean."""
    seen = Matched()
    value = _div_no_nan(_through_views(value, seen), seen)
    node = _producer(value, "Div")
    if node is not None:
        return _group_sum(node.inputs[0], view, seen) is not None
    reduce = _producer(value, "ReduceMean")
    return reduce is not None and _reduce_axes(reduce, view.rank) == group_axes(view)


def count_refusal(value: ir.Value | None, view: GroupedView) -> str | None:
    """Why ``value``, a sum over each group divided by a constant, is no mean: the constant is
    not the group's element count (None when ``value`` is no such division)."""
    value = _div_no_nan(_through_views(value, Matched()), Matched())
    node = _producer(value, "Div")
    expected = _group_count(view)
    if node is None or expected is None or _group_sum(node.inputs[0], view, Matched()) is None:
        return None
    constant = fold(node.inputs[1])
    if constant is None or constant.dtype.kind in "biuO" or _holds(node.inputs[1], expected):
        return None
    divisors = np.unique(constant.astype(np.float64)).tolist()
    shown = ", ".join(f"{d:g}" for d in divisors[:3]) + (", ..." if len(divisors) > 3 else "")
    return f"the mean divides each group's sum by {shown}, not its {expected} elements"


def _mean(value: ir.Value | None, source: ir.Value, view: GroupedView, seen: Matched) -> bool:
    """``value`` is the mean of ``source`` over the group: ReduceMean, ReduceSum / count, or
    a weighted mean with weights of ones."""
    value = _through_views(value, seen)
    if _group_reduce(value, source, view, "ReduceMean", seen):
        return True
    weighted = Matched()
    if _reads(_weighted_mean_source(value, view, weighted), source, weighted):
        seen.merge(weighted)
        return True
    return _sum_over_count(value, source, view, seen)


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


def _centring(value: ir.Value | None) -> tuple[ir.Node | None, ir.Node | None]:
    """(Sub, None) for ``xg - m``; (Sub, Where) for ``Where(c, 0, xg - m)``, Equinox's guard."""
    node = value.producer() if value is not None else None
    if is_op(node, "Where") and node is not None and fold_float(node.inputs[1]) == 0.0:
        return _producer(node.inputs[2], "Sub"), node
    return (node, None) if is_op(node, "Sub") else (None, None)


def _extrema_equal(value: ir.Value | None, view: GroupedView, seen: Matched) -> bool:
    """``value`` is ``ReduceMin(xg) == ReduceMax(xg)`` over each group (either order)."""
    node = _producer(value, "Equal")
    if node is None:
        return False
    for low, high in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        trial = Matched()
        if _group_reduce(low, view.grouped, view, "ReduceMin", trial) and _group_reduce(
            high, view.grouped, view, "ReduceMax", trial
        ):
            trial.add(node)
            seen.merge(trial)
            return True
    return False


def _finite(value: ir.Value | None, mean: ir.Value | None, seen: Matched) -> bool:
    """``value`` is ``m - m == 0``, true exactly where the mean ``m`` is finite."""
    node = _producer(value, "Equal")
    sub = _producer(node.inputs[0], "Sub") if node is not None else None
    if node is None or sub is None or fold_float(node.inputs[1]) != 0.0:
        return False
    if mean is None or sub.inputs[0] is not mean or sub.inputs[1] is not mean:
        return False
    seen.add(sub)
    seen.add(node)
    return True


def _constant_group(cond: ir.Value | None, sub: ir.Node, view: GroupedView, seen: Matched) -> bool:
    """``cond`` holds for the groups whose minimum is their maximum, maybe and-ed with the
    mean's finiteness: such a group's deviations are exactly 0, so forcing them to 0 is GN."""
    trial = Matched()
    node = _producer(cond, "And")
    tests = [cond] if node is None else [node.inputs[0], node.inputs[1]]
    trial.add(node)
    extrema = [t for t in tests if _extrema_equal(t, view, trial)]
    rest = [t for t in tests if t not in extrema]
    if len(extrema) != 1 or not all(_finite(t, sub.inputs[1], trial) for t in rest):
        return False
    seen.merge(trial)
    return True


def deviation_of(value: ir.Value | None, view: GroupedView, seen: Matched) -> bool:
    """``value`` is ``xg - mean(xg)``, maybe with constant groups' deviations forced to 0."""
    trial = Matched()
    sub, guard = _centring(value)
    if sub is None or not _reads(sub.inputs[0], view.grouped, trial):
        return False
    if not mean_of(sub.inputs[1], view, trial):
        return False
    if guard is not None and not _constant_group(guard.inputs[0], sub, view, trial):
        return False
    trial.add(sub)
    trial.add(guard)
    seen.merge(trial)
    return True


def _unclamped(value: ir.Value | None, seen: Matched) -> ir.Value | None:
    """v for ``Max(v, 0)`` (either order) or ``Clip(v, 0)``: a variance clamped against
    rounding; else ``value``."""
    node = value.producer() if value is not None else None
    if node is None or node.domain not in ("", "ai.onnx") or not node.inputs:
        return value
    pairs: list[tuple[ir.Value | None, ir.Value | None]] = []
    if node.op_type == "Max" and len(node.inputs) == 2:
        pairs = [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])]
    elif node.op_type == "Clip" and (len(node.inputs) == 2 or node.inputs[2] is None):
        pairs = [(node.inputs[0], node.inputs[1])]
    for inner, bound in pairs:
        if fold_float(bound) == 0.0:
            seen.add(node)
            return inner
    return value


def _second_moment_variance(node: ir.Node, view: GroupedView, seen: Matched) -> bool:
    """``node`` is E[xg²] − E[xg]²."""
    mean_sq = _through_views(node.inputs[0], seen)
    reduce = mean_sq.producer() if mean_sq is not None else None
    squared = reduce.inputs[0] if reduce is not None and reduce.inputs else None
    if squared is None or not _reads(_square_of(squared, seen), view.grouped, seen):
        return False
    if not _mean(mean_sq, squared, view, seen):
        return False
    mean = _square_of(node.inputs[1], seen)
    return mean is not None and mean_of(mean, view, seen)


def _two_pass_variance(value: ir.Value, node: ir.Node, view: GroupedView, seen: Matched) -> bool:
    """``value`` (made by ``node``) is the mean of (xg − mean)²."""
    squared = node.inputs[0] if node.op_type in ("ReduceMean", "Div", "Mul") else None
    if is_op(node, "Div") or is_op(node, "Mul"):  # ReduceSum(d²) / count
        inner = _producer(node.inputs[0], "ReduceSum")
        squared = inner.inputs[0] if inner is not None else None
    if is_op(node, "Div"):  # weighted mean of d² (weights of ones)
        squared = _weighted_mean_source(value, view, Matched()) or squared
    deviation = _square_of(squared, seen)
    if deviation is None or not deviation_of(deviation, view, seen):
        return False
    return squared is not None and _mean(value, squared, view, seen)


def variance_of(value: ir.Value | None, view: GroupedView, seen: Matched) -> bool:
    """``value`` is the population variance of each group (maybe clamped at 0, or through
    divide_no_nan)."""
    trial = Matched()
    value = _div_no_nan(_unclamped(_through_views(value, trial), trial), trial)
    node = value.producer() if value is not None else None
    if value is None or node is None:
        return False
    if is_op(node, "Sub"):
        found = _second_moment_variance(node, view, trial)
    else:
        found = _two_pass_variance(value, node, view, trial)
    if found:
        trial.add(node)
        seen.merge(trial)
    return found


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
    if node.inputs[0] is node.inputs[1]:  # a square, never the normalization
        return None
    pairs = [(node.inputs[0], node.inputs[1])]
    if node.op_type == "Mul":
        pairs.append((node.inputs[1], node.inputs[0]))
    subs = [(_centring(centred)[0], centred, scaler) for centred, scaler in pairs]
    candidates = [
        (sub, centred, scaler, view)
        for sub, centred, scaler in subs
        if sub is not None
        for view in views_only(grouped_views(sub.inputs[0], BOTH_LAYOUTS))
    ]
    # Views the centring is right for first: when none is a site, theirs is the telling reason.
    candidates.sort(key=lambda c: not deviation_of(c[1], c[3], Matched()))
    return first_site(_site(node, *candidate) for candidate in candidates)


def _deviation_refusal(node: ir.Node, sub: ir.Node, view: GroupedView) -> Refusal | None:
    """Why ``sub``, the centring of a GN-like candidate, is not ``xg - mean(xg)`` (None when
    the candidate is not GN-like at all)."""
    if deviation_of(sub.outputs[0], view, Matched()):
        return refusal(node, "the centred values are replaced (Where) for groups other than "
                       "the constant ones")  # fmt: skip
    mean = sub.inputs[1].producer() if sub.inputs[1] is not None else None
    if not is_op(mean, "ReduceMean") or mean is None:
        return None
    axes = _reduce_axes(mean, view.rank)
    return refusal(
        node,
        f"the mean reduces axes {sorted(axes or [])} of the grouped "
        f"view, not the group's axes {sorted(group_axes(view))}",
    )


def _site(
    node: ir.Node, sub: ir.Node, centred: ir.Value, scaler: ir.Value, view: GroupedView
) -> GroupNormSite | Refusal | None:
    seen = Matched()
    if not deviation_of(centred, view, seen):
        return _deviation_refusal(node, sub, view)
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
