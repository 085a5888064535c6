"""Property: random GN-like graphs, some perturbed so they are no longer GN.

For every graph: a site is fused exactly when the construction is a group normalization, and the
fused model computes what the original computes (on fresh random inputs) whatever was fused.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import relative_l2
from tests.helpers import op_counts, run_ort


@dataclass(frozen=True)
class Recipe:
    groups: int
    per_group: int
    spatial: tuple[int, ...]
    mean_axes: str  # group | with-channels | subset
    variance: str  # centred | ex2 | unbiased | uncentred
    rstd: str  # div-sqrt | reciprocal | pow | scaled
    epsilon: float
    restore: str  # shape | constant | wrong
    affine: str  # none | per-channel | per-position
    mean_is_output: bool

    @property
    def is_group_norm(self) -> bool:
        return (
            self.mean_axes == "group"
            and self.variance in ("centred", "ex2")
            and self.restore != "wrong"
        )

    @property
    def fusable(self) -> bool:
        """GN, and nothing outside the site reads its intermediates."""
        return self.is_group_norm and not self.mean_is_output


recipes = st.builds(
    Recipe,
    groups=st.sampled_from([1, 2, 3]),
    per_group=st.sampled_from([1, 2]),
    spatial=st.sampled_from([(4,), (2, 3)]),
    mean_axes=st.sampled_from(["group", "group", "with-channels", "subset"]),
    variance=st.sampled_from(["centred", "ex2", "unbiased", "uncentred"]),
    rstd=st.sampled_from(["div-sqrt", "reciprocal", "pow", "scaled"]),
    epsilon=st.sampled_from([1e-5, 1e-3]),
    restore=st.sampled_from(["shape", "constant", "wrong"]),
    affine=st.sampled_from(["none", "per-channel", "per-position"]),
    mean_is_output=st.booleans(),
)


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        out = f"v{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def build(r: Recipe) -> onnx.ModelProto:
    c = r.groups * r.per_group
    shape = [2, c, *r.spatial]
    hw = int(np.prod(r.spatial))
    g = _Graph()
    # A 4-D grouped view [N, G, C/G, HW] lets a "subset" reduction exist.
    xg = g.op("Reshape", ["x", g.const("gshape", np.array([0, r.groups, r.per_group, hw]))])
    axes = {"group": [2, 3], "with-channels": [1, 2, 3], "subset": [3]}[r.mean_axes]
    axes_c = g.const("axes", np.array(axes, np.int64))
    mean = g.op("ReduceMean", [xg, axes_c], keepdims=1)
    dev = g.op("Sub", [xg, mean])
    if r.variance == "centred":
        var = g.op("ReduceMean", [g.op("Mul", [dev, dev]), axes_c], keepdims=1)
    elif r.variance == "ex2":
        mean_sq = g.op("ReduceMean", [g.op("Mul", [xg, xg]), axes_c], keepdims=1)
        var = g.op("Sub", [mean_sq, g.op("Mul", [mean, mean])])
    elif r.variance == "unbiased":
        count = r.per_group * hw
        total = g.op("ReduceSum", [g.op("Mul", [dev, dev]), axes_c], keepdims=1)
        var = g.op("Div", [total, g.const("n1", np.array(count - 1 or 1, np.float32))])
    else:
        var = g.op("ReduceMean", [g.op("Mul", [xg, xg]), axes_c], keepdims=1)
    shifted = g.op("Add", [var, g.const("eps", np.array(r.epsilon, np.float32))])
    if r.rstd == "div-sqrt":
        normalized = g.op("Div", [dev, g.op("Sqrt", [shifted])])
    elif r.rstd == "reciprocal":
        normalized = g.op("Mul", [dev, g.op("Reciprocal", [g.op("Sqrt", [shifted])])])
    elif r.rstd == "pow":
        normalized = g.op(
            "Mul", [g.op("Pow", [shifted, g.const("p", np.array(-0.5, np.float32))]), dev]
        )
    else:
        rstd = g.op("Div", [g.const("two", np.array(2.0, np.float32)), g.op("Sqrt", [shifted])])
        normalized = g.op("Mul", [dev, rstd])
    if r.restore == "shape":
        y = g.op("Reshape", [normalized, g.op("Shape", ["x"])])
    elif r.restore == "constant":
        y = g.op("Reshape", [normalized, g.const("back", np.array(shape, np.int64))])
    else:
        y = g.op("Reshape", [normalized, g.const("flat", np.array([2, -1], np.int64))])
    rng = np.random.default_rng(0)
    if r.affine != "none" and r.restore != "wrong":
        wshape = [c, 1] if r.affine == "per-channel" else [c, hw]
        if len(r.spatial) == 2:
            wshape = [c, 1, 1] if r.affine == "per-channel" else [c, *r.spatial]
        w = g.const("w", rng.uniform(0.5, 1.5, wshape).astype(np.float32))
        y = g.op(
            "Add", [g.op("Mul", [y, w]), g.const("b", rng.normal(size=wshape).astype(np.float32))]
        )
    outputs = [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)]
    if r.mean_is_output:
        outputs.append(helper.make_tensor_value_info(mean, TensorProto.FLOAT, None))
    graph = helper.make_graph(
        g.nodes,
        "gn_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        outputs,
        g.inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe=recipes, seed=st.integers(0, 2**16))
def test_fused_iff_group_norm_and_always_equal(recipe: Recipe, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "m.onnx", Path(tmp) / "f.onnx"
        onnx.save(build(recipe), src)
        report = fuse_model(src, out, target="onnx") if recipe.is_group_norm else None
        if report is None:  # not a GN: fuse must find nothing to fuse
            from gn_deploy.fusion import inspect_model

            assert all(s.status == "refused" for s in inspect_model(src).sites), recipe
            return
        fused = op_counts(out)["GroupNormalization"]
        assert fused == (1 if recipe.fusable else 0), (recipe, report.sites)
        shape = (2, recipe.groups * recipe.per_group, *recipe.spatial)
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-3, 3)).astype(
            np.float32
        )
        for got, want in zip(run_ort(out, {"x": x}), run_ort(src, {"x": x}), strict=True):
            assert relative_l2(got, want) <= 1e-5, recipe
