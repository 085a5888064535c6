"""Hand-written GN (moments chains) from both torch exporters, and look-alikes that are not GN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from gn_deploy.fusion import fuse_model, inspect_model
from gn_deploy.reference import group_norm_reference, relative_l2
from tests.helpers import export_torch, handwritten_gn_module, op_counts, run_ort

torch = pytest.importorskip("torch", reason="exports hand-written GN models with torch")
EXPORTERS = [("torchscript", 17), ("dynamo", 18)]


def _check_fused(src: Path, out: Path, target: str = "onnx") -> None:
    report = fuse_model(src, out, target=target)
    (site,) = report.sites
    assert site.status == "fused" and site.family == "moments", site
    counts = op_counts(out)
    assert counts["GroupNormalization" if target == "onnx" else "FusedGroupNorm"] == 1
    assert not {"ReduceMean", "Sqrt", "Sub"} & set(counts), counts
    onnx.checker.check_model(onnx.load(out), full_check=True)
    x = np.random.default_rng(5).standard_normal((2, 8, 5, 6)).astype(np.float32) * 3 + 2
    if target == "onnx":
        assert relative_l2(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5


@pytest.mark.parametrize("norm", ["div", "rsqrt", "recip", "pow"])
@pytest.mark.parametrize("variance", ["var", "sq", "ex2"])
@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_spellings(tmp_path: Path, exporter: str, opset: int, variance: str, norm: str) -> None:
    src = export_torch(handwritten_gn_module(variance, norm), tmp_path / "m.onnx", exporter, opset)
    _check_fused(src, tmp_path / "f.onnx")


@pytest.mark.parametrize("affine", ["view", "none"])
@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_affine_spellings(tmp_path: Path, exporter: str, opset: int, affine: str) -> None:
    src = export_torch(
        handwritten_gn_module("sq", "rsqrt", affine), tmp_path / "m.onnx", exporter, opset
    )
    _check_fused(src, tmp_path / "f.onnx")


@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_five_dimensional_view(tmp_path: Path, exporter: str, opset: int) -> None:
    src = export_torch(
        handwritten_gn_module("var", "div", view5d=True), tmp_path / "m.onnx", exporter, opset
    )
    _check_fused(src, tmp_path / "f.onnx")


def test_plugin_target(tmp_path: Path) -> None:
    src = export_torch(handwritten_gn_module("ex2", "pow"), tmp_path / "m.onnx", "dynamo", 18)
    _check_fused(src, tmp_path / "f.onnx", target="trt-plugin")


class _AcrossGroups(torch.nn.Module):
    """Statistics over all channels of the grouped view: a LayerNorm, not a GN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        xg = x.view(n, 4, -1)
        m = xg.mean((1, 2), keepdim=True)
        v = ((xg - m) ** 2).mean((1, 2), keepdim=True)
        return ((xg - m) / torch.sqrt(v + 1e-5)).view(n, c, h, w)


class _Strided(torch.nn.Module):
    """Channel c in group c % G: the grouping is strided, not contiguous."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        xg = x.view(n, c // 4, 4, h * w).transpose(1, 2).reshape(n, 4, -1)
        m = xg.mean(-1, keepdim=True)
        v = ((xg - m) ** 2).mean(-1, keepdim=True)
        y = (xg - m) / torch.sqrt(v + 1e-5)
        return y.view(n, 4, c // 4, h * w).transpose(1, 2).reshape(n, c, h, w)


class _Unbiased(torch.nn.Module):
    """Sample variance (N − 1): not GN's population variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        xg = x.view(n, 4, -1)
        m = xg.mean(-1, keepdim=True)
        v = xg.var(-1, unbiased=True, keepdim=True)
        return ((xg - m) / torch.sqrt(v + 1e-5)).view(n, c, h, w)


class _SharedMean(torch.nn.Module):
    """The group mean is also an output: fusing must keep it correct (here: refuse)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = x.shape
        xg = x.view(n, 4, -1)
        m = xg.mean(-1, keepdim=True)
        v = ((xg - m) ** 2).mean(-1, keepdim=True)
        return ((xg - m) / torch.sqrt(v + 1e-5)).view(n, c, h, w), m


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        (_AcrossGroups, "not the group's axes"),
        (_Unbiased, "not the population variance"),
        (_SharedMean, "is a graph output"),
    ],
    ids=["across-groups", "unbiased", "shared-mean"],
)
@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_look_alikes_are_refused_with_a_reason(
    tmp_path: Path, exporter: str, opset: int, module: type, reason: str
) -> None:
    src = export_torch(module().eval(), tmp_path / "m.onnx", exporter, opset)
    report = inspect_model(src)
    assert report.sites, "a GN-like candidate must be reported"
    assert all(s.status == "refused" for s in report.sites)
    assert any(reason in s.reason for s in report.sites), [s.reason for s in report.sites]


@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_strided_grouping_is_never_fused_wrongly(tmp_path: Path, exporter: str, opset: int) -> None:
    """Seen from the transposed tensor the strided model is a GN over 4 channels in 4 groups:
    fusing that is correct; what must never happen is a GN over x's contiguous groups."""
    src = export_torch(_Strided().eval(), tmp_path / "m.onnx", exporter, opset)
    out = tmp_path / "f.onnx"
    report = fuse_model(src, out)
    assert all(s.channels != 8 for s in report.sites if s.status == "fused")
    x = np.random.default_rng(2).standard_normal((2, 8, 5, 6)).astype(np.float32) + 1
    assert relative_l2(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5


class _ChannelsLast(torch.nn.Module):
    """GN written by hand on [N, *S, C] as Flax computes it: a [N, *S, G, C/G] view, statistics
    over the spatial axes and C/G, E[x²] − E[x]² (maybe clamped at 0), an optional affine."""

    def __init__(self, groups: int, clamp: bool, affine: bool) -> None:
        super().__init__()
        self.groups, self.clamp, self.affine = groups, clamp, affine
        self.w = torch.nn.Parameter(torch.rand(8) + 0.5)
        self.b = torch.nn.Parameter(torch.randn(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xg = x.reshape(*x.shape[:-1], self.groups, -1)
        dims = (*range(1, x.dim() - 1), -1)
        m = xg.mean(dims, keepdim=True)
        v = (xg * xg).mean(dims, keepdim=True) - m * m
        if self.clamp:
            v = v.clamp_min(0.0)
        y = ((xg - m) / torch.sqrt(v + 1e-6)).reshape(x.shape)
        return y * self.w + self.b if self.affine else y


CHANNELS_LAST = [((7,), 1, True, True), ((5, 6), 4, False, True), ((3, 4, 5), 8, True, False)]


@pytest.mark.parametrize(
    ("spatial", "groups", "clamp", "affine"), CHANNELS_LAST, ids=["1d-g1", "2d-g4", "3d-gc"]
)
@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS, ids=lambda v: str(v))
def test_channels_last_view(
    tmp_path: Path,
    exporter: str,
    opset: int,
    spatial: tuple[int, ...],
    groups: int,
    clamp: bool,
    affine: bool,
) -> None:
    torch.manual_seed(0)
    module = _ChannelsLast(groups, clamp, affine).eval()
    src = export_torch(module, tmp_path / "m.onnx", exporter, opset, (2, *spatial, 8), True)
    out = tmp_path / "f.onnx"
    (site,) = fuse_model(src, out).sites
    assert (site.status, site.family, site.num_groups, site.channels) == (
        "fused", "moments", groups, 8,
    )  # fmt: skip
    assert op_counts(out) == {"GroupNormalization": 1, "Transpose": 2}
    x = np.random.default_rng(3).standard_normal((3, *spatial, 8)).astype(np.float32) * 2 + 1
    gamma, beta = (p.detach().numpy() for p in (module.w, module.b)) if affine else (None, None)
    want = group_norm_reference(x, groups, 1e-6, gamma, beta, channel_axis=-1)
    assert relative_l2(run_ort(out, {"x": x})[0], want) <= 1e-5
