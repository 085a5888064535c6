"""A batch reshaped away before a site and back after it, as jax2onnx writes ``jax.vmap``.

    x0 [N, ...] → Reshape / Unsqueeze / identity Transpose / Expand to its own shape → x
    x → GN → y → Reshape / Squeeze → y0

Equinox's GroupNorm is per sample: under vmap, jax2onnx folds the batch away and restores it
around it. These ops move no element, so where x0 has x's shape but for the batch axis, GN of x0
is y0 (read in x0's shape): the fused op reads x0 and writes y0. The shape arithmetic that fed
the removed reshapes goes with them.
"""

from __future__ import annotations

import onnx_ir as ir

from gn_deploy.fusion.graph import is_op, sole_consumer
from gn_deploy.fusion.site import GroupNormSite

_RESHAPES = ("Reshape", "Squeeze", "Unsqueeze", "Identity")


def _named(shape: ir.Shape | None) -> bool:
    """Every dim of ``shape`` is an int or a named symbol (names equal sizes)."""
    return shape is not None and all(
        isinstance(d, int) or (isinstance(d, ir.SymbolicDim) and d.value is not None) for d in shape
    )


def _moves_nothing(node: ir.Node | None) -> bool:
    """``node`` keeps its first input's elements in order: a reshape, an identity Transpose or
    an Expand to the input's own shape."""
    if node is None or node.domain not in ("", "ai.onnx") or not node.inputs:
        return False
    source = node.inputs[0]
    if source is None:
        return False
    if node.op_type in _RESHAPES:
        return True
    if is_op(node, "Transpose"):
        perm = node.attributes.get_ints("perm")
        return perm is not None and list(perm) == list(range(len(perm)))
    if is_op(node, "Expand"):
        out = node.outputs[0].shape
        return _named(source.shape) and _named(out) and source.shape == out
    return False


def _per_sample(value: ir.Value) -> tuple[int, ...] | None:
    """The static shape of one sample of ``value`` (all but axis 0), else None."""
    shape = value.shape
    if shape is None or len(shape) < 2 or not all(isinstance(d, int) for d in list(shape)[1:]):
        return None
    return tuple(int(d) for d in list(shape)[1:])  # type: ignore[arg-type]


def _prefix(x: ir.Value, sample: tuple[int, ...]) -> tuple[ir.Value, list[ir.Node]]:
    """The highest value that reaches ``x`` through ops moving nothing and has its samples'
    shape, and those ops."""
    best: tuple[ir.Value, list[ir.Node]] = (x, [])
    walked: list[ir.Node] = []
    value, node = x, x.producer()
    while _moves_nothing(node) and node is not None and node.inputs[0] is not None:
        walked.append(node)
        value, node = node.inputs[0], node.inputs[0].producer()
        if _per_sample(value) == sample:
            best = (value, list(walked))
    return best


def _suffix(y: ir.Value, sample: tuple[int, ...]) -> tuple[ir.Value, list[ir.Node]]:
    """The lowest value that ``y`` reaches through sole-consumer ops moving nothing and that
    has x's samples' shape, and those ops."""
    best: tuple[ir.Value, list[ir.Node]] = (y, [])
    walked: list[ir.Node] = []
    value, node = y, sole_consumer(y)
    while _moves_nothing(node) and node is not None and node.inputs[0] is value:
        walked.append(node)
        value = node.outputs[0]
        if _per_sample(value) == sample:
            best = (value, list(walked))
        node = sole_consumer(value)
    return best


def _shape_arithmetic(nodes: list[ir.Node], x: ir.Value) -> list[ir.Node] | None:
    """The nodes outside ``nodes`` that compute their other inputs from shapes (of x or of
    values inside) and constants; None when one of those reads data."""
    inside = set(nodes)
    found: dict[ir.Node, None] = {}
    stack = [v for n in nodes for v in n.inputs if v is not None and v is not x]
    stack = [v for v in stack if v.producer() not in inside]
    while stack:
        value = stack.pop()
        node = value.producer()
        if value is x or node in inside or (node is None and value.const_value is None):
            return None  # data, not shapes
        if node is None or node in found:
            continue
        found[node] = None
        if not is_op(node, "Shape"):
            stack.extend(v for v in node.inputs if v is not None)
        elif not _shape_known_inside(node.inputs[0], x, inside):
            return None
    return list(found)


def _shape_known_inside(value: ir.Value | None, x: ir.Value, inside: set[ir.Node]) -> bool:
    """A Shape of ``value`` reads what the site knows: x, its own values or a graph input (the
    verifier runs the site from x alone)."""
    if value is None:
        return False
    if value is x:
        return True
    node = value.producer()
    return node in inside if node is not None else value.const_value is None


def _closed(nodes: list[ir.Node], output: ir.Value) -> bool:
    """No value made inside ``nodes`` but ``output`` is read outside them or by the graph."""
    inside = set(nodes)
    return all(
        value is output
        or (not value.is_graph_output() and all(u.node in inside for u in value.uses()))
        for node in nodes
        for value in node.outputs
    )


def drop_batch_round_trip(site: GroupNormSite) -> None:
    """Extend ``site`` over a batch reshaped away before it and back after it."""
    sample = _per_sample(site.x)
    if sample is None or site.view_shape is not None:
        return
    x0, before = _prefix(site.x, sample)
    y0, after = _suffix(site.output, sample)
    if not before and not after:
        return
    core = [*site.nodes, *before, *after]
    helpers = _shape_arithmetic(core, x0)
    if helpers is None:
        return
    nodes = [*site.nodes, *before, *helpers, *after]
    if not _closed(nodes, y0):
        return
    site.x, site.output = x0, y0
    site.nodes = nodes
