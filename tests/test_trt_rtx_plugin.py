"""The plugin inside a real builder: TensorRT-RTX builds `--target trt-plugin` models with
libgn_trt_plugin.so, one plugin layer per fused site, each in the channels-last format of the
convolutions around it (`make test-trt-rtx`, which builds the library against TensorRT headers
first)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import onnx
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
    engine = tmp_path / "m.engine"
    built = _build(tmp_path, capsys, fused, engine, profile, precision)
    assert built["plugin_layers"] == sites
    assert built["engine_bytes"] == engine.stat().st_size > 0
    dtype = {"fp32": "Float", "fp16": "Half"}[precision]
    assert sorted(f["node"] for f in built["plugin_formats"]) == sorted(_plugin_nodes(fused))
    for chosen in built["plugin_formats"]:
        assert chosen["x"] == chosen["y"]
        assert chosen["x"].startswith(f"{dtype} (NHWC)"), chosen


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_channels_last_saves_the_transposes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], precision: str
) -> None:
    """A model that asks for channels_last=0 keeps linear formats, and pays for them."""
    pytest.importorskip("torch", reason="the model is exported from torch")
    from gn_deploy.export import export_model
    from gn_deploy.fusion import fuse_model

    src = export_model("gn_deploy.models:demo_unet", ["x:1x4x32x32"], tmp_path / "m.onnx")
    fused = tmp_path / "m.trt.onnx"
    fuse_model(src, fused, target="trt-plugin")
    proto = onnx.load(fused, load_external_data=False)
    for node in proto.graph.node:
        if node.op_type == "FusedGroupNorm":
            node.attribute.append(onnx.helper.make_attribute("channels_last", 0))
    linear = tmp_path / "m.linear.onnx"
    onnx.save(proto, linear)
    profile = "x:1x4x32x32,1x4x32x32,1x4x32x32"
    fast = _build(tmp_path, capsys, fused, tmp_path / "a.engine", profile, precision)
    slow = _build(tmp_path, capsys, linear, tmp_path / "b.engine", profile, precision)
    assert all("(Linear)" in f["x"] for f in slow["plugin_formats"])
    assert all("(NHWC)" in f["x"] for f in fast["plugin_formats"])
    # a transpose before and after each of the 8 plugin layers, at least
    assert slow["engine_layers"] >= fast["engine_layers"] + 2 * 8


def _build(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: Path,
    engine: Path,
    profile: str,
    precision: str,
) -> dict:
    report = tmp_path / f"{engine.stem}.json"
    code = main(
        [
            "build", str(model), "-o", str(engine), "--runtime", "tensorrt-rtx",
            "--compute-capability", "8.6,12.0", "--shapes", profile, "--precision", precision,
            "--plugin", str(PLUGIN_LIBRARY), "--report", str(report),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    return json.loads(report.read_text())


def _plugin_nodes(model: Path) -> list[str]:
    graph = onnx.load(model, load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "FusedGroupNorm"]
