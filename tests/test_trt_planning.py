"""TensorRT-free parts of engine building: profiles, precision, fp16 conversion, plugin lookup."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest

from gn_deploy.errors import GnDeployError, UsageError
from gn_deploy.fusion import fuse_model
from gn_deploy.reference import relative_l2, tolerance_for
from gn_deploy.trt import plugin as trt_plugin
from gn_deploy.trt.precision import convert_to_fp16, plan_precision
from gn_deploy.trt.profiles import Profile, parse_shapes, profiles_for
from gn_deploy.trt.runtimes import parse_compute_capabilities
from tests.conftest import Exporter
from tests.helpers import run_reference


def test_parse_shapes() -> None:
    assert parse_shapes("x:1x4x8x8,2x4x16x16,4x4x32x32") == Profile(
        "x", (1, 4, 8, 8), (2, 4, 16, 16), (4, 4, 32, 32)
    )
    assert parse_shapes("x:2x4x8x8").min == (2, 4, 8, 8) == parse_shapes("x:2x4x8x8").max
    for bad in ["x", "x:1x4,2x4", "x:4x4,2x4,8x4", "x:1x4,2x4x4,4x4", "x:1xQ"]:
        with pytest.raises(UsageError, match="--shapes"):
            parse_shapes(bad)


def test_parse_compute_capabilities() -> None:
    assert parse_compute_capabilities("8.6, 12.0,8.6") == ["8.6", "12.0"]
    assert parse_compute_capabilities(None) == []
    for bad in ["", ",", "8", "sm_86", "8.x", "8.6,12"]:
        with pytest.raises(UsageError, match="--compute-capability"):
            parse_compute_capabilities(bad)


def test_profiles_from_model(exported: Exporter) -> None:
    static = onnx.load(exported("torchscript", 17))
    (profile,) = profiles_for(static, [])
    assert profile.min == profile.max == (2, 8, 5, 6)
    dynamic = onnx.load(exported("dynamo", 18, dynamic=True))
    with pytest.raises(UsageError, match="--shapes x:MIN,OPT,MAX"):
        profiles_for(dynamic, [])
    (profile,) = profiles_for(dynamic, ["x:1x8x5x6,2x8x5x6,8x8x5x6"])
    assert profile.max == (8, 8, 5, 6)
    with pytest.raises(UsageError, match="axis 1 is fixed at 8"):
        profiles_for(dynamic, ["x:1x4x5x6,2x4x5x6,8x4x5x6"])
    with pytest.raises(UsageError, match="no input 'y'"):
        profiles_for(dynamic, ["y:1x8x5x6"])


def test_precision_plans() -> None:
    assert plan_precision(10, "fp16").builder_flags == ["FP16"]
    assert not plan_precision(10, "fp16").strongly_typed
    assert plan_precision(10, "bf16").builder_flags == ["BF16"]
    plan = plan_precision(11, "fp16")
    assert plan.strongly_typed and plan.convert_to == "float16" and plan.builder_flags == []
    assert plan_precision(11, "fp32").convert_to is None
    assert plan_precision(11, "fp32").cleared_flags == ["TF32"]
    assert plan_precision(10, "fp16").cleared_flags == []
    with pytest.raises(GnDeployError, match="bf16 in a strongly typed build"):
        plan_precision(11, "bf16")
    with pytest.raises(UsageError):
        plan_precision(10, "int8")
    with pytest.raises(GnDeployError, match="too old"):
        plan_precision(8, "fp32")


def test_fp16_conversion_keeps_gn_parameters_fp32(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="exports the demo UNet with torch")
    from gn_deploy.export import export_model

    src = export_model(
        "gn_deploy.models:demo_unet", ["x:1x4x16x16"], tmp_path / "d.onnx", exporter="torchscript"
    )
    fused = tmp_path / "d.trt.onnx"
    fuse_model(src, fused, target="trt-plugin")
    half = tmp_path / "d.fp16.onnx"
    convert_to_fp16(fused, half)

    model = onnx.load(half)
    onnx.checker.check_model(model, full_check=True)
    types = {i.name: i.data_type for i in model.graph.initializer}
    gn_nodes = [n for n in model.graph.node if n.op_type == "FusedGroupNorm"]
    assert len(gn_nodes) == 8
    assert {types[n.input[k]] for n in gn_nodes for k in (1, 2)} == {onnx.TensorProto.FLOAT}
    conv_weights = [types[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]
    assert set(conv_weights) == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(0).standard_normal((1, 4, 16, 16)).astype(np.float32)
    (expected,) = run_reference(fused, {"x": x})
    (actual,) = run_reference(half, {"x": x})
    assert relative_l2(actual, expected) <= tolerance_for("float16")


def test_plugin_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lib = tmp_path / "libgn_trt_plugin.so"
    lib.write_bytes(b"\x7fELF")
    monkeypatch.setattr(trt_plugin, "_CANDIDATES", (tmp_path / "none.so",))
    monkeypatch.delenv(trt_plugin.PLUGIN_ENV, raising=False)
    with pytest.raises(GnDeployError, match="make plugin"):
        trt_plugin.find_plugin_library()
    assert trt_plugin.find_plugin_library(lib) == lib
    with pytest.raises(GnDeployError, match="--plugin"):
        trt_plugin.find_plugin_library(tmp_path / "missing.so")
    monkeypatch.setenv(trt_plugin.PLUGIN_ENV, str(lib))
    assert trt_plugin.find_plugin_library() == lib
    monkeypatch.setattr(trt_plugin, "_CANDIDATES", (lib,))
    monkeypatch.delenv(trt_plugin.PLUGIN_ENV)
    assert trt_plugin.find_plugin_library() == lib


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="checks the message on a machine without TensorRT's builder",
)
def test_build_without_tensorrt_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], exported: Exporter, tmp_path: Path
) -> None:
    from gn_deploy.cli import main

    src = tmp_path / "m.onnx"
    fuse_model(exported("torchscript", 17), src, target="trt-plugin")
    out = str(tmp_path / "m.engine")
    assert main(["build", str(src), "-o", out, "--runtime", "tensorrt"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorRT's builder is not installed" in err[0]
    assert not (tmp_path / "m.engine").exists()


def test_missing_engine_is_named(tmp_path: Path) -> None:
    from gn_deploy.trt.runner import EngineRunner

    with pytest.raises(GnDeployError, match=r"nope\.engine: no such engine file"):
        EngineRunner(tmp_path / "nope.engine")


def test_engine_memory_with_a_cpu_build_of_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch without CUDA (what `make test` installs) does not stop an engine from running where
    cuda-python is installed; without either, one line says what is missing."""
    torch = pytest.importorskip("torch", reason="checks the choice made when torch is installed")
    from gn_deploy.trt import runner

    if torch.cuda.is_available():
        pytest.skip("checks a build of torch without CUDA")
    made: list[str] = []

    class FakeCudaPython:
        def __init__(self) -> None:
            made.append("cuda-python")

    monkeypatch.setattr(runner, "CudaPythonMemory", FakeCudaPython)
    assert isinstance(runner.device_memory(), FakeCudaPython) and made == ["cuda-python"]

    class Missing:
        def __init__(self) -> None:
            raise GnDeployError("no cuda-python")

    monkeypatch.setattr(runner, "CudaPythonMemory", Missing)
    with pytest.raises(GnDeployError, match="sees no CUDA device and cuda-python is not"):
        runner.device_memory()
