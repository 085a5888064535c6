"""Suspicious GN parameters: a warning naming node and value, faithful numerics, --strict fails."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gn_deploy.cli import main
from gn_deploy.fusion import fuse_model, inspect_model
from gn_deploy.reference import relative_l2
from tests.helpers import run_ort


def _sandwich(path: Path, epsilon: float) -> Path:
    """torch's InstanceNormalization sandwich with a given epsilon."""
    nodes = [
        helper.make_node("Reshape", ["x", "gshape"], ["g"], name="gn_in"),
        helper.make_node(
            "InstanceNormalization", ["g", "ones", "zeros"], ["n"], name="gn_norm", epsilon=epsilon
        ),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Reshape", ["n", "s"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([0, 2, -1], np.int64), "gshape"),
        numpy_helper.from_array(np.ones(2, np.float32), "ones"),
        numpy_helper.from_array(np.zeros(2, np.float32), "zeros"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _group_norm_21(path: Path, scale_len: int) -> Path:
    node = helper.make_node(
        "GroupNormalization", ["x", "s", "b"], ["y"], name="gn21", num_groups=2, epsilon=1e-5
    )
    inits = [
        numpy_helper.from_array(np.ones(scale_len, np.float32), "s"),
        numpy_helper.from_array(np.zeros(scale_len, np.float32), "b"),
    ]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), path)
    return path


def test_huge_epsilon_warns_and_fuses_faithfully(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _sandwich(tmp_path / "m.onnx", 1e20)
    out = tmp_path / "f.onnx"
    assert main(["fuse", str(src), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert "gn_in" in line and "1e+20" in line
    x = np.random.default_rng(0).standard_normal((1, 4, 3, 3)).astype(np.float32)
    assert relative_l2(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5


def test_strict_turns_the_warning_into_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _sandwich(tmp_path / "m.onnx", 1e20)
    out = tmp_path / "f.onnx"
    assert main(["fuse", str(src), "-o", str(out), "--strict"]) == 1
    assert "--strict" in capsys.readouterr().err
    assert not out.exists()
    assert main(["inspect", str(src), "--strict"]) == 1


@pytest.mark.parametrize("epsilon", [-1e-5, math.nan])
def test_plugin_refuses_what_it_cannot_express(tmp_path: Path, epsilon: float) -> None:
    src = _sandwich(tmp_path / "m.onnx", epsilon)
    (row,) = inspect_model(src, target="trt-plugin").sites
    assert row.status == "refused" and "finite epsilon >= 0" in row.reason
    assert row.warnings and "epsilon" in row.warnings[0]


def test_negative_epsilon_is_kept_faithfully_for_onnx(tmp_path: Path) -> None:
    src = _sandwich(tmp_path / "m.onnx", -1e-5)
    report = fuse_model(src, tmp_path / "f.onnx")
    (row,) = report.sites
    assert row.status == "fused" and row.epsilon == pytest.approx(-1e-5)
    assert row.warnings == ["epsilon is negative (-1e-05)"]


def test_wrong_scale_length_is_refused_with_a_warning(tmp_path: Path) -> None:
    src = _group_norm_21(tmp_path / "m.onnx", 3)
    (row,) = inspect_model(src, target="trt-plugin").sites
    assert row.status == "refused" and "expected 4" in row.reason
    assert row.warnings == [row.reason]
