"""The float64 group-normalization oracle that every test and the verifier compare against."""

from __future__ import annotations

import numpy as np

ACTIVATIONS = {"none": 0, "silu": 1}


def group_norm_reference(
    x: np.ndarray,
    num_groups: int,
    epsilon: float,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    activation: int = 0,
    channel_axis: int = 1,
) -> np.ndarray:
    """Group normalization of ``x`` in float64.

    Groups are ``C // num_groups`` contiguous channels; statistics run over a group's channels
    and every position except the batch axis (axis 0); variance is the population variance.
    ``activation`` 1 applies SiLU after the affine.
    """
    x64 = np.moveaxis(np.asarray(x, dtype=np.float64), channel_axis, 1)
    n, c = x64.shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"channels {c} are not divisible by num_groups {num_groups}")
    grouped = x64.reshape(n, num_groups, -1)
    mean = grouped.mean(axis=2, keepdims=True)
    var = ((grouped - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((grouped - mean) / np.sqrt(var + epsilon)).reshape(x64.shape)
    bshape = (1, c) + (1,) * (x64.ndim - 2)
    if gamma is not None:
        y = y * np.asarray(gamma, dtype=np.float64).reshape(bshape)
    if beta is not None:
        y = y + np.asarray(beta, dtype=np.float64).reshape(bshape)
    if activation == ACTIVATIONS["silu"]:
        y = y * np.exp(-np.logaddexp(0.0, -y))  # y / (1 + e^-y), no overflow for y << 0
    elif activation != ACTIVATIONS["none"]:
        raise ValueError(f"unknown activation {activation}")
    return np.moveaxis(y, 1, channel_axis)


def relative_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64; inf when shapes differ or NaN appears."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape or np.isnan(a).any() != np.isnan(e).any():
        return float("inf")
    finite = ~np.isnan(e)
    if not np.array_equal(np.isnan(a), ~finite):
        return float("inf")
    diff = np.linalg.norm((a - e)[finite])
    norm = np.linalg.norm(e[finite])
    return float(diff / norm) if norm > 0 else float(diff)


TOLERANCES = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2, "float64": 1e-12}
# docs/design.md's bound on every element: |y - ref| / (1 + |ref|).
ELEMENT_TOLERANCES = {"float32": 2e-5, "float16": 2e-3, "bfloat16": 1e-2}


def max_element_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual − expected| / (1 + |expected|) in float64; inf where actual is not finite."""
    a = np.asarray(actual, dtype=np.float64)
    if not np.isfinite(a).all():
        return float("inf")
    e = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(a - e) / (1.0 + np.abs(e)), initial=0.0))


def tolerance_for(dtype: np.dtype | str) -> float:
    """Relative-L2 tolerance of docs/design.md for an I/O dtype name or numpy dtype."""
    name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    try:
        return TOLERANCES[name]
    except KeyError as exc:
        raise ValueError(f"no tolerance defined for dtype {name}") from exc
