"""The float64 oracle against torch's group_norm, and its NaN containment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from gn_deploy.plugin_op import fused_group_norm
from gn_deploy.reference import group_norm_reference, relative_l2, tolerance_for
from tests.helpers import plugin_model, run_reference


@pytest.mark.parametrize(
    ("shape", "groups"), [((2, 6, 5), 3), ((1, 8, 3, 4), 8), ((2, 4, 2, 3, 2), 1)]
)
def test_matches_torch(shape: tuple[int, ...], groups: int) -> None:
    torch = pytest.importorskip("torch", reason="compares with torch.nn.functional.group_norm")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    expected = torch.nn.functional.group_norm(
        torch.from_numpy(x), groups, torch.from_numpy(gamma), torch.from_numpy(beta), 1e-5
    ).numpy()
    actual = group_norm_reference(x, groups, 1e-5, gamma, beta)
    assert relative_l2(actual, expected) < 1e-12


def test_silu_and_channels_last() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3, 6))
    nchw = group_norm_reference(x, 2, 1e-5, activation=1)
    nhwc = group_norm_reference(np.moveaxis(x, 1, -1), 2, 1e-5, activation=1, channel_axis=-1)
    assert np.allclose(np.moveaxis(nhwc, -1, 1), nchw)
    plain = group_norm_reference(x, 2, 1e-5)
    assert np.allclose(nchw, plain / (1 + np.exp(-plain)))


def test_nan_stays_in_its_group() -> None:
    x = np.random.default_rng(2).standard_normal((1, 4, 3, 3))
    x[0, 0, 1, 1] = np.nan
    y = group_norm_reference(x, 2, 1e-5)
    assert np.isnan(y[0, :2]).all()
    assert np.isfinite(y[0, 2:]).all()


def test_plugin_op_keeps_dtype_and_is_within_tolerance() -> None:
    x = np.random.default_rng(3).standard_normal((2, 8, 4, 4)).astype(np.float16)
    g, b = np.ones(8, np.float32), np.zeros(8, np.float32)
    y = fused_group_norm(x, g, b, 4, 1e-5, 1)
    assert y.dtype == np.float16
    assert relative_l2(y, group_norm_reference(x, 4, 1e-5, g, b, 1)) <= tolerance_for("float16")


def test_channels_last_attribute_changes_formats_not_values(tmp_path: Path) -> None:
    """The plugin op's channels_last picks TensorRT formats; ONNX's evaluator ignores it."""
    x = np.random.default_rng(1).standard_normal((1, 32, 4, 4)).astype(np.float32)
    results = []
    for flag in (0, 1):
        model = plugin_model(tmp_path / f"p{flag}.onnx", num_groups=8, epsilon=1e-5,
                             activation=1, channels_last=flag)  # fmt: skip
        results.append(run_reference(model, {"x": x})[0])
    graph = onnx.load(tmp_path / "p1.onnx").graph
    gamma, beta = (numpy_helper.to_array(t) for t in graph.initializer)
    expected = group_norm_reference(x, 8, 1e-5, gamma, beta, True)
    assert np.array_equal(results[0], results[1])
    assert relative_l2(results[1], expected) < tolerance_for("float32")


def test_invalid_groups() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        group_norm_reference(np.zeros((1, 6, 2)), 4, 1e-5)
