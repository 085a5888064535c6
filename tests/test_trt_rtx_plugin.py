"""The plugin inside a real builder: TensorRT-RTX builds `--target trt-plugin` models with
libgn_trt_plugin.so, one plugin layer per fused site (`make test-trt-rtx`, which builds the
library against TensorRT headers first)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from gn_deploy.cli import main
from tests.trt_support import PLUGIN_LIBRARY

pytestmark = [
    pytest.mark.trt_rtx,
    pytest.mark.skipif(
        importlib.util.find_spec("tensorrt_rtx") is None,
        reason="needs TensorRT-RTX: pip install 'gn-deploy[trt-rtx]'",
    ),
    pytest.mark.skipif(
        not PLUGIN_LIBRARY.is_file(),
        reason=f"needs the plugin library at {PLUGIN_LIBRARY}: "
        "make test-trt-rtx TENSORRT_INCLUDE_DIR=/path/to/TensorRT/include",
    ),
]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize(
    ("factory", "profile", "sites"),
    [
        ("gn_deploy.models:demo_unet", "x:1x4x32x32,2x4x32x32,4x4x32x32", 8),
        ("gn_deploy.models:sd15_unet", "x:1x4x32x32,1x4x32x32,2x4x32x32", 61),
    ],
    ids=["demo", "sd15-unet"],
)
def test_plugin_layers_for_every_fused_site(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    factory: str,
    profile: str,
    sites: int,
    precision: str,
) -> None:
    pytest.importorskip("torch", reason="the models are exported from torch")
    from gn_deploy.export import export_model
    from gn_deploy.fusion import fuse_model

    src = export_model(factory, ["x:1x4x32x32"], tmp_path / "m.onnx", dynamic=["x:0=batch"])
    fused = tmp_path / "m.trt.onnx"
    assert fuse_model(src, fused, target="trt-plugin").count("fused") == sites
    engine, report = tmp_path / "m.engine", tmp_path / "r.json"
    code = main(
        [
            "build", str(fused), "-o", str(engine), "--runtime", "tensorrt-rtx",
            "--compute-capability", "8.6,12.0", "--shapes", profile, "--precision", precision,
            "--plugin", str(PLUGIN_LIBRARY), "--report", str(report),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    built = json.loads(report.read_text())
    assert built["plugin_layers"] == sites
    assert built["engine_bytes"] == engine.stat().st_size > 0
