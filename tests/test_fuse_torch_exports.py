"""Fusion of real torch exporter output: both exporters, opsets 11-21, both targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from gn_deploy.fusion import FuseReport, fuse_model
from gn_deploy.reference import relative_l2, tolerance_for
from tests.conftest import Exporter
from tests.helpers import op_counts, run_ort, run_reference, spatial_shape

EXPORTERS = [
    ("torchscript", 11),
    ("torchscript", 13),
    ("torchscript", 17),
    ("dynamo", 18),
    ("dynamo", 21),
]
# (rank, channels, groups, affine): 4-D, no affine, 3-D, 5-D, G = 1, G = C
CASES = [
    (4, 8, 4, True),
    (4, 8, 4, False),
    (3, 6, 3, True),
    (5, 8, 2, True),
    (4, 6, 1, True),
    (4, 6, 6, True),
]
GN_PER_MODEL = 2


def _case_id(case: tuple) -> str:
    rank, c, g, affine = case
    return f"{rank}d-C{c}-G{g}{'' if affine else '-noaffine'}"


def _input(rank: int, channels: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (2, channels, *spatial_shape(rank))
    return (
        rng.standard_normal(shape) * 2 + rng.uniform(-2, 2, (1, channels) + (1,) * (rank - 2))
    ).astype(np.float32)


def _fuse_case(
    exported: Exporter, out: Path, exporter: str, opset: int, case: tuple, target: str
) -> tuple[Path, FuseReport, np.ndarray]:
    """Export the case, fuse it for ``target`` into ``out``; the source, report and an input."""
    rank, channels, groups, affine = case
    src = exported(exporter, opset, rank, channels, groups, affine)
    return src, fuse_model(src, out, target=target), _input(rank, channels)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_onnx_target(
    exported: Exporter, tmp_path: Path, exporter: str, opset: int, case: tuple
) -> None:
    out = tmp_path / "fused.onnx"
    src, report, x = _fuse_case(exported, out, exporter, opset, case, "onnx")

    counts = op_counts(out)
    assert counts["GroupNormalization"] == GN_PER_MODEL
    assert counts["InstanceNormalization"] == 0
    assert report.count("refused") == 0
    onnx.checker.check_model(onnx.load(out), full_check=True)
    (expected,) = run_ort(src, {"x": x})
    (actual,) = run_ort(out, {"x": x})
    assert relative_l2(actual, expected) <= tolerance_for("float32")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_trt_plugin_target(
    exported: Exporter, tmp_path: Path, exporter: str, opset: int, case: tuple
) -> None:
    out = tmp_path / "fused.onnx"
    src, report, x = _fuse_case(exported, out, exporter, opset, case, "trt-plugin")

    counts = op_counts(out)
    assert counts["FusedGroupNorm"] == GN_PER_MODEL
    assert counts["Sigmoid"] == 0, "the SiLU after the first GN must be folded"
    assert {n for n in counts if n not in ("FusedGroupNorm", "Add")} == set()
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    activations = sorted(
        onnx.helper.get_attribute_value(a)
        for n in model.graph.node
        if n.op_type == "FusedGroupNorm"
        for a in n.attribute
        if a.name == "activation"
    )
    assert activations == [0, 1]
    assert [s.activation for s in report.sites] == ["silu", "none"]
    (expected,) = run_ort(src, {"x": x})
    (actual,) = run_reference(out, {"x": x})
    assert relative_l2(actual, expected) <= tolerance_for("float32")


@pytest.mark.parametrize(("exporter", "opset"), [("torchscript", 17), ("dynamo", 18)])
def test_dynamic_batch(exported: Exporter, tmp_path: Path, exporter: str, opset: int) -> None:
    src = exported(exporter, opset, dynamic=True)
    out = tmp_path / "fused.onnx"
    fuse_model(src, out, target="onnx")
    assert op_counts(out)["GroupNormalization"] == GN_PER_MODEL
    x = _input(4, 8)[:1]
    assert relative_l2(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5


def test_report_records_each_site(exported: Exporter, tmp_path: Path) -> None:
    src = exported("torchscript", 17)
    report = fuse_model(src, tmp_path / "fused.onnx", target="trt-plugin")
    first, second = report.sites
    assert (first.num_groups, first.channels, first.activation) == (4, 8, "silu")
    assert second.epsilon == pytest.approx(1e-3)
    assert first.status == "fused" and first.rel_l2 is not None and first.rel_l2 < 1e-5
    assert {"InstanceNormalization", "Sigmoid"} <= {
        name.split("/")[-1].split("_")[0] for name in first.nodes
    }


def test_channels_last_marks_every_plugin_op(
    exported: Exporter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gn_deploy.cli import main

    src, out = exported("dynamo", 18), tmp_path / "fused.onnx"
    argv = ["fuse", str(src), "-o", str(out), "--target", "trt-plugin", "--channels-last"]
    assert main(argv) == 0
    graph = onnx.load(out, load_external_data=False).graph
    ops = [n for n in graph.node if n.op_type == "FusedGroupNorm"]
    assert len(ops) == GN_PER_MODEL
    for node in ops:
        assert {a.name: a for a in node.attribute}["channels_last"].i == 1
    x = _input(4, 8)
    assert relative_l2(run_reference(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5
    # the standard op has no such attribute
    assert main(["fuse", str(src), "-o", str(tmp_path / "o.onnx"), "--channels-last"]) == 2
    assert "--target fused-op" in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()
