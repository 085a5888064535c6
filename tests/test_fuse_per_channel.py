"""GroupNorm with one group per channel on 1-D inputs (wav2vec2 / HuBERT feature encoders).

With G = C the grouped Reshapes change nothing: the dynamo exporter drops the one back, and
graph simplifiers (onnxslim here) drop both, leaving InstanceNormalization(x, ones, zeros)
followed by the affine Mul and Add. Each spelling is real exporter (and onnxslim) output.
An InstanceNorm as written (its own scale and bias, or no affine after it) stays as it is.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import relative_l2
from tests.helpers import op_counts, run_ort, run_reference

torch = pytest.importorskip("torch", reason="exporter tests need torch (gn-deploy[torch])")


def _encoder(norm: torch.nn.Module) -> torch.nn.Module:
    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 16, 10, stride=5, bias=False)
            self.norm = norm

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.gelu(self.norm(self.conv(x)))

    torch.manual_seed(0)
    module = Encoder().eval()
    if getattr(norm, "weight", None) is not None:
        torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
        torch.nn.init.uniform_(norm.bias, -0.5, 0.5)
    return module


def _export(module: torch.nn.Module, path: Path, exporter: str, slim: bool) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(1, 1, 400),),
            str(path),
            input_names=["x"],
            opset_version=18 if exporter == "dynamo" else 17,
            dynamo=exporter == "dynamo",
        )
    if slim:
        import onnxslim

        onnx.save(onnxslim.slim(onnx.load(path)), path)
    return path


@pytest.mark.parametrize("slim", [False, True], ids=["exported", "onnxslim"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize(
    ("target", "op", "run"),
    [("onnx", "GroupNormalization", run_ort), ("trt-plugin", "FusedGroupNorm", run_reference)],
    ids=["onnx", "trt-plugin"],
)
def test_group_norm_with_one_group_per_channel(
    tmp_path: Path, exporter: str, slim: bool, target: str, op: str, run
) -> None:
    src = _export(_encoder(torch.nn.GroupNorm(16, 16)), tmp_path / "enc.onnx", exporter, slim)
    out = tmp_path / "fused.onnx"
    report = fuse_model(src, out, target=target)
    assert report.count("fused") == len(report.sites) == 1
    counts = op_counts(out)
    assert counts[op] == 1 and counts["InstanceNormalization"] == 0
    onnx.checker.check_model(str(out), full_check=True)
    x = np.random.default_rng(1).standard_normal((1, 1, 400)).astype(np.float32)
    assert relative_l2(run(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5


@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_as_written_stays(tmp_path: Path, affine: bool) -> None:
    src = _export(
        _encoder(torch.nn.InstanceNorm1d(16, affine=affine)),
        tmp_path / "in.onnx",
        "torchscript",
        True,
    )
    before = Counter(n.op_type for n in onnx.load(src).graph.node)
    assert before["InstanceNormalization"] == 1
    out = tmp_path / "o.onnx"
    report = fuse_model(src, out, target="trt-plugin")
    assert report.count("fused") == 0
    assert op_counts(out) == before
