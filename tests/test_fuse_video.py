"""Video VAE decoders: GN over frames folded into the batch.

`x.permute(0, 2, 1, 3, 4).reshape(B * F, C, H, W)` then GroupNorm: with static shapes the
dynamo exporter folds that reshape into GN's own, so the grouped Reshape reads the 5-D
[B, F, C, H, W] tensor directly. Real dynamo exports, static and dynamic, both targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import relative_l2
from tests.helpers import op_counts, run_ort, run_reference

torch = pytest.importorskip("torch", reason="exporter tests need torch (gn-deploy[torch])")


class FramesGroupNorm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gn = torch.nn.GroupNorm(4, 16)
        torch.nn.init.uniform_(self.gn.weight, 0.5, 1.5)
        torch.nn.init.uniform_(self.gn.bias, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        return torch.nn.functional.silu(self.gn(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)))


def _export(path: Path, dynamic: bool) -> Path:
    import warnings

    torch.manual_seed(0)
    module = FramesGroupNorm().eval()
    extra = {}
    if dynamic:
        extra["dynamic_shapes"] = {"x": {0: torch.export.Dim("b"), 2: torch.export.Dim("f")}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(2, 16, 3, 8, 8),),
            str(path),
            input_names=["x"],
            opset_version=18,
            dynamo=True,
            **extra,
        )
    return path


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize(
    ("target", "op", "run"),
    [("onnx", "GroupNormalization", run_ort), ("trt-plugin", "FusedGroupNorm", run_reference)],
    ids=["onnx", "trt-plugin"],
)
def test_frames_folded_into_the_batch(
    tmp_path: Path, dynamic: bool, target: str, op: str, run
) -> None:
    src = _export(tmp_path / "video.onnx", dynamic)
    out = tmp_path / "fused.onnx"
    report = fuse_model(src, out, target=target)
    assert report.count("fused") == len(report.sites) == 1, [s.reason for s in report.sites]
    counts = op_counts(out)
    assert counts[op] == 1 and counts["InstanceNormalization"] == 0
    onnx.checker.check_model(str(out), full_check=True)
    x = np.random.default_rng(2).standard_normal((2, 16, 3, 8, 8)).astype(np.float32)
    assert relative_l2(run(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5
