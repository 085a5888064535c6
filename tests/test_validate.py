"""`validate`: torch vs ONNX Runtime vs the reference evaluator, by the design's tolerances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gn_deploy.cli import main
from gn_deploy.fusion import fuse_model
from gn_deploy.parity import compare, validate
from tests.conftest import Exporter


def test_compare_metrics() -> None:
    e = np.array([1.0, -2.0, 3.0], np.float32)
    c = compare("b", "y", e * 1.001, e)
    assert c.rel_l2 == pytest.approx(1e-3, rel=1e-3)
    assert c.max_abs == pytest.approx(0.003, rel=1e-3)
    assert c.cosine == pytest.approx(1.0)
    assert not c.ok  # fp32 tolerance is 1e-5
    assert compare("b", "y", e.astype(np.float16) * 1.001, e.astype(np.float16)).ok


def test_torch_ort_and_fused_agree(exported: Exporter, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="torch backend")
    src = tmp_path / "m.onnx"
    from gn_deploy.export import export_model

    export_model("gn_deploy.models:gn_block", ["x:2x8x5x6"], src, exporter="torchscript")
    fused = tmp_path / "f.onnx"
    plugin = tmp_path / "p.onnx"
    fuse_model(src, fused)
    fuse_model(src, plugin, target="fused-op")
    report = validate("gn_deploy.models:gn_block", [src, fused, plugin], ["x:2x8x5x6"])
    assert report.reference == "torch"
    assert [c.backend.split(":")[0] for c in report.comparisons] == [
        "onnxruntime",
        "onnxruntime",
        "onnxruntime",
    ]
    assert report.ok, report.table()


def test_mismatch_exits_1(capsys: pytest.CaptureFixture[str], exported: Exporter) -> None:
    a = exported("torchscript", 17, affine=True)
    b = exported("torchscript", 17, affine=False)
    code = main(["validate", str(a), str(b)])
    out = capsys.readouterr().out
    assert code == 1
    assert "MISMATCH" in out and "parity: FAIL" in out


def test_inputs_from_npz(
    exported: Exporter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = exported("dynamo", 18, dynamic=True)
    npz = tmp_path / "in.npz"
    np.savez(npz, x=np.random.default_rng(3).standard_normal((3, 8, 5, 6)).astype(np.float32))
    fused = tmp_path / "f.onnx"
    fuse_model(src, fused)
    assert main(["validate", str(src), str(fused), "--inputs", str(npz)]) == 0
    assert "parity: PASS" in capsys.readouterr().out


def test_dynamic_input_needs_shape(capsys: pytest.CaptureFixture[str], exported: Exporter) -> None:
    src = exported("dynamo", 18, dynamic=True)
    assert main(["validate", str(src), str(src)]) == 2
    assert "--input x:" in capsys.readouterr().err


def test_a_factory_with_random_weights_validates_against_its_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export and validate --model each call the factory: both must build the same model."""
    pytest.importorskip("torch", reason="torch backend")
    (tmp_path / "rand.py").write_text(
        "import numpy as np\nimport torch\n\n\n"
        "def make():\n"
        "    gn = torch.nn.GroupNorm(2, 8)\n"
        "    torch.nn.init.normal_(gn.weight)\n"
        "    gn.bias.data = torch.from_numpy(np.random.standard_normal(8).astype(np.float32))\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), gn)\n"
    )
    ref, src = f"{tmp_path}/rand.py:make", tmp_path / "m.onnx"
    argv = ["--input", "x:2x4x8x8"]
    assert main(["export", "--model", ref, *argv, "--exporter", "torchscript", "-o", str(src)]) == 0
    assert main(["validate", "--model", ref, str(src), *argv, "--seed", "7"]) == 0
    assert "parity: PASS" in capsys.readouterr().out
    import numpy as np
    import torch

    state = torch.random.get_rng_state()
    numbers = np.random.get_state()[1].copy()
    assert main(["validate", "--model", ref, str(src), *argv]) == 0
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generators untouched
    assert (np.random.get_state()[1] == numbers).all()
