"""A batch reshaped away before a GN and back after it (jax2onnx's jax.vmap) is taken into the
site only when the ops around it move no element."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import group_norm_reference, relative_l2
from tests.helpers import op_counts, run_ort


def _vmapped_gn(path: Path, perm: list[int]) -> Path:
    """x [N, 8, 5, 6] → Unsqueeze(1) → Transpose(perm) → Reshape [-1, ...] → hand-written GN
    (4 groups) → Reshape to the transposed shape → Squeeze(1)."""
    moved = [[1, 1, 8, 5, 6][p] for p in perm]
    ints = {
        "one": [1],
        "grouped": [0, 4, -1],
        "axes": [2],
        "collapsed": [-1, *moved[2:]],
    }
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()]
    inits.append(numpy_helper.from_array(np.array(1e-5, np.float32), "eps"))
    nodes = [
        helper.make_node("Unsqueeze", ["x", "one"], ["u"]),
        helper.make_node("Transpose", ["u"], ["t"], perm=perm),
        helper.make_node("Shape", ["t"], ["t_shape"]),
        helper.make_node("Reshape", ["t", "collapsed"], ["v"]),
        helper.make_node("Shape", ["v"], ["v_shape"]),
        helper.make_node("Reshape", ["v", "grouped"], ["xg"]),
        helper.make_node("ReduceMean", ["xg", "axes"], ["m"]),
        helper.make_node("Sub", ["xg", "m"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"], ["var"]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["std"]),
        helper.make_node("Div", ["d", "std"], ["n"]),
        helper.make_node("Reshape", ["n", "v_shape"], ["gn"]),
        helper.make_node("Reshape", ["gn", "t_shape"], ["restored"]),
        helper.make_node("Squeeze", ["restored", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "vmapped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *moved[2:]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("perm", "left"),
    [
        ([0, 1, 2, 3, 4], {}),
        ([0, 1, 2, 4, 3], {"Unsqueeze": 1, "Transpose": 1, "Reshape": 2, "Squeeze": 1}),
    ],
    ids=["identity-transpose", "moving-transpose"],
)
def test_round_trip_taken_in_only_when_nothing_moves(
    tmp_path: Path, perm: list[int], left: dict[str, int]
) -> None:
    src = _vmapped_gn(tmp_path / "m.onnx", perm)
    out = tmp_path / "f.onnx"
    (site,) = fuse_model(src, out).sites
    assert (site.status, site.num_groups, site.channels) == ("fused", 4, 8)
    counts = op_counts(out)
    assert counts["GroupNormalization"] == 1
    assert {k: v for k, v in counts.items() if k not in ("GroupNormalization", "Shape")} == left
    x = np.random.default_rng(0).standard_normal((3, 8, 5, 6)).astype(np.float32) * 2 + 1
    want = group_norm_reference(np.transpose(x[:, None], perm)[:, 0], 4, 1e-5)
    assert relative_l2(run_ort(out, {"x": x})[0], want) <= 1e-5
