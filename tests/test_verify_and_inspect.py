"""The verifier refuses wrong rewrites; `inspect` explains refused candidates and writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from gn_deploy.fusion import find_sites, fuse_model, inspect_model
from gn_deploy.fusion.emitters import FusedOpEmitter, OnnxEmitter
from gn_deploy.fusion.verify import verify_sites
from gn_deploy.modelio import load_model
from tests.conftest import Exporter


def test_verifier_catches_a_wrong_gamma(exported: Exporter) -> None:
    model = load_model(exported("torchscript", 17), infer_shapes=True)
    for emitter in (OnnxEmitter(), FusedOpEmitter()):
        sites, _ = find_sites(model, emitter)
        assert all(p.ok for p in verify_sites(sites, model, emitter))
        sites[0].gamma = sites[0].gamma_or_ones()[::-1].copy()
        sites[1].epsilon = 1.0
        first, second = verify_sites(sites, model, emitter)
        assert not first.ok and "relative L2" in first.reason
        assert not second.ok


def test_verifier_catches_wrong_groups(exported: Exporter) -> None:
    model = load_model(exported("dynamo", 18), infer_shapes=True)
    sites, _ = find_sites(model, OnnxEmitter())
    sites[0].num_groups = 2  # statistics across two groups instead of within each
    assert not verify_sites(sites, model, OnnxEmitter())[0].ok


def _sandwich(restore_shape: list[int], extra_consumer: bool) -> onnx.ModelProto:
    """An InstanceNormalization sandwich built by hand, optionally broken."""
    nodes = [
        helper.make_node("Reshape", ["x", "g_shape"], ["g"]),
        helper.make_node("InstanceNormalization", ["g", "ones", "zeros"], ["n"], epsilon=1e-5),
        helper.make_node("Reshape", ["n", "back"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_consumer:
        nodes.append(helper.make_node("Relu", ["g"], ["side"]))
        outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, None))
    inits = [
        helper.make_tensor("g_shape", TensorProto.INT64, [3], [0, 2, -1]),
        helper.make_tensor("ones", TensorProto.FLOAT, [2], [1, 1]),
        helper.make_tensor("zeros", TensorProto.FLOAT, [2], [0, 0]),
        helper.make_tensor("back", TensorProto.INT64, [4], restore_shape),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        outputs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_inspect_explains_refusals(tmp_path: Path) -> None:
    bad_shape = tmp_path / "bad_shape.onnx"
    onnx.save(_sandwich([1, 4, 9, 1], extra_consumer=False), bad_shape)
    shared = tmp_path / "shared.onnx"
    onnx.save(_sandwich([1, 4, 3, 3], extra_consumer=True), shared)
    good = tmp_path / "good.onnx"
    onnx.save(_sandwich([1, 4, 3, 3], extra_consumer=False), good)

    (row,) = inspect_model(bad_shape).sites
    assert row.status == "refused" and "does not restore the shape" in row.reason
    (row,) = inspect_model(shared).sites
    assert row.status == "refused" and "also read by Relu" in row.reason
    (row,) = inspect_model(good).sites
    assert row.status == "found" and row.num_groups == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad_shape.onnx",
        "good.onnx",
        "shared.onnx",
    ]


def test_hand_built_sandwich_fuses(tmp_path: Path) -> None:
    src = tmp_path / "good.onnx"
    onnx.save(_sandwich([1, 4, 3, 3], extra_consumer=False), src)
    out = tmp_path / "out.onnx"
    fuse_model(src, out, target="onnx")
    model = onnx.load(out)
    assert [n.op_type for n in model.graph.node] == ["GroupNormalization"]
    assert {i.name for i in model.graph.initializer} == {
        n for n in model.graph.node[0].input[1:]
    }, "dead constants are removed"
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((1, 4, 3, 3)).astype(np.float32)
    y = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
    from gn_deploy.reference import group_norm_reference, relative_l2

    assert relative_l2(y, group_norm_reference(x, 2, 1e-5)) <= 1e-5
