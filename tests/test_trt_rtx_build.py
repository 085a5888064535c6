"""Real engines built on this CPU machine with TensorRT-RTX, ahead of time for named GPUs.

The demo model unfused and fused for ONNX (`--target onnx`), fp32 and fp16, for two compute
capabilities, with a dynamic batch profile; and the one-line errors a user meets. Running the
engines needs a GPU TensorRT-RTX supports (not this machine).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from gn_deploy.cli import main

pytestmark = [
    pytest.mark.trt_rtx,
    pytest.mark.skipif(
        importlib.util.find_spec("tensorrt_rtx") is None,
        reason="needs TensorRT-RTX: pip install 'gn-deploy[trt-rtx]' (make test does)",
    ),
]
PROFILE = "x:1x4x32x32,2x4x32x32,4x4x32x32"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("torch", reason="the demo model is exported from torch")
    from gn_deploy.export import export_model
    from gn_deploy.fusion import fuse_model

    folder = tmp_path_factory.mktemp("demo")
    src = export_model(
        "gn_deploy.models:demo_unet", ["x:1x4x32x32"], folder / "demo.onnx", dynamic=["x:0=batch"]
    )
    fused = folder / "demo.fused.onnx"
    fuse_model(src, fused, target="onnx")
    plugin = folder / "demo.trt.onnx"
    fuse_model(src, plugin, target="trt-plugin")
    return {"unfused": src, "fused": fused, "plugin": plugin}


def _build(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["build", *argv, "--runtime", "tensorrt-rtx"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("model", ["unfused", "fused"])
def test_engines_for_two_gpus(
    demo: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    precision: str,
) -> None:
    engine, report = tmp_path / "demo.engine", tmp_path / "build.json"
    code, out, err = _build(
        capsys, str(demo[model]), "-o", str(engine), "--compute-capability", "8.6,12.0",
        "--shapes", PROFILE, "--precision", precision, "--report", str(report),
    )  # fmt: skip
    assert code == 0, err
    built = json.loads(report.read_text())
    assert built["runtime"] == "tensorrt-rtx" and built["compute_capabilities"] == ["8.6", "12.0"]
    assert built["precision"] == precision and built["plugin_layers"] == 0
    assert built["inputs"] == [
        {"name": "x", "min": [1, 4, 32, 32], "opt": [2, 4, 32, 32], "max": [4, 4, 32, 32]}
    ]
    assert built["engine_bytes"] == engine.stat().st_size > 100_000
    assert built["layers"] > 50
    # the engine as built, from the builder's own account: no plugin layer to describe
    assert 0 < built["engine_layers"] < built["layers"] and built["plugin_formats"] == []
    assert f"wrote {engine}: {built['engine_layers']} engine layers," in out
    if model == "fused":  # one normalization layer per GN instead of the decomposed nodes
        unfused_report = tmp_path / "unfused.json"
        _build(
            capsys, str(demo["unfused"]), "-o", str(tmp_path / "u.engine"),
            "--compute-capability", "8.6,12.0", "--shapes", PROFILE, "--precision", precision,
            "--report", str(unfused_report),
        )  # fmt: skip
        assert built["layers"] < json.loads(unfused_report.read_text())["layers"]


def _one_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_plugin_model_without_the_plugin_library(
    demo: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gn_deploy.trt import plugin

    monkeypatch.delenv(plugin.PLUGIN_ENV, raising=False)
    monkeypatch.setattr(plugin, "_CANDIDATES", ())
    code, _, err = _build(
        capsys, str(demo["plugin"]), "-o", str(tmp_path / "e.engine"),
        "--compute-capability", "8.6", "--shapes", PROFILE,
    )  # fmt: skip
    assert code == 1
    _one_error(err, "libgn_trt_plugin.so", "make plugin")
    assert not (tmp_path / "e.engine").exists()


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--compute-capability", "9.0", "--shapes", PROFILE], ["9.0", "8.6"]),
        (["--compute-capability", "8.6", "--shapes", "x:1x4x16x16"], ["axis 2", "32"]),
        (["--compute-capability", "8.6", "--shapes", PROFILE, "--timing-cache", "c"], ["timing"]),
    ],
    ids=["hopper", "static-dims", "timing-cache"],
)
def test_one_line_errors(
    demo: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needles: list[str],
) -> None:
    code, _, err = _build(capsys, str(demo["fused"]), "-o", str(tmp_path / "e.engine"), *extra)
    assert code == 2
    _one_error(err, *needles)
    assert not (tmp_path / "e.engine").exists()


def test_no_gpu_and_no_target_asks_for_one(
    demo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gn_deploy.trt.runtimes import has_gpu

    if has_gpu():
        pytest.skip("checks behaviour on a machine without a GPU")
    code, _, err = _build(
        capsys, str(demo["fused"]), "-o", str(tmp_path / "e.engine"), "--shapes", PROFILE
    )
    assert code == 2
    _one_error(err, "--compute-capability", "12.0")


def test_validating_an_engine_without_a_gpu_says_why(
    demo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gn_deploy.trt.runtimes import has_gpu

    if has_gpu():
        pytest.skip("checks behaviour on a machine without a GPU")
    engine = tmp_path / "demo.engine"
    code, _, err = _build(
        capsys, str(demo["fused"]), "-o", str(engine), "--compute-capability", "8.6",
        "--shapes", PROFILE,
    )  # fmt: skip
    assert code == 0, err
    code = main(["validate", str(demo["fused"]), "--engine", str(engine), "--input", "x:2x4x32x32"])
    assert code == 1
    _one_error(capsys.readouterr().err, str(engine), "no NVIDIA GPU")


def test_fp16_build_of_a_model_with_external_weights(
    demo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    src = tmp_path / "ext.onnx"
    onnx.save(
        onnx.load(demo["fused"]), src, save_as_external_data=True, location="ext.onnx.data",
        size_threshold=0,
    )  # fmt: skip
    engine, report = tmp_path / "e.engine", tmp_path / "r.json"
    code, _, err = _build(
        capsys, str(src), "-o", str(engine), "--compute-capability", "8.9", "--shapes", PROFILE,
        "--precision", "fp16", "--report", str(report),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(report.read_text())["engine_bytes"] == engine.stat().st_size > 0


def test_an_engine_no_runtime_reads_says_what_would(tmp_path: Path) -> None:
    """Any machine: a file no installed runtime deserializes is named with the runtimes tried,
    this machine's GPU (or none), and the GPUs TensorRT-RTX runs engines on."""
    from gn_deploy.errors import GnDeployError
    from gn_deploy.trt.runner import EngineRunner
    from gn_deploy.trt.runtimes import gpu_compute_capability, load_runtime, rtx_capabilities

    listed = rtx_capabilities(load_runtime("tensorrt-rtx"))
    assert listed.startswith("7.5, 8.0, 8.6")  # what 1.7 lists, in order
    bogus = tmp_path / "bogus.engine"
    bogus.write_bytes(b"not an engine" * 100)
    with pytest.raises(GnDeployError) as caught:
        EngineRunner(bogus)
    text = str(caught.value)
    assert text.startswith(f"{bogus}: no installed runtime could deserialize it (tried ")
    assert "tensorrt-rtx" in text and f"runs engines on {listed})" in text
    gpu = gpu_compute_capability()
    assert (f"compute capability {gpu}" if gpu else "no GPU here") in text
