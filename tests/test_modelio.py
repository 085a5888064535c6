"""Model loading: weights survive the opset upgrade and shape inference byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gn_deploy.modelio import SOURCE_OPSET, load_model


def test_weights_survive_upgrade_and_inference(tmp_path: Path) -> None:
    weight = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)  # 2 KiB
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Unsqueeze", ["m"], ["y"], axes=[0]),
        ],  # axes: an opset-11 attribute
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)

    model = load_model(path, infer_shapes=True, min_opset=21)

    assert model.opset_imports[""] == 21 and model.meta[SOURCE_OPSET] == 11
    np.testing.assert_array_equal(model.graph.initializers["w"].const_value.numpy(), weight)
    unsqueeze = next(n for n in model.graph if n.op_type == "Unsqueeze")
    assert len(unsqueeze.inputs) == 2, "the converter moved axes to an input"
    assert list(unsqueeze.outputs[0].shape) == [1, 3, 8], "shapes were inferred"
