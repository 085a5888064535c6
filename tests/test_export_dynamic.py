"""An export proves its dynamic axes before it is written: ONNX Runtime at the example shapes
and at another size on each dynamic axis, against torch, within the design tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest

from gn_deploy.cli import main
from gn_deploy.dynamic_axes import traced_specs, trials
from gn_deploy.specs import InputSpec

BAKED = '''import torch


class Baked(torch.nn.Module):
    """Reads the batch size as a Python int: a trace writes the example's as a constant."""

    def forward(self, x):
        n = int(x.shape[0])
        return torch.nn.functional.group_norm(x, 2).reshape(n * 8, -1)


def make():
    return Baked()
'''


def test_an_export_that_does_not_hold_on_a_dynamic_axis_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    (tmp_path / "baked.py").write_text(BAKED)
    out = tmp_path / "m.onnx"
    argv = ["export", "--model", f"{tmp_path}/baked.py:make", "--input", "x:2x8x4x4"]
    code = main([*argv, "--dynamic", "x:0=batch", "--exporter", "torchscript", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 2 and err[1].startswith(
        "gn-deploy export: error: --dynamic x:0=batch: the export does not hold at size 3 "
        "(output 0 differs from torch (shape [16, 24] for [24, 16]"
    ), err
    assert "another example size" in err[1]
    assert not out.exists() and not list(tmp_path.glob(".gn-deploy-stage-*"))
    # static, the same model exports
    code = main([*argv, "--exporter", "torchscript", "-o", str(out)])
    assert code == 0 and out.is_file()


def test_a_dynamic_axis_given_as_1_is_traced_at_2_and_checked_at_1_and_3() -> None:
    specs = [InputSpec("x", (1, 4, 8, 8)), InputSpec("t", (1,), "int64")]
    axes = {"x": {0: "batch", 3: "width"}}
    assert traced_specs(specs, axes) == [InputSpec("x", (2, 4, 8, 8)), specs[1]]
    runs = trials(specs, axes)
    assert [r.specs[0].shape for r in runs] == [(1, 4, 8, 8), (3, 4, 8, 8), (1, 4, 8, 9)]
    assert [r.axis for r in runs] == [None, ("x", 0, "batch"), ("x", 3, "width")]
    assert all(r.specs[1] == specs[1] for r in runs)


@pytest.mark.slow
def test_the_sd15_unet_exported_at_batch_1_runs_at_batch_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's journey: torch.export specialises a batch of 1 inside the attention blocks."""
    pytest.importorskip("torch", reason="export needs torch")
    import numpy as np
    import onnxruntime as ort

    out = tmp_path / "sd15.onnx"
    code = main(["export", "--model", "gn_deploy.models:sd15_unet", "--input", "x:1x4x32x32",
                 "--dynamic", "x:0=batch", "-o", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 4, 32, 32)).astype(np.float32)
    assert session.run(None, {"x": x})[0].shape == (2, 4, 32, 32)


def test_a_model_returning_a_dict_is_proved_on_each_output(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    from gn_deploy.export import export_model

    (tmp_path / "heads.py").write_text(
        "import torch\n\n\nclass Heads(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        y = torch.nn.functional.group_norm(x, 2)\n"
        "        return {'a': y, 'b': (y * 2, y.mean(1))}\n\n\n"
        "def make():\n    return Heads()\n"
    )
    out = export_model(f"{tmp_path}/heads.py:make", ["x:2x4x3x3"], tmp_path / "h.onnx",
                       dynamic=["x:0=batch"], exporter="torchscript")  # fmt: skip
    assert out.is_file()
