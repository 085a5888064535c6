"""fp16 graphs (onnxconverter-common output, guided-diffusion upcasts) and GroupNormalization-18."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import group_norm_reference, relative_l2, tolerance_for
from tests.conftest import Exporter
from tests.helpers import export_torch, op_counts, run_ort, run_reference

TARGETS = [("onnx", "GroupNormalization", run_ort), ("trt-plugin", "FusedGroupNorm", run_reference)]


def _x(shape: tuple[int, ...], dtype: type = np.float16) -> np.ndarray:
    rng = np.random.default_rng(4)
    return (rng.standard_normal(shape) * 2 + 1).astype(dtype)


@pytest.mark.parametrize(("target", "op", "run"), TARGETS, ids=[t[0] for t in TARGETS])
def test_float16_converter_output(
    exported: Exporter, tmp_path: Path, target: str, op: str, run
) -> None:
    from onnxconverter_common import float16

    src = tmp_path / "fp16.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(exported("torchscript", 17))), src)
    out = tmp_path / "f.onnx"
    report = fuse_model(src, out, target=target)
    assert report.count("fused") == 2
    assert op_counts(out)[op] == 2 and op_counts(out)["InstanceNormalization"] == 0
    onnx.checker.check_model(onnx.load(out), full_check=True)
    x = _x((2, 8, 5, 6))
    (got,), (want,) = run(out, {"x": x}), run_ort(src, {"x": x})
    assert got.dtype == np.float16
    assert relative_l2(got, want) <= tolerance_for("float16")


@pytest.mark.parametrize(("target", "op", "run"), TARGETS, ids=[t[0] for t in TARGETS])
@pytest.mark.parametrize(("exporter", "opset"), [("torchscript", 17), ("dynamo", 18)])
def test_upcast_casts_are_folded(
    tmp_path: Path, exporter: str, opset: int, target: str, op: str, run
) -> None:
    torch = pytest.importorskip("torch", reason="exports the upcast pattern with torch")

    class Upcast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gn = torch.nn.GroupNorm(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gn(x.float()).type(x.dtype)

    src = export_torch(Upcast().eval(), tmp_path / "m.onnx", exporter, opset, dtype="float16")
    out = tmp_path / "f.onnx"
    fuse_model(src, out, target=target)
    assert op_counts(out) == {op: 1}, "the two Casts are folded into the fused op"
    x = _x((2, 8, 5, 6))
    (got,), (want,) = run(out, {"x": x}), run_ort(src, {"x": x})
    assert got.dtype == np.float16
    assert relative_l2(got, want) <= tolerance_for("float16")


def test_group_normalization_18_becomes_per_channel(tmp_path: Path) -> None:
    scale = np.array([0.5, 2.0], np.float32)
    bias = np.array([1.0, -1.0], np.float32)
    node = helper.make_node(
        "GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-4
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 3, 4])],
        [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(bias, "b")],
    )
    src = tmp_path / "gn18.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), src)
    out = tmp_path / "f.onnx"
    (site,) = fuse_model(src, out).sites
    assert (site.status, site.family) == ("fused", "onnx-groupnorm-18")
    model = onnx.load(out)
    assert model.opset_import[0].version == 21
    (gn,) = model.graph.node
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(inits[gn.input[1]], np.repeat(scale, 3))
    x = _x((2, 6, 3, 4), np.float32)
    expected = group_norm_reference(x, 2, 1e-4, np.repeat(scale, 3), np.repeat(bias, 3))
    assert relative_l2(run_ort(out, {"x": x})[0], expected) <= 1e-5


@pytest.mark.parametrize(
    ("target", "op"), [("onnx", "GroupNormalization"), ("trt-plugin", "FusedGroupNorm")]
)
@pytest.mark.parametrize(("exporter", "opset"), [("torchscript", 17), ("dynamo", 18)])
def test_bfloat16_graphs(tmp_path: Path, exporter: str, opset: int, target: str, op: str) -> None:
    """torch writes bf16 InstanceNormalization, which ONNX Runtime rejects: verification and
    parity run on ONNX's reference evaluator."""
    torch = pytest.importorskip("torch", reason="exports a bf16 model with torch")
    import ml_dtypes

    from tests.helpers import two_gn_module

    module = two_gn_module(8, 4, 4, True).to(torch.bfloat16)
    src = export_torch(module, tmp_path / "bf16.onnx", exporter, opset, dtype="bfloat16")
    out = tmp_path / "f.onnx"
    report = fuse_model(src, out, target=target)
    assert report.count("fused") == 2, report.table()
    assert op_counts(out)[op] == 2 and op_counts(out)["InstanceNormalization"] == 0
    x = _x((2, 8, 5, 6), ml_dtypes.bfloat16)
    (got,), (want,) = run_reference(out, {"x": x}), run_reference(src, {"x": x})
    assert got.dtype == ml_dtypes.bfloat16
    assert relative_l2(got, want) <= tolerance_for("bfloat16")


@pytest.mark.parametrize(("target", "op", "run"), TARGETS, ids=[t[0] for t in TARGETS])
@pytest.mark.parametrize("source", ["paddle", "torchscript"])
def test_float16_converter_keeping_float32_io(
    exported: Exporter, tmp_path: Path, source: str, target: str, op: str, run
) -> None:
    # keep_io_types: x arrives fp32 and is cast to fp16 once for each consumer (the grouped
    # Reshape, the Shape that restores it); the output is cast back, with a stale fp16
    # value_info left for it
    from onnxconverter_common import float16

    fp32 = (
        onnx.load(Path(__file__).parent / "data" / "paddle_groupnorm.onnx")
        if source == "paddle"
        else onnx.load(exported("torchscript", 17))
    )
    src = tmp_path / "fp16io32.onnx"
    onnx.save(float16.convert_float_to_float16(fp32, keep_io_types=True), src)
    out = tmp_path / "f.onnx"
    report = fuse_model(src, out, target=target)
    sites = 1 if source == "paddle" else 2
    assert report.count("fused") == len(report.sites) == sites
    assert op_counts(out)[op] == sites and op_counts(out)["InstanceNormalization"] == 0
    onnx.checker.check_model(str(out), full_check=True)
    x = _x((2, 8, 5, 6), np.float32)
    (got,), (want,) = run(out, {"x": x}), run_ort(src, {"x": x})
    assert got.dtype == np.float32
    assert relative_l2(got, want) <= tolerance_for("float16")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_grouped_shape_read_from_the_graph_input(tmp_path: Path, dtype: str) -> None:
    # TorchScript traces sizes from where they were read: a GN whose input is h = f(x) may
    # restore h's shape with Shape(x), the model's input, which the verifier must stand in for
    pytest.importorskip("torch", reason="exporter tests need torch")
    from tests.helpers import two_gn_module

    src = export_torch(
        two_gn_module(8, 4, 4, True),
        tmp_path / "m.onnx",
        "torchscript",
        17,
        dynamic=True,
        dtype=dtype,
    )
    model = onnx.load(src)
    shapes = [n for n in model.graph.node if n.op_type == "Shape" and "gn2" in n.name]
    assert len(shapes) == 1 and shapes[0].input[0] != "x"
    shapes[0].input[0] = "x"  # h + x has the shape of x
    onnx.save(model, src)
    out = tmp_path / "f.onnx"
    report = fuse_model(src, out, target="onnx")
    assert report.count("fused") == len(report.sites) == 2, [s.reason for s in report.sites]
    x = _x((3, 8, 5, 6), getattr(np, dtype))
    (got,), (want,) = run_ort(out, {"x": x}), run_ort(src, {"x": x})
    assert relative_l2(got.astype(np.float64), want.astype(np.float64)) <= tolerance_for(dtype)
