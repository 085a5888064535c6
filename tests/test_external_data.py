"""Models whose weights live in `.onnx.data` files are read and written correctly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import relative_l2
from tests.conftest import Exporter
from tests.helpers import op_counts, run_ort


def _with_external_data(src: Path, dest: Path) -> Path:
    model = onnx.load(src)
    onnx.save(
        model, dest, save_as_external_data=True, location=dest.name + ".data", size_threshold=0
    )
    return dest


def test_external_data_round_trip(exported: Exporter, tmp_path: Path) -> None:
    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    src = _with_external_data(
        exported("torchscript", 17, channels=128, groups=32), src_dir / "model.onnx"
    )
    data_before = (src_dir / "model.onnx.data").read_bytes()
    out = out_dir / "fused.onnx"

    fuse_model(src, out, target="onnx")

    data = sorted(out_dir.glob("fused.onnx.*.data"))
    assert len(data) == 1, "weights stay external in the output, in a file named for this write"
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == [], "no staging left"
    assert (src_dir / "model.onnx.data").read_bytes() == data_before
    assert op_counts(out)["GroupNormalization"] == 2
    x = np.random.default_rng(0).standard_normal((2, 128, 5, 6)).astype(np.float32)
    assert relative_l2(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5


def test_dynamo_export_with_data_file(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("torch", reason="export needs torch")
    from gn_deploy.export import export_model

    src = export_model("gn_deploy.models:demo_unet", ["x:1x4x16x16"], tmp_path / "demo.onnx")
    if not Path(str(src) + ".data").exists():
        src = _with_external_data(src, tmp_path / "demo_ext.onnx")
    out = tmp_path / "sub" / "demo.fused.onnx"
    out.parent.mkdir()
    report = fuse_model(src, out, target="trt-plugin")
    assert report.count("fused") == 8
    onnx.checker.check_model(str(out), full_check=True)


def test_missing_external_data_is_named(exported: Exporter, tmp_path: Path) -> None:
    import pytest

    from gn_deploy.errors import GnDeployError

    src = _with_external_data(exported("torchscript", 17), tmp_path / "m.onnx")
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(GnDeployError, match=r"m\.onnx\.data"):
        fuse_model(src, tmp_path / "o.onnx")
