"""Engine build, run and parity for the demo model (marker trt; needs TensorRT and a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import tolerance_for
from tests.trt_support import PLUGIN_LIBRARY, needs_builder

pytestmark = needs_builder


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_demo_engine_matches_torch(tmp_path: Path, precision: str) -> None:
    from gn_deploy.export import export_model
    from gn_deploy.parity import validate
    from gn_deploy.trt.build import build_engine

    src = export_model(
        "gn_deploy.models:demo_unet", ["x:1x4x32x32"], tmp_path / "d.onnx", dynamic=["x:0=batch"]
    )
    fused = tmp_path / "d.trt.onnx"
    assert fuse_model(src, fused, target="trt-plugin").count("fused") == 8
    engine = build_engine(
        fused,
        tmp_path / "d.engine",
        shapes=["x:1x4x32x32,2x4x32x32,4x4x32x32"],
        precision=precision,
        plugin=PLUGIN_LIBRARY,
    ).engine
    report = validate(
        "gn_deploy.models:demo_unet",
        engines=[engine],
        inputs=["x:2x4x32x32"],
        tolerance=tolerance_for("float32" if precision == "fp32" else "float16"),
        plugin=PLUGIN_LIBRARY,
    )
    assert report.ok, report.table()
