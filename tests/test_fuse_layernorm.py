"""GN spelled as LayerNormalization over the grouped view, from both torch exporters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from gn_deploy.fusion import fuse_model, inspect_model
from gn_deploy.reference import relative_l2
from tests.helpers import export_torch, op_counts, run_ort

torch = pytest.importorskip("torch", reason="exports LayerNorm-based GN models with torch")
F = torch.nn.functional
EXPORTERS = [("torchscript", 17), ("dynamo", 18)]
G, C, H, W = 4, 8, 5, 6


class GroupedLayerNorm(torch.nn.Module):
    def __init__(self, five_d: bool, weight: str) -> None:
        super().__init__()
        self.five_d = five_d
        shape = (C // G, H, W)
        torch.manual_seed(0)
        if weight == "per-channel":
            self.w = torch.nn.Parameter(
                (torch.rand(C // G) + 0.5)[:, None, None].expand(shape).clone()
            )
            self.b = torch.nn.Parameter(torch.randn(C // G)[:, None, None].expand(shape).clone())
        elif weight == "per-position":
            self.w = torch.nn.Parameter(torch.rand(shape) + 0.5)
            self.b = torch.nn.Parameter(torch.randn(shape))
        else:
            self.w = self.b = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        w = b = None
        if self.five_d:
            if self.w is not None:
                w, b = self.w, self.b
            y = F.layer_norm(x.view(n, G, C // G, H, W), (C // G, H, W), w, b)
        else:
            if self.w is not None:
                w, b = self.w.reshape(-1), self.b.reshape(-1)
            y = F.layer_norm(x.view(n, G, -1), (C // G * H * W,), w, b)
        return y.view(n, C, H, W)


@pytest.mark.parametrize("weight", ["none", "per-channel"])
@pytest.mark.parametrize("five_d", [False, True], ids=["flat", "5d"])
@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_fused(tmp_path: Path, exporter: str, opset: int, five_d: bool, weight: str) -> None:
    src = export_torch(GroupedLayerNorm(five_d, weight), tmp_path / "m.onnx", exporter, opset)
    out = tmp_path / "f.onnx"
    (site,) = fuse_model(src, out).sites
    assert (site.status, site.family, site.num_groups) == ("fused", "layernorm-grouped", G)
    assert op_counts(out) == {"GroupNormalization": 1}
    onnx.checker.check_model(onnx.load(out), full_check=True)
    x = np.random.default_rng(3).standard_normal((2, C, H, W)).astype(np.float32) * 2 + 1
    assert relative_l2(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5


@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_per_position_affine_is_refused(tmp_path: Path, exporter: str, opset: int) -> None:
    src = export_torch(GroupedLayerNorm(True, "per-position"), tmp_path / "m.onnx", exporter, opset)
    (site,) = inspect_model(src).sites
    assert site.status == "refused" and "per-position affine" in site.reason
