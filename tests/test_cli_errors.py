"""Every bad input gives one clear line naming it, the right exit code, and no traceback."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from gn_deploy.cli import main
from tests.conftest import Exporter
from tests.helpers import plugin_model


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    code, _, err = _run(capsys, "fuse", str(missing), "-o", str(tmp_path / "o.onnx"))
    assert code == 2
    _one_error_line(err, str(missing), "no such file")


def test_directory_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "inspect", str(tmp_path))
    assert code == 2
    _one_error_line(err, str(tmp_path), "directory")


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an onnx model\n", b"\x08\x07\x12\xff\xff"],
    ids=["empty", "text", "garbage"],
)
def test_invalid_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    code, _, err = _run(capsys, "fuse", str(bad), "-o", str(tmp_path / "o.onnx"))
    assert code == 1
    _one_error_line(err, str(bad))
    assert not (tmp_path / "o.onnx").exists()


def test_truncated_file(
    capsys: pytest.CaptureFixture[str], exported: Exporter, tmp_path: Path
) -> None:
    data = exported("torchscript", 17).read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = _run(capsys, "inspect", str(cut))
    assert code == 1
    _one_error_line(err, str(cut))


@pytest.mark.parametrize("target", ["onnx", "trt-plugin"])
def test_model_without_gn(capsys: pytest.CaptureFixture[str], tmp_path: Path, target: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    src = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    out = tmp_path / "o.onnx"
    # --strict: an error, nothing written
    code, _, err = _run(capsys, "fuse", str(src), "-o", str(out), "--target", target, "--strict")
    assert code == 1
    _one_error_line(err, str(src), "no group normalization")
    assert not out.exists()
    # otherwise batch pipelines go on: the model is written unchanged (not even its opset
    # raised), with one line saying so
    code, out_text, _ = _run(capsys, "fuse", str(src), "-o", str(out), "--target", target)
    assert code == 0
    assert "note: no group normalization found: the model is written unchanged" in out_text
    assert "upgraded" not in out_text
    assert out.read_bytes() == src.read_bytes()


def test_output_equal_to_input(
    capsys: pytest.CaptureFixture[str], exported: Exporter, tmp_path: Path
) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(exported("torchscript", 17).read_bytes())
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    code, _, err = _run(capsys, "fuse", str(src), "-o", str(src))
    assert code == 2
    _one_error_line(err, str(src), "input")
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before


def test_unknown_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fuse", "m.onnx", "-o", "o.onnx", "--target", "tensorrt"])
    assert exc.value.code == 2
    assert "tensorrt" in capsys.readouterr().err


@pytest.mark.parametrize(
    "ref",
    [
        "no_such_module_xyz:make",
        "gn_deploy.models:no_such_factory",
        "gn_deploy.models",
        "gn_deploy:__version__",
    ],
)
def test_unloadable_model(capsys: pytest.CaptureFixture[str], tmp_path: Path, ref: str) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    code, _, err = _run(
        capsys, "export", "--model", ref, "--input", "x:1x4x8x8", "-o", str(tmp_path / "m.onnx")
    )
    assert code in (1, 2)
    _one_error_line(err, ref)


def test_bad_input_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(
        capsys,
        "export",
        "--model",
        "gn_deploy.models:gn_block",
        "--input",
        "x:1xAx8",
        "-o",
        str(tmp_path / "m.onnx"),
    )
    assert code == 2
    _one_error_line(err, "x:1xAx8")


def test_verbose_shows_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    code, _, err = _run(capsys, "--verbose", "inspect", str(bad))
    assert code == 1
    assert "Traceback" in err


def test_fuse_never_modifies_input(
    exported: Exporter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = exported("dynamo", 18)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    code, out, _ = _run(
        capsys,
        "fuse",
        str(src),
        "-o",
        str(tmp_path / "o.onnx"),
        "--report",
        str(tmp_path / "r.json"),
    )
    assert code == 0
    assert "2 fused" in out
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx", "r.json"]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["fuse", "in.onnx", "-o", "o.onnx", "--seed", "-1"], "--seed"),
        (["inspect", "in.onnx", "--seed", "x"], "--seed"),
        (["bench", "fuse", "--repeat", "-1"], "--repeat"),
        (["bench", "fuse", "--repeat", str(10**12)], "--repeat"),
        (["bench", "memory", "--gigabytes", "nan"], "--gigabytes"),
        (["bench", "memory", "--gigabytes", "-1"], "--gigabytes"),
        (["validate", "a.onnx", "--tolerance", "-1"], "--tolerance"),
        (["validate", "a.onnx", "--tolerance", "nan"], "--tolerance"),
        (["export", "--model", "m:f", "--input", "x:1", "-o", "o.onnx", "--opset", "1"], "--opset"),
    ],
)
def test_numeric_options_are_bounded(
    capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err.splitlines()[-1] and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "{tmp}/missing.onnx", "-o", "{tmp}/e.engine"],
        ["build", "{tmp}", "-o", "{tmp}/e.engine"],
        ["build", "{tmp}/corrupt.onnx", "-o", "{tmp}/e.engine"],
        ["bench", "fuse", "{tmp}/missing.onnx"],
        ["fuse", "{tmp}/corrupt.onnx", "-o", "{tmp}/" + "n" * 300 + ".onnx"],
    ],
)
def test_bad_paths_get_one_line_naming_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage")
    args = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = _run(capsys, *args)
    assert code in (1, 2)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error" not in err, err
    named = [a for a in args if a.startswith(str(tmp_path))]
    assert any(a in lines[0] for a in named), lines[0]


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("import sys\nsys.exit(0)\n", "sys.exit(0)"),
        # a module the model file imports that is missing: a failure, not a usage error
        ("import no_such_dependency_xyz\n", "no_such_dependency_xyz"),
    ],
    ids=["exits", "missing-dependency"],
)
def test_model_file_that_fails_on_import(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, source: str, needle: str
) -> None:
    code, _, err = _run(
        capsys,
        "export",
        "--model",
        _model_file(tmp_path / "quits.py", source),
        "--input",
        "x:1x4",
        "-o",
        str(tmp_path / "o.onnx"),
    )
    assert code == 1
    _one_error_line(err, needle)


def test_model_file_named_like_a_library_does_not_replace_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    (tmp_path / "onnx.py").write_text(
        "import torch\n\ndef f():\n    return torch.nn.GroupNorm(2, 4)\n"
    )
    out = tmp_path / "o.onnx"
    code, _, err = _run(
        capsys,
        "export",
        "--model",
        f"{tmp_path}/onnx.py:f",
        "--input",
        "x:1x4x3x3",
        "--exporter",
        "torchscript",
        "-o",
        str(out),
    )
    assert code == 0, err
    import onnx

    assert onnx.load(out).graph.node  # the real onnx module still works


def test_dynamic_axis_beyond_the_input_rank(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    code, _, err = _run(
        capsys,
        "export",
        "--model",
        "gn_deploy.models:gn_block",
        "--input",
        "x:1x4x8x8",
        "--dynamic",
        "x:9=batch",
        "-o",
        str(tmp_path / "o.onnx"),
    )
    assert code == 2
    _one_error_line(err, "x:9", "4 axes")


def test_validate_feed_names_are_the_models(
    capsys: pytest.CaptureFixture[str], exported: Exporter, tmp_path: Path
) -> None:
    src = exported("torchscript", 17)
    code, _, err = _run(capsys, "validate", str(src), str(src), "--input", "zz:2x8x5x6")
    assert code == 2
    _one_error_line(err, "zz", "no input of that name", "x")


def test_exporter_failure_text_becomes_one_line() -> None:
    from gn_deploy.export import _summary

    text = "\x1b[31m\n=====\nTorch export failed: bad op\x1b[0m\n  details...\n more\n"
    assert _summary(RuntimeError(text)) == "Torch export failed: bad op"


@pytest.mark.parametrize(
    ("attributes", "needles"),
    [
        ({"num_groups": 7, "epsilon": 1e-5}, ["C = 32", "num_groups = 7"]),
        ({"num_groups": 8, "epsilon": 1e-5, "channels_last": 2}, ["channels_last", "0 or 1"]),
        ({"num_groups": 8, "epsilon": 1e-5, "activation": 3}, ["activation", "SiLU"]),
        ({"num_groups": 8, "epsilon": -1.0}, ["epsilon", ">= 0"]),
        ({"num_groups": 8.0, "epsilon": 1e-5}, ["num_groups", "positive integer"]),
        ({"num_groups": 8}, ["needs the attribute epsilon"]),
    ],
    ids=["groups", "channels_last", "activation", "epsilon", "float-groups", "no-epsilon"],
)
def test_build_and_validate_name_the_plugin_node_the_plugin_would_refuse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, attributes: dict, needles: list[str]
) -> None:
    model = plugin_model(tmp_path / "p.onnx", **attributes)
    engine = tmp_path / "p.engine"
    code, _, err = _run(capsys, "build", str(model), "-o", str(engine))
    assert code == 1
    _one_error_line(err, str(model), "node 'gn0'", *needles)
    assert not engine.exists()
    good = plugin_model(tmp_path / "good.onnx", num_groups=8, epsilon=1e-5)
    code, _, err = _run(capsys, "validate", str(good), str(model), "--input", "x:1x32x4x4")
    assert code == 1
    _one_error_line(err, str(model), "node 'gn0'", *needles)


def _export_in_a_fresh_process(
    tmp_path: Path, model: str, spec: str
) -> subprocess.CompletedProcess[str]:
    """What torch logs once per process (or straight to stderr) shows only in a fresh one."""
    pytest.importorskip("torch", reason="export needs torch")
    return subprocess.run(
        [sys.executable, "-m", "gn_deploy.cli", "export", "--model", model, "--input", spec,
         "-o", str(tmp_path / "m.onnx")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_dynamo_export_says_nothing_about_missing_op_libraries(tmp_path: Path) -> None:
    """torch's exporter lists each optional op library it did not find (torchvision's nms, ...)
    once per process."""
    done = _export_in_a_fresh_process(tmp_path, "gn_deploy.models:demo_unet", "x:1x4x16x16")
    assert done.returncode == 0, done.stderr
    assert "Skipping" not in done.stderr and "not installed" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == ["exporting gn_deploy.models:demo_unet with the "
                                                "dynamo exporter ..."], done.stderr  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["export", "--model", "{tmp}/nope.py:f", "--input", "x:1x4", "-o", "{tmp}/o.onnx"],
         "{tmp}/nope.py: no such file"),
        (["export", "--model", "no_such_module_xyz:f", "--input", "x:1x4", "-o", "{tmp}/o.onnx"],
         "no module named 'no_such_module_xyz'"),
        (["export", "--model", "gn_deploy.models:nope", "--input", "x:1x4", "-o", "{tmp}/o.onnx"],
         "has no attribute 'nope'"),
        (["fuse", "{tmp}/nothere.onnx", "-o", "{tmp}/o.onnx"], "{tmp}/nothere.onnx: no such file"),
        (["inspect", "{tmp}/nothere.onnx"], "{tmp}/nothere.onnx: no such file"),
        (["validate", "{tmp}/nothere.onnx", "{tmp}/nothere.onnx", "--input", "x:1x4"],
         "{tmp}/nothere.onnx: no such file"),
        (["build", "{tmp}/nothere.onnx", "-o", "{tmp}/e.engine"],
         "{tmp}/nothere.onnx: no such file"),
    ],
)  # fmt: skip
def test_a_missing_input_is_a_usage_error_everywhere(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], named: str
) -> None:
    if argv[0] == "export":
        pytest.importorskip("torch", reason="export needs torch")
    code, _, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2, err
    _one_error_line(err, named.format(tmp=tmp_path))
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [(None, 2, "no such file"), (b"not onnx\n", 1, "not a valid ONNX model")],
    ids=["missing", "not-onnx"],
)
def test_validate_names_a_file_it_cannot_read(
    capsys: pytest.CaptureFixture[str],
    exported: Exporter,
    tmp_path: Path,
    content: bytes | None,
    code: int,
    needle: str,
) -> None:
    bad = tmp_path / "bad.onnx"
    if content is not None:
        bad.write_bytes(content)
    for argv in ([str(bad), str(exported("torchscript", 17))], [str(bad), str(bad)]):
        got, _, err = _run(capsys, "validate", *argv)
        assert got == code, err
        assert "internal error" not in err
        _one_error_line(err, str(bad), needle)


@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        ("x:2x8x5", ["--input x:", "4 axes, given 3 (2x8x5)"]),
        ("x:2x8x5x7", ["--input x:", "axis 3 is 6 in the model, given 7 (2x8x5x7)"]),
        ("x:2x8x5x6:float16", ["--input x:", "input is float32, given float16"]),
    ],
    ids=["rank", "axis", "dtype"],
)
def test_validate_checks_feeds_against_the_model_inputs(
    capsys: pytest.CaptureFixture[str], exported: Exporter, spec: str, needles: list[str]
) -> None:
    src = exported("torchscript", 17)
    code, _, err = _run(capsys, "validate", str(src), str(src), "--input", spec)
    assert code == 2
    _one_error_line(err, str(src), *needles)
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", ["build", "validate"])
def test_dynamic_dims_are_shown_by_their_axis_name(
    capsys: pytest.CaptureFixture[str], exported: Exporter, tmp_path: Path, command: str
) -> None:
    src = exported("torchscript", 17, dynamic=True)
    argv = [str(src), "-o", str(tmp_path / "e.engine")] if command == "build" else [str(src)] * 2
    code, _, err = _run(capsys, command, *argv)
    assert code == 2
    _one_error_line(err, "input 'x' has dynamic dimensions [batch, 8, 5, 6]")


@pytest.mark.parametrize(
    ("inputs", "cause"),
    [
        (["x:1x8x8x8", "y:1x8x8x8"], "too many positional arguments"),
        (["x:8"], "Expected at least 2 dimensions for input tensor but received 1"),
    ],
    ids=["arguments", "rank"],
)
def test_dynamo_export_failure_is_its_cause_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, inputs: list[str], cause: str
) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    argv = ["export", "--model", "gn_deploy.models:gn_block", "-o", str(tmp_path / "m.onnx")]
    for spec in inputs:
        argv += ["--input", spec]
    code, _, err = _run(capsys, *argv)
    assert code == 1
    _one_error_line(err, "dynamo export of the model failed: " + cause)
    assert not list(tmp_path.iterdir())


def test_dynamo_export_failure_logged_by_torch_stays_one_line(tmp_path: Path) -> None:
    """torch logs this failure itself (``E1202 ...``) before raising."""
    done = _export_in_a_fresh_process(tmp_path, "gn_deploy.models:gn_block", "x:1x8x8x8:int64")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[1:] == [
        "gn-deploy export: error: dynamo export of the model failed: mean(): could not infer "
        "output dtype. Input dtype must be either a floating point or complex dtype. Got: "
        "torch.int64"
    ], done.stderr


def _model_file(path: Path, source: str) -> str:
    """A user's model file: its --model reference (factory ``f``)."""
    pytest.importorskip("torch", reason="export needs torch")
    path.write_text(source)
    return f"{path}:f"


def test_bf16_export_below_opset_22_names_the_opset_it_needs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ref = _model_file(
        tmp_path / "bf.py",
        "import torch\n\ndef f():\n    return torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3), "
        "torch.nn.GroupNorm(2, 8)).to(torch.bfloat16)\n",
    )
    argv = ["export", "--model", ref, "--input", "x:2x8x8x8:bfloat16"]
    code, _, err = _run(capsys, *argv, "-o", str(tmp_path / "bf.onnx"))
    assert code == 1
    _one_error_line(err, "Conv", "bfloat16", "export with --opset 22")
    assert not (tmp_path / "bf.onnx").exists()
    code, _, err = _run(capsys, *argv, "--opset", "22", "-o", str(tmp_path / "bf.onnx"))
    assert code == 0, err
