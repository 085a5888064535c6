"""Constant folding sees through the spellings exporters use for shapes and scales."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from gn_deploy.fusion.constants import Dim, fold, fold_ints


def _graph_value(builder) -> tuple[ir.Value, ir.Value]:
    x = ir.Value(name="x", shape=ir.Shape(["N", 8, 5, "W"]), type=ir.TensorType(ir.DataType.FLOAT))
    return x, builder(x)


def _const(arr: np.ndarray) -> ir.Value:
    return ir.node("Constant", [], attributes={"value": ir.tensor(arr)}).outputs[0]


def test_concat_of_shape_slices_keeps_runtime_dims() -> None:
    def build(x: ir.Value) -> ir.Value:
        shape = ir.node("Shape", [x]).outputs[0]
        batch = ir.node("Slice", [shape, _const(np.array([0])), _const(np.array([1]))]).outputs[0]
        return ir.node(
            "Concat", [batch, _const(np.array([4])), _const(np.array([-1]))], attributes={"axis": 0}
        ).outputs[0]

    x, v = _graph_value(build)
    assert fold_ints(v, anchor=x) == [Dim(0), 4, -1]
    assert fold_ints(v) is None, "without the anchor the run-time batch is unknown"


def test_scalar_gather_of_a_runtime_dim() -> None:
    """torch's ``x.shape[0]``: a Gather with a scalar index picks one run-time dim."""

    def build(x: ir.Value) -> ir.Value:
        shape = ir.node("Shape", [x]).outputs[0]
        batch = ir.node("Gather", [shape, _const(np.array(0))]).outputs[0]
        return ir.node("Unsqueeze", [batch, _const(np.array([0]))]).outputs[0]

    x, v = _graph_value(build)
    assert fold_ints(v, anchor=x) == [Dim(0)]


def test_expand_of_castlike_scalar() -> None:
    def build(x: ir.Value) -> ir.Value:
        one = ir.node("CastLike", [_const(np.array(1.0, np.float64)), x]).outputs[0]
        return ir.node("Expand", [one, _const(np.array([4]))]).outputs[0]

    _, v = _graph_value(build)
    out = fold(v)
    assert out is not None and out.dtype == np.float32 and out.tolist() == [1.0] * 4


def test_unsqueeze_with_axes_input_and_attribute() -> None:
    w = _const(np.arange(3, dtype=np.float32))
    by_input = ir.node("Unsqueeze", [w, _const(np.array([1, 2]))]).outputs[0]
    by_attr = ir.node("Unsqueeze", [w], attributes={"axes": [1, 2]}).outputs[0]
    assert fold(by_input).shape == (3, 1, 1)
    assert fold(by_attr).shape == (3, 1, 1)


def test_non_constant_is_none() -> None:
    x, v = _graph_value(lambda x: ir.node("Relu", [x]).outputs[0])
    assert fold(v) is None
    assert fold(x) is None
