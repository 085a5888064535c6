"""Small walks over an onnx-ir graph that recognizers share."""

from __future__ import annotations

import onnx_ir as ir


def is_op(node: ir.Node | None, op_type: str) -> bool:
    return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")


def sole_consumer(value: ir.Value) -> ir.Node | None:
    """The one node reading ``value``, if exactly one does and it is not a graph output."""
    if value.is_graph_output():
        return None
    users = {use.node for use in value.uses()}
    return users.pop() if len(users) == 1 else None


def skip_identity_up(value: ir.Value, path: list[ir.Node]) -> ir.Value:
    """Follow ``value`` back through Identity nodes, recording them in ``path``."""
    node = value.producer()
    while is_op(node, "Identity") and node is not None and node.inputs[0] is not None:
        path.append(node)
        value = node.inputs[0]
        node = value.producer()
    return value


def skip_identity_down(value: ir.Value, path: list[ir.Node]) -> ir.Value:
    """Follow ``value`` forward through sole-consumer Identity nodes, recording them."""
    node = sole_consumer(value)
    while is_op(node, "Identity") and node is not None:
        path.append(node)
        value = node.outputs[0]
        node = sole_consumer(value)
    return value


def other_input(node: ir.Node, value: ir.Value) -> ir.Value | None:
    """For a binary node, the input that is not ``value``."""
    a, b = node.inputs[0], node.inputs[1]
    if a is value:
        return b
    if b is value:
        return a
    return None


def opset_version(model: ir.Model, domain: str = "") -> int:
    return model.opset_imports.get(domain, model.opset_imports.get("ai.onnx", 0))
