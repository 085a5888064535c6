"""No command loses or corrupts a user's file, and exit 0 means a valid model was written.

One class of hazard per test: outputs that are inputs (the model, its external data, the
report), a report that fails after the model, the external-data pair replaced half-way, staging
left by a killed process, permissions, and the validity gate.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import onnx
import pytest

from gn_deploy import outputs
from gn_deploy.cli import main
from gn_deploy.outputs import STAGE_PREFIX
from tests.conftest import Exporter
from tests.helpers import op_counts


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _external(src: Path, dest: Path, data_name: str) -> Path:
    model = onnx.load(src)
    onnx.save(model, dest, save_as_external_data=True, location=data_name, size_threshold=0)
    return dest


@pytest.fixture
def gn_model(exported: Exporter) -> Path:
    return exported("torchscript", 17, channels=16, groups=4)


@pytest.fixture
def wide_gn_model(exported: Exporter) -> Path:
    """Weights large enough to stay in an external data file when written."""
    return exported("torchscript", 17, channels=128, groups=32)


def test_output_named_like_the_inputs_data_keeps_the_input_whole(
    gn_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # in.onnx keeps its weights in w.onnx.data; -o w.onnx must not touch that file, even when
    # an older w.onnx (naming the same data) is being replaced
    src = _external(gn_model, tmp_path / "in.onnx", "w.onnx.data")
    shutil.copy(src, tmp_path / "w.onnx")
    data_before = (tmp_path / "w.onnx.data").read_bytes()
    code, _, err = _run(capsys, "fuse", str(src), "-o", str(tmp_path / "w.onnx"))
    assert code == 0, err
    assert (tmp_path / "w.onnx.data").read_bytes() == data_before
    onnx.checker.check_model(str(src), full_check=True)
    assert op_counts(tmp_path / "w.onnx")["GroupNormalization"] == 2
    onnx.checker.check_model(str(tmp_path / "w.onnx"), full_check=True)


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (["fuse", "{src}", "-o", "{tmp}/out.onnx", "--report", "{src}"], "the input model"),
        (["fuse", "{src}", "-o", "{tmp}/out.onnx", "--report", "{data}"], "external data"),
        (["fuse", "{src}", "-o", "{tmp}/out.onnx", "--report", "{tmp}/out.onnx"], "also"),
        (["fuse", "{src}", "-o", "{data}"], "external data"),
        (["inspect", "{src}", "--report", "{src}"], "the input model"),
        (["inspect", "{src}", "--report", "{data}"], "external data"),
        (["bench", "fuse", "{src}", "-o", "{src}"], "input model"),
    ],
)
def test_no_output_may_be_an_input_or_another_output(
    gn_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    needle: str,
) -> None:
    src = _external(gn_model, tmp_path / "m.onnx", "m.onnx.data")
    before = _digests(tmp_path)
    values = {"src": str(src), "tmp": str(tmp_path), "data": str(tmp_path / "m.onnx.data")}
    code, _, err = _run(capsys, *(arg.format(**values) for arg in command))
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert _digests(tmp_path) == before, "a refused command changed or left a file"


def test_a_failing_report_writes_nothing(
    gn_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = outputs.Outputs.stage_text

    def disk_full(self: outputs.Outputs, target: Path, text: str) -> Path:
        if target.suffix == ".json":
            raise outputs.GnDeployError(f"{target}: cannot write (No space left on device)")
        return real(self, target, text)

    monkeypatch.setattr(outputs.Outputs, "stage_text", disk_full)
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    code, _, err = _run(capsys, "fuse", str(gn_model), "-o", str(out), "--report", str(report))
    assert code == 1 and "No space left" in err
    assert list(tmp_path.iterdir()) == [], "exit 1 must leave no model, report or staging"


def test_external_pair_is_replaced_whole_or_not_at_all(
    wide_gn_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _external(wide_gn_model, tmp_path / "in.onnx", "in.onnx.data")
    out = tmp_path / "out.onnx"
    assert _run(capsys, "fuse", str(src), "-o", str(out))[0] == 0
    first = {p.name for p in tmp_path.glob("out.onnx.*.data")}
    assert len(first) == 1
    old_pair = _digests(tmp_path)

    # the model's rename fails after the new data is in place: the old pair still stands
    real_replace = os.replace

    def replace(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        if Path(b) == out:
            raise OSError(28, "No space left on device")
        real_replace(a, b)

    monkeypatch.setattr(outputs.os, "replace", replace)
    code, _, err = _run(capsys, "fuse", str(src), "-o", str(out), "--target", "trt-plugin")
    assert code == 1 and "No space left" in err
    monkeypatch.undo()
    model = onnx.load(out)  # loads its own data: the old pair
    assert op_counts(out)["GroupNormalization"] == 2 and model is not None
    for name in first:
        assert _digests(tmp_path)[name] == old_pair[name]

    # a successful rewrite names new data and removes the data the old model named
    assert _run(capsys, "fuse", str(src), "-o", str(out), "--target", "trt-plugin")[0] == 0
    second = {p.name for p in tmp_path.glob("out.onnx.*.data")}
    assert len(second) == 1 and second.isdisjoint(first)
    assert op_counts(out)["FusedGroupNorm"] == 2
    onnx.checker.check_model(str(out), full_check=True)


def test_stale_staging_of_dead_processes_is_removed(
    gn_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = tmp_path / f"{STAGE_PREFIX}999999999-abcd"
    dead.mkdir()
    (dead / "big.data").write_bytes(b"x" * 1000)
    (tmp_path / f"{STAGE_PREFIX}999999998-ef01-x.tmp").write_bytes(b"partial")
    live = tmp_path / f"{STAGE_PREFIX}{os.getpid()}-live"  # a running writer's: kept
    live.mkdir()
    assert _run(capsys, "fuse", str(gn_model), "-o", str(tmp_path / "o.onnx"))[0] == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"o.onnx", live.name}


def test_permissions_follow_the_umask_or_the_replaced_file(
    gn_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "o.onnx"
        assert _run(capsys, "fuse", str(gn_model), "-o", str(out))[0] == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        out.chmod(0o640)
        assert (
            _run(
                capsys, "fuse", str(gn_model), "-o", str(out), "--report", str(tmp_path / "r.json")
            )[0]
            == 0
        )
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_an_invalid_result_is_not_written(
    gn_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gn_deploy.fusion as fusion

    real = fusion.patched_bytes

    def broken(model, edits) -> bytes:  # a rewrite bug: a node reads a value nobody makes
        proto = onnx.load_from_string(real(model, edits))
        proto.graph.node[0].input[0] = "nowhere"
        return proto.SerializeToString()

    monkeypatch.setattr(fusion, "patched_bytes", broken)
    out = tmp_path / "o.onnx"
    code, _, err = _run(
        capsys, "fuse", str(gn_model), "-o", str(out), "--report", str(tmp_path / "r.json")
    )
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not written" in lines[0] and str(out) in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_an_input_that_is_already_invalid_is_named_as_the_fault(
    gn_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = onnx.load(gn_model)
    broken.graph.name = ""  # the checker requires a graph name; fusing cannot mend that
    src = tmp_path / "nameless.onnx"
    onnx.save(broken, src)
    code, _, err = _run(capsys, "fuse", str(src), "-o", str(tmp_path / "o.onnx"))
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{src}: not a valid ONNX model to begin with" in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nameless.onnx"]


def test_an_invalid_input_mended_by_the_rewrite_is_said_so(
    gn_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a wrong shape annotation on the grouped view inside the GN: the rewrite removes it
    model = onnx.load(gn_model)
    inside = next(n for n in model.graph.node if n.op_type == "InstanceNormalization")
    model.graph.value_info.append(
        onnx.helper.make_tensor_value_info(inside.input[0], onnx.TensorProto.FLOAT, [7, 7, 7])
    )
    src, out = tmp_path / "stale.onnx", tmp_path / "o.onnx"
    onnx.save(model, src)
    code, stdout, err = _run(capsys, "fuse", str(src), "-o", str(out))
    assert code == 0, err
    assert "note: the input is not a valid ONNX model" in stdout
    onnx.checker.check_model(str(out), full_check=True)


@pytest.mark.parametrize("command", ["fuse", "build"])
def test_external_data_that_is_truncated_or_outside_is_refused_by_name(
    wide_gn_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    out = tmp_path / ("o.onnx" if command == "fuse" else "o.engine")
    src = _external(wide_gn_model, folder / "m.onnx", "m.onnx.data")
    data = folder / "m.onnx.data"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    code, _, err = _run(capsys, command, str(src), "-o", str(out))
    assert code == 1 and "truncated" in err and "internal error" not in err, err

    proto = onnx.load(wide_gn_model)
    onnx.save(
        proto,
        tmp_path / "outside.onnx",
        save_as_external_data=True,
        location="outside.data",
        size_threshold=0,
    )
    escaping = onnx.load(tmp_path / "outside.onnx", load_external_data=False)
    for tensor in escaping.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../outside.data"
    onnx.save(escaping, folder / "escaping.onnx")
    code, _, err = _run(capsys, command, str(folder / "escaping.onnx"), "-o", str(out))
    assert code == 1 and "outside" in err and "internal error" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("target", ["onnx", "trt-plugin"])
def test_ir3_models_come_out_valid(
    gn_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    # IR 3 lists initializers among the graph inputs; raising the opset (onnx) or adding
    # gamma/beta (trt-plugin) must raise the IR version with it
    old = onnx.load(gn_model)
    listed = {i.name for i in old.graph.input}
    old.graph.input.extend(
        onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
        for i in old.graph.initializer
        if i.name not in listed
    )
    old.ir_version = 3
    src = tmp_path / "ir3.onnx"
    onnx.save(old, src)
    out = tmp_path / "o.onnx"
    code, _, err = _run(capsys, "fuse", str(src), "-o", str(out), "--target", target)
    assert code == 0, err
    onnx.checker.check_model(str(out), full_check=True)
    assert onnx.load(out).ir_version >= (10 if target == "onnx" else 4)


@pytest.mark.parametrize("target", ["onnx", "trt-plugin"])
def test_sites_whose_nodes_share_names_fuse_into_valid_models(
    exported: Exporter, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    model = onnx.load(exported("torchscript", 17))
    for node in model.graph.node:  # both GNs' nodes now carry the first GN's names
        node.name = node.name.replace("gn2", "gn1")
    src, out = tmp_path / "dup.onnx", tmp_path / "o.onnx"
    onnx.save(model, src)
    code, _, err = _run(capsys, "fuse", str(src), "-o", str(out), "--target", target)
    assert code == 0, err
    fused = onnx.load(out)
    op = "GroupNormalization" if target == "onnx" else "FusedGroupNorm"
    sites = [n for n in fused.graph.node if n.op_type == op]
    assert len(sites) == 2 and all(name for n in sites for name in n.input)
    assert len({n.name for n in fused.graph.node}) == len(fused.graph.node)
    onnx.checker.check_model(str(out), full_check=True)


def test_model_local_functions_survive_the_opset_upgrade(
    exported: Exporter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from onnx import helper

    model = onnx.load(exported("torchscript", 17))
    body = [helper.make_node("Relu", ["a"], ["b"])]
    model.functions.append(
        helper.make_function("local", "MyRelu", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    )
    model.opset_import.append(helper.make_opsetid("local", 1))
    last = model.graph.output[0].name
    model.graph.node.append(helper.make_node("MyRelu", [last], ["final"], domain="local"))
    model.graph.output[0].name = "final"
    src, out = tmp_path / "func.onnx", tmp_path / "o.onnx"
    onnx.save(model, src)
    code, _, err = _run(capsys, "fuse", str(src), "-o", str(out))  # opset 17 -> 21
    assert code == 0, err
    assert [f.name for f in onnx.load(out).functions] == ["MyRelu"]
    import numpy as np

    from tests.helpers import run_ort

    x = np.random.default_rng(0).standard_normal((2, 8, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0], atol=1e-5)


def test_export_never_overwrites_the_model_source_or_its_package(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "blocks_18_1.py").write_text(
        "import torch\n\ndef block():\n    return torch.nn.GroupNorm(2, 4)\n"
    )
    (tmp_path / "nets.py").write_text(
        "from blocks_18_1 import block\n\ndef make_block():\n    return block()\n"
    )
    sources = {p: p.read_bytes() for p in tmp_path.glob("*.py")}
    for target in ("nets.py", "blocks_18_1.py"):
        code, _, err = _run(
            capsys, "export", "--model", f"{tmp_path}/nets.py:make_block", "--input",
            "x:1x4x8x8", "--exporter", "torchscript", "-o", str(tmp_path / target),
        )  # fmt: skip
        assert code == 2
        assert err.splitlines()[-1] == (
            f"gn-deploy export: error: -o {tmp_path / target}: is a source file of the "
            "--model; inputs are never overwritten"
        ), err
        assert {p: p.read_bytes() for p in tmp_path.glob("*.py")} == sources


def test_data_files_of_the_replaced_output_are_removed(
    wide_gn_model: Path, gn_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _external(wide_gn_model, tmp_path / "in.onnx", "in.onnx.data")
    out = tmp_path / "out.onnx"
    assert _run(capsys, "fuse", str(src), "-o", str(out))[0] == 0
    assert len(list(tmp_path.glob("out.onnx.*.data"))) == 1
    # the new output keeps its weights inside: the old data file goes, the input's stays
    code, _, err = _run(capsys, "fuse", str(gn_model), "-o", str(out))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "in.onnx.data", "out.onnx"]
    onnx.checker.check_model(str(out), full_check=True)
    # an output whose old data file is also an input's is replaced, the input left whole
    shared = _external(wide_gn_model, tmp_path / "shared.onnx", "out.onnx.1234.data")
    shutil.copy(shared, out)
    data = (tmp_path / "out.onnx.1234.data").read_bytes()
    assert _run(capsys, "fuse", str(shared), "-o", str(out))[0] == 0
    assert (tmp_path / "out.onnx.1234.data").read_bytes() == data
