"""Evaluate the small constant subgraphs around a GN site: shapes, axes, scales, epsilons.

Exporters spell the same constant many ways (an initializer, a ``Constant`` node, ``Expand`` of
a ``CastLike``, a ``Concat`` of ``Shape(x)`` slices); recognizers ask :func:`fold` for its value
and never look at the spelling. Dimensions of the site input that are only known at run time
come back as :class:`Dim` entries in an object array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

# Tensors larger than this are weights, not the shapes and scales recognizers need.
MAX_FOLD_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Dim:
    """The run-time size of axis ``axis`` of the anchor value (the site input)."""

    axis: int


def fold(value: ir.Value | None, anchor: ir.Value | None = None) -> np.ndarray | None:
    """The value of ``value`` if constants (and the shape of ``anchor``) determine it."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is not None:
        if tensor.size > MAX_FOLD_ELEMENTS:
            return None
        return np.asarray(tensor.numpy())
    node = value.producer()
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Shape":
        return _shape_of(node, anchor)
    rule = _RULES.get(node.op_type)
    if rule is None:
        return None
    inputs = [fold(v, anchor) if v is not None else None for v in node.inputs]
    if any(a is None for a in inputs[: _REQUIRED.get(node.op_type, len(inputs))]):
        return None
    try:
        result = rule(node, inputs)
    except (ValueError, IndexError, TypeError):
        return None
    if result is None or result.size > MAX_FOLD_ELEMENTS:
        return None
    if result.dtype == object and not any(isinstance(v, Dim) for v in result.flat):
        return result.astype(np.int64)  # only the static part of a shape is left: plain ints
    return result


def fold_ints(value: ir.Value | None, anchor: ir.Value | None = None) -> list[int | Dim] | None:
    """A 1-D (or scalar) integer constant as a Python list, run-time dims as :class:`Dim`."""
    arr = fold(value, anchor)
    if arr is None or arr.ndim > 1:
        return None
    if arr.dtype != object and not np.issubdtype(arr.dtype, np.integer):
        return None
    return [v if isinstance(v, Dim) else int(v) for v in arr.reshape(-1).tolist()]


def fold_float(value: ir.Value | None) -> float | None:
    """A constant that holds a single number (any shape with one element)."""
    arr = fold(value)
    if arr is None or arr.size != 1 or arr.dtype == object:
        return None
    return float(arr.reshape(-1)[0])


# Ops whose output has the shape of their first input.
_SHAPE_KEEPING = ("Cast", "Identity", "CastLike")


def shape_root(value: ir.Value) -> ir.Value:
    """The value ``value``'s shape comes from, through Cast and Identity nodes."""
    node = value.producer()
    while node is not None and node.op_type in _SHAPE_KEEPING and node.domain in ("", "ai.onnx"):
        value = node.inputs[0]
        if value is None:
            break
        node = value.producer()
    return value


def _same_shape(a: ir.Value, b: ir.Value | None) -> bool:
    """Whether ``a`` certainly has ``b``'s shape (the same value, or casts of one value: an fp16
    converter that keeps fp32 inputs casts x once for each of its consumers)."""
    return b is not None and (a is b or shape_root(a) is shape_root(b))


def _same_symbol(dim: object, anchor: ir.Value | None, axis: int, rank: int) -> bool:
    """Whether a named dim is the anchor's at the same axis (shape inference names a dim once
    and carries the name: Shape(x) may stand for the shape of x + h)."""
    shape = anchor.shape if anchor is not None else None
    return (
        shape is not None
        and len(shape) == rank
        and isinstance(dim, ir.SymbolicDim)
        and dim.value is not None
        and shape[axis] == dim
    )


def _shape_of(node: ir.Node, anchor: ir.Value | None) -> np.ndarray | None:
    source = node.inputs[0]
    if source is None or source.shape is None:
        return None
    dims: list[int | Dim] = []
    for axis, dim in enumerate(source.shape):
        if isinstance(dim, int):
            dims.append(dim)
        elif _same_shape(source, anchor) or _same_symbol(dim, anchor, axis, len(source.shape)):
            dims.append(Dim(axis))
        else:
            return None
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(dims))
    out = np.empty(len(dims), dtype=object)
    out[:] = dims
    if all(isinstance(d, int) for d in dims):
        out = np.asarray(dims, dtype=np.int64)
    return out[slice(start, end)]


def _numeric(*arrays: np.ndarray) -> bool:
    return all(a.dtype != object for a in arrays)


def _axes(node: ir.Node, inputs: list[np.ndarray | None], index: int) -> list[int] | None:
    if len(inputs) > index and inputs[index] is not None:
        return [int(a) for a in np.asarray(inputs[index]).reshape(-1)]
    attr = node.attributes.get_ints("axes")
    return list(attr) if attr is not None else None


def _cast(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    (x,) = inputs[:1]
    assert x is not None
    to = ir.DataType(node.attributes.get_int("to", 1))
    if not _numeric(x):  # a shape with run-time dims: integer casts keep them
        return x if to.is_integer() else None
    return x.astype(to.numpy())


def _cast_like(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    x = inputs[0]
    target = node.inputs[1]
    assert x is not None
    if target is None or target.dtype is None or not _numeric(x):
        return None
    return x.astype(target.dtype.numpy())


def _unsqueeze(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    x = inputs[0]
    axes = _axes(node, inputs, 1)
    assert x is not None
    if axes is None:
        return None
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(sorted(a % rank for a in axes)))


def _squeeze(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    x = inputs[0]
    assert x is not None
    axes = _axes(node, inputs, 1)
    return np.squeeze(x, axis=None if axes is None else tuple(a % x.ndim for a in axes))


def _reshape(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    x, shape = inputs[0], inputs[1]
    assert x is not None and shape is not None
    if not _numeric(shape):
        return None
    dims = [int(d) if d != 0 else x.shape[i] for i, d in enumerate(shape.tolist())]
    return x.reshape(dims)


def _expand(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    x, shape = inputs[0], inputs[1]
    assert x is not None and shape is not None
    if not _numeric(shape):
        return None
    target = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))
    return np.broadcast_to(x, target).copy()


def _constant_of_shape(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    shape = inputs[0]
    assert shape is not None
    if not _numeric(shape):
        return None
    attr = node.attributes.get("value")
    fill = np.zeros(1, np.float32) if attr is None else np.asarray(attr.as_tensor().numpy())
    return np.full(tuple(int(d) for d in shape), fill.reshape(-1)[0], dtype=fill.dtype)


def _concat(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    arrays = [a for a in inputs if a is not None]
    axis = node.attributes.get_int("axis", 0)
    if any(a.dtype == object for a in arrays):
        out = np.concatenate([a.astype(object) for a in arrays], axis=axis)
        return out
    return np.concatenate(arrays, axis=axis)


def _gather(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    data, indices = inputs[0], inputs[1]
    assert data is not None and indices is not None
    taken = np.take(data, indices.astype(np.int64), axis=node.attributes.get_int("axis", 0))
    return np.asarray(taken, dtype=data.dtype)  # a scalar index into a shape gives a bare Dim


def _slice(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    data = inputs[0]
    assert data is not None
    if len(inputs) == 1:  # opset < 10: attributes
        starts = node.attributes.get_ints("starts")
        ends = node.attributes.get_ints("ends")
        axes = node.attributes.get_ints("axes")
        steps = None
    else:
        starts, ends = inputs[1], inputs[2]
        axes = inputs[3] if len(inputs) > 3 else None
        steps = inputs[4] if len(inputs) > 4 else None
    if starts is None or ends is None:
        return None
    starts_l = [int(s) for s in np.asarray(starts).reshape(-1)]
    ends_l = [int(e) for e in np.asarray(ends).reshape(-1)]
    axes_l = list(range(len(starts_l))) if axes is None else [int(a) for a in np.reshape(axes, -1)]
    steps_l = [1] * len(starts_l) if steps is None else [int(s) for s in np.reshape(steps, -1)]
    index = [slice(None)] * data.ndim
    for a, s, e, st in zip(axes_l, starts_l, ends_l, steps_l, strict=True):
        index[a % data.ndim] = slice(s, e, st)
    return data[tuple(index)]


def _range(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    start, limit, delta = (np.asarray(a).reshape(()) for a in inputs[:3] if a is not None)
    return np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta))


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray | None]:
    def rule(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
        a, b = inputs[0], inputs[1]
        assert a is not None and b is not None
        if not _numeric(a, b):
            return None
        return np.asarray(fn(a, b)).astype(np.result_type(a, b))

    return rule


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return np.asarray(np.trunc(a / b))
    return np.asarray(a / b)


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray | None]:
    def rule(node: ir.Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
        x = inputs[0]
        assert x is not None
        return np.asarray(fn(x)).astype(x.dtype) if _numeric(x) else None

    return rule


_RULES: dict[str, Callable[..., np.ndarray | None]] = {
    "Identity": lambda node, inputs: inputs[0],
    "Cast": _cast,
    "CastLike": _cast_like,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Expand": _expand,
    "ConstantOfShape": _constant_of_shape,
    "Concat": _concat,
    "Gather": _gather,
    "Slice": _slice,
    "Range": _range,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(_divide),
    "Neg": _unary(np.negative),
    "Sqrt": _unary(np.sqrt),
    "Reciprocal": _unary(np.reciprocal),
}

# How many leading inputs must fold for the rule to run (the rest are optional).
_REQUIRED = {"Unsqueeze": 1, "Squeeze": 1, "Slice": 1, "CastLike": 1}
