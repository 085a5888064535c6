"""Moments with the affine folded into the statistics, as TensorFlow writes GN.

    inv = gamma * rsqrt(var + eps);   y = xg * inv + (beta - mean * inv)

Keras' GroupNormalization spells the shift ``-mean * inv + beta``; tf.nn.batch_normalization
(tensorflow-addons' GroupNormalization) ``beta - mean * inv``. Usually channels last through
tf2onnx; the matchers are those of :mod:`gn_deploy.fusion.recognizers.moments`.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import fold
from gn_deploy.fusion.graph import is_op
from gn_deploy.fusion.recognizers.grouping import (
    BOTH_LAYOUTS,
    GroupedView,
    first_site,
    grouped_views,
    refusal,
    site_on_view,
    views_only,
)
from gn_deploy.fusion.recognizers.moments import (
    Matched,
    count_refusal,
    mean_of,
    reduces_groups,
    rstd_of,
    variance_of,
)
from gn_deploy.fusion.site import GroupNormSite, Refusal

FAMILY = "moments-folded"


def _operands(node: ir.Node | None, op_type: str) -> list[tuple[ir.Value, ir.Value]]:
    """Both orders of a binary ``op_type`` node's inputs ([] when it is not one)."""
    if not is_op(node, op_type) or node is None or None in (node.inputs[0], node.inputs[1]):
        return []
    a, b = node.inputs[0], node.inputs[1]
    assert a is not None and b is not None
    return [(a, b), (b, a)]


def _per_channel(const: np.ndarray | None, view: GroupedView) -> np.ndarray | None:
    """A [C] vector from a folded gamma/beta constant ([C] in group order, [G], or scalar)."""
    if const is None:
        return None
    flat = np.asarray(const, np.float64).reshape(-1)
    if flat.size == view.channels:
        return flat
    if flat.size == view.num_groups:
        return np.repeat(flat, view.channels // view.num_groups)
    if flat.size == 1:
        return np.full(view.channels, flat[0])
    return None


def _mean_times_inv(
    value: ir.Value | None, inv: ir.Value, seen: Matched, negated: bool
) -> ir.Value | None:
    """m for ``m * inv`` (``-m * inv`` or ``-(m * inv)`` when ``negated``)."""
    node = value.producer() if value is not None else None
    if negated and is_op(node, "Neg") and node is not None:
        mean = _mean_times_inv(node.inputs[0], inv, seen, negated=False)
        if mean is not None:
            seen.add(node)
        return mean
    for factor, other in _operands(node, "Mul"):
        if other is not inv:
            continue
        mean = factor
        if negated:
            neg = factor.producer()
            if not is_op(neg, "Neg") or neg is None:
                continue
            seen.add(neg)
            mean = neg.inputs[0]
        seen.add(node)
        return mean
    return None


def _shift(
    value: ir.Value, inv: ir.Value, seen: Matched
) -> tuple[ir.Value, ir.Value | None] | None:
    """(mean, beta or None) for ``beta - mean*inv``, ``-mean*inv + beta`` or ``-mean*inv``."""
    node = value.producer()
    if is_op(node, "Sub") and node is not None and node.inputs[0] is not None:
        mean = _mean_times_inv(node.inputs[1], inv, seen, negated=False)
        if mean is not None:
            seen.add(node)
            return mean, node.inputs[0]
    for term, beta in _operands(node, "Add"):
        mean = _mean_times_inv(term, inv, seen, negated=True)
        if mean is not None:
            seen.add(node)
            return mean, beta
    mean = _mean_times_inv(value, inv, seen, negated=True)
    return (mean, None) if mean is not None else None


def _gamma_and_rstd(
    inv: ir.Value, view: GroupedView, seen: Matched
) -> tuple[ir.Value | None, ir.Value]:
    """(gamma or None, rstd) for ``inv``: ``rstd * gamma``, ``rstd`` broadcast by Expand
    (TensorFlow's optimizer turns a multiplication by a gamma of ones into one), or ``rstd``."""
    node = inv.producer()
    if is_op(node, "Expand") and node is not None and node.inputs[0] is not None:
        seen.add(node)
        return None, node.inputs[0]
    for a, b in _operands(node, "Mul"):
        if fold(b, view.x) is not None:  # gamma, maybe reshaped to a shape read off x
            seen.add(node)
            return b, a
    return None, inv


def recognize(node: ir.Node, opset: int) -> GroupNormSite | Refusal | None:
    """Anchor: the final Add of ``xg * inv`` and the shift."""
    candidates = [
        (mul, inv, shift, view)
        for scaled, shift in _operands(node, "Add")
        for mul in [scaled.producer()]
        if mul is not None
        for grouped, inv in _operands(mul, "Mul")
        for view in views_only(grouped_views(grouped, BOTH_LAYOUTS))
    ]
    # Views the statistics are taken in first: when none is a site, theirs is the telling reason.
    candidates.sort(key=lambda c: not _statistics_in(c[1], c[2], c[3]))
    return first_site(_site(node, *candidate) for candidate in candidates)


def _statistics_in(inv: ir.Value, shift: ir.Value, view: GroupedView) -> bool:
    shifted = _shift(shift, inv, Matched())
    return shifted is not None and reduces_groups(shifted[0], view)


def _site(
    node: ir.Node, mul: ir.Node, inv: ir.Value, shift: ir.Value, view: GroupedView
) -> GroupNormSite | Refusal | None:
    seen = Matched()
    gamma_value, rstd = _gamma_and_rstd(inv, view, seen)
    stats = rstd_of(rstd, seen)
    shifted = _shift(shift, inv, seen)
    if stats is None or shifted is None:
        return None  # not this pattern at all
    variance, epsilon, scale = stats
    mean, beta_value = shifted
    if not mean_of(mean, view, seen):
        reason = count_refusal(mean, view)
        return refusal(node, reason or "the subtracted statistic is not the mean of each group")
    if not variance_of(variance, view, seen):
        return refusal(node, "the divisor is not the population variance of each group")
    gamma = _per_channel(fold(gamma_value, view.x), view) if gamma_value is not None else None
    beta = _per_channel(fold(beta_value, view.x), view) if beta_value is not None else None
    if (gamma_value is not None and gamma is None) or (beta_value is not None and beta is None):
        return refusal(node, "the folded gamma/beta are not per-channel constants")
    site = site_on_view(view, FAMILY, node.outputs[0], [*seen.nodes, mul, node], epsilon)
    if isinstance(site, str):
        return refusal(node, site)
    site.gamma = scale * (gamma if gamma is not None else np.ones(view.channels))
    site.beta = beta
    return site
