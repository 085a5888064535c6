"""Spellings of torch's InstanceNormalization sandwich that the exporters (and paddle) write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import group_norm_reference, relative_l2
from tests.helpers import op_counts, run_ort

N, C, H, W, G = 2, 6, 4, 5, 3


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _ones_zeros(spelling: str) -> list[onnx.NodeProto]:
    """Nodes producing 'ones' and 'zeros' of length G in the given spelling."""
    if spelling == "constant":
        return [_const("ones", np.ones(G, np.float32)), _const("zeros", np.zeros(G, np.float32))]
    if spelling == "expand-castlike":
        return [
            _const("one", np.array(1.0, np.float64)),
            _const("zero", np.array(0.0, np.float64)),
            _const("g", np.array([G], np.int64)),
            helper.make_node("CastLike", ["one", "x"], ["one_f"]),
            helper.make_node("CastLike", ["zero", "x"], ["zero_f"]),
            helper.make_node("Expand", ["one_f", "g"], ["ones"]),
            helper.make_node("Expand", ["zero_f", "g"], ["zeros"]),
        ]
    if spelling == "constantofshape-cast":
        return [
            _const("g", np.array([G], np.int64)),
            helper.make_node(
                "ConstantOfShape",
                ["g"],
                ["ones64"],
                value=numpy_helper.from_array(np.array([1.0], np.float64)),
            ),
            helper.make_node(
                "ConstantOfShape",
                ["g"],
                ["zeros64"],
                value=numpy_helper.from_array(np.array([0.0], np.float64)),
            ),
            helper.make_node("Cast", ["ones64"], ["ones"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["zeros64"], ["zeros"], to=TensorProto.FLOAT),
        ]
    raise ValueError(spelling)


def _group_shape(spelling: str) -> list[onnx.NodeProto]:
    """Nodes producing 'gshape' for the first Reshape."""
    if spelling == "constant":
        return [_const("gshape", np.array([0, G, -1], np.int64))]
    return [  # Concat(Shape(x)[0:1], [G], [-1]), as the dynamo exporter writes for dynamic N
        helper.make_node("Shape", ["x"], ["xs"]),
        _const("s0", np.array([0], np.int64)),
        _const("s1", np.array([1], np.int64)),
        helper.make_node("Slice", ["xs", "s0", "s1"], ["batch"]),
        _const("gg", np.array([G], np.int64)),
        _const("m1", np.array([-1], np.int64)),
        helper.make_node("Concat", ["batch", "gg", "m1"], ["gshape"], axis=0),
    ]


def _model(ones: str, gshape: str, restore: str, identities: bool) -> onnx.ModelProto:
    nodes = _ones_zeros(ones) + _group_shape(gshape)
    first, norm_in, norm_out = "g0", "g0", "n0"
    nodes.append(helper.make_node("Reshape", ["x", "gshape"], [first]))
    if identities:
        nodes.append(helper.make_node("Identity", [first], ["g1"]))
        norm_in = "g1"
    nodes.append(
        helper.make_node("InstanceNormalization", [norm_in, "ones", "zeros"], ["n0"], epsilon=1e-4)
    )
    if identities:
        nodes.append(helper.make_node("Identity", ["n0"], ["n1"]))
        norm_out = "n1"
    if restore == "shape":
        nodes.append(helper.make_node("Shape", ["x"], ["back"]))
    else:
        nodes.append(_const("back", np.array([N, C, H, W], np.int64)))
    nodes.append(helper.make_node("Reshape", [norm_out, "back"], ["r"]))
    nodes.append(helper.make_node("Mul", ["r", "w"], ["m"]))
    nodes.append(helper.make_node("Add", ["b", "m"], ["y"]))  # bias first: either order
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, (C, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.uniform(-1, 1, (C, 1, 1)).astype(np.float32), "b"),
    ]
    graph = helper.make_graph(
        nodes,
        "sandwich",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, C, H, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N, C, H, W])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("identities", [False, True], ids=["plain", "identity"])
@pytest.mark.parametrize("restore", ["shape", "constant"])
@pytest.mark.parametrize("gshape", ["constant", "concat-of-shape"])
@pytest.mark.parametrize("ones", ["constant", "expand-castlike", "constantofshape-cast"])
def test_spelling_fuses_exactly(
    tmp_path: Path, ones: str, gshape: str, restore: str, identities: bool
) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(_model(ones, gshape, restore, identities), src)
    out = tmp_path / "f.onnx"
    report = fuse_model(src, out, target="onnx")
    (site,) = report.sites
    assert (site.status, site.num_groups, site.epsilon) == ("fused", G, pytest.approx(1e-4))
    assert op_counts(out) == {"GroupNormalization": 1}
    x = np.random.default_rng(1).standard_normal((N, C, H, W)).astype(np.float32) * 3 + 1
    model = onnx.load(src)
    w, b = (numpy_helper.to_array(i).reshape(-1) for i in model.graph.initializer)
    expected = group_norm_reference(x, G, 1e-4, w, b)
    assert relative_l2(run_ort(out, {"x": x})[0], expected) <= 1e-5


@pytest.mark.parametrize("target", ["onnx", "trt-plugin"])
def test_channels_lost_by_shape_inference_come_from_the_convolution(
    tmp_path: Path, target: str
) -> None:
    # BiT's "same" padding (timm, transformers): a Pad whose pads are computed at run time,
    # then a pool; ONNX shape inference loses every dim of the GN's input, channels included
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((C, 4, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0, G, -1], np.int64), "gshape"),
        numpy_helper.from_array(np.ones(G, np.float32), "ones"),
        numpy_helper.from_array(np.zeros(G, np.float32), "zeros"),
        numpy_helper.from_array((rng.random((C, 1, 1)) + 0.5).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.standard_normal((C, 1, 1)).astype(np.float32), "beta"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [  # pads of zeros, computed from x's shape through float: nothing for inference
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Cast", ["xs"], ["xsf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xsf", "zero"], ["zf"]),
        helper.make_node("Cast", ["zf"], ["z"], to=TensorProto.INT64),
        helper.make_node("Concat", ["z", "z"], ["pads"], axis=0),
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Pad", ["c", "pads"], ["padded"]),
        helper.make_node("MaxPool", ["padded"], ["h"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["h", "gshape"], ["grouped"]),
        helper.make_node("InstanceNormalization", ["grouped", "ones", "zeros"], ["normed"]),
        helper.make_node("Shape", ["h"], ["hs"]),
        helper.make_node("Reshape", ["normed", "hs"], ["back"]),
        helper.make_node("Mul", ["back", "gamma"], ["scaled"]),
        helper.make_node("Add", ["scaled", "beta"], ["y"]),
    ]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, "h", "w"])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "bit", [x_info], [y_info], inits)
    src = tmp_path / "bit.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    out = tmp_path / "f.onnx"
    report = fuse_model(src, out, target=target)
    assert report.count("fused") == len(report.sites) == 1, [s.reason for s in report.sites]
    assert op_counts(out)["InstanceNormalization"] == 0
    if target == "onnx":
        x = rng.standard_normal((N, 4, H, W)).astype(np.float32)
        assert relative_l2(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5
