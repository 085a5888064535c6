"""Command-line mini-languages, and the fuse benchmark on a given file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gn_deploy.bench import bench_fuse
from gn_deploy.errors import UsageError
from gn_deploy.specs import InputSpec, parse_dynamic
from tests.conftest import Exporter


def test_input_spec() -> None:
    assert InputSpec.parse("x:1x3x64x64") == InputSpec("x", (1, 3, 64, 64), "float32")
    assert InputSpec.parse("sample:2x4:float16").dtype == "float16"
    for bad in ["x", "x:1x", "x:1x0", "x:2:float8", ":1x2"]:
        with pytest.raises(UsageError, match="--input"):
            InputSpec.parse(bad)


def test_dynamic_spec() -> None:
    assert parse_dynamic("x:0=batch,2=height") == ("x", {0: "batch", 2: "height"})
    with pytest.raises(UsageError, match="AXIS=LABEL"):
        parse_dynamic("x:batch")


def test_export_rejects_unknown_dynamic_input(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    from gn_deploy.export import export_model

    with pytest.raises(UsageError, match="no --input of that name"):
        export_model(
            "gn_deploy.models:gn_block", ["x:1x8x4x4"], tmp_path / "m.onnx", dynamic=["y:0=batch"]
        )


def test_export_dynamic_axes_are_symbolic(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    import onnx

    from gn_deploy.export import export_model

    for exporter in ("torchscript", "dynamo"):
        out = export_model(
            "gn_deploy.models:gn_block",
            ["x:2x8x4x4"],
            tmp_path / f"{exporter}.onnx",
            dynamic=["x:0=batch"],
            exporter=exporter,
        )
        dims = onnx.load(out).graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [8, 4, 4]


def test_bench_fuse_table(exported: Exporter) -> None:
    text = bench_fuse([exported("torchscript", 17)], repeat=1)
    rows = [r for r in text.splitlines() if r.startswith("| torchscript")]
    assert len(rows) == 3
    assert all("| 2 |" in r for r in rows[:2]), rows
    assert "peer: onnxruntime.transformers" in rows[2]


def test_bench_memory_table() -> None:
    from gn_deploy.bench import bench_memory

    rows = [
        r
        for r in bench_memory(0.05).splitlines()
        if r.startswith("| onnx") or r.startswith("| trt-plugin")
    ]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == cells[2] != "0", row  # every generated GN site fused


def test_sd15_unet_chain_has_61_group_norms_per_copy() -> None:
    torch = pytest.importorskip("torch", reason="builds the torch model")
    from gn_deploy.models import sd15_unet_chain

    model = sd15_unet_chain(2)
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in model.modules()) == 122
