"""Every `gn-deploy ...` example of the README and of each `--help` runs as written.

The examples run in one folder holding what they read: the demo model exported and fused,
an .npz of inputs, and the `my_project/nets.py` the export example names. Those that need a
GPU, TensorRT's builder, TensorRT-RTX or TensorRT's headers skip where these are missing;
the long benchmarks carry the `slow` marker.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from gn_deploy.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"

NETS = '''import torch


def make_vae() -> torch.nn.Module:
    """A VAE decoder's first block, in half precision."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 32, 3, padding=1), torch.nn.GroupNorm(8, 32), torch.nn.SiLU()
    ).half()
'''


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _commands(text: str) -> list[str]:
    """The `gn-deploy ...` command lines of ``text``, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip().startswith("gn-deploy ")]


def help_texts() -> dict[str, str]:
    texts = {"gn-deploy --help": build_parser().format_help()}
    texts.update({f"gn-deploy {n} --help": p.format_help() for n, p in _subcommands().items()})
    return {where: text.partition("\nexamples:\n")[2] for where, text in texts.items()}


def examples() -> dict[str, list[str]]:
    """Each example command, with where it is shown."""
    found: dict[str, list[str]] = {}
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    sources = [("README.md", block) for block in blocks] + list(help_texts().items())
    for where, text in sources:
        for command in _commands(text):  # one test per command, whatever its comment
            found.setdefault(shlex.join(shlex.split(command, comments=True)), []).append(where)
    return found


def test_every_subcommand_help_has_examples_of_it() -> None:
    texts = help_texts()
    for name in _subcommands():
        assert any(
            c.startswith(f"gn-deploy {name} ") for c in _commands(texts[f"gn-deploy {name} --help"])
        ), name


def _expanded(argv: list[str]) -> list[str]:
    """What a shell passes: ``~`` expanded."""
    return [os.path.expanduser(a) for a in argv]


def _has_gpu() -> bool:
    from gn_deploy.trt.runtimes import has_gpu

    return has_gpu()


def _marks(command: str) -> list[pytest.MarkDecorator]:
    argv = shlex.split(command, comments=True)
    rtx = "tensorrt-rtx" in argv
    marks = []
    if (argv[1] == "build" and not rtx) or "--engine" in argv:
        missing = importlib.util.find_spec("tensorrt") is None or not _has_gpu()
        marks.append(pytest.mark.skipif(missing, reason="needs TensorRT's builder and a GPU"))
    if rtx:
        missing = importlib.util.find_spec("tensorrt_rtx") is None
        marks.append(pytest.mark.skipif(missing, reason="needs TensorRT-RTX (gn-deploy[trt-rtx])"))
    if argv[1:3] == ["bench", "kernels"]:
        marks.append(pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA GPU"))
    if argv[1:3] == ["plugin", "build"]:
        headers = Path(_expanded(argv)[argv.index("--tensorrt-include") + 1])
        missing = not headers.is_dir() or shutil.which("nvcc") is None
        marks.append(pytest.mark.skipif(missing, reason=f"needs nvcc and {headers}"))
    heavy = (
        argv[1:] in (["bench", "fuse"], ["bench", "scaling"])
        or argv[1:3] == ["bench", "ort"]
        or "2.2" in argv
    )
    if heavy:
        marks.append(pytest.mark.slow)
    return marks


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the examples read: demo.onnx (dynamic batch), its two fused forms (demo.fused.onnx,
    demo.op.onnx), inputs, nets.py."""
    pytest.importorskip("torch", reason="the examples export torch models")
    from gn_deploy import export_model, fuse_model

    folder = tmp_path_factory.mktemp("examples")
    demo = folder / "demo.onnx"
    export_model("gn_deploy.models:demo_unet", ["x:2x4x32x32"], demo, dynamic=["x:0=batch"])
    fuse_model(demo, folder / "demo.fused.onnx")
    fuse_model(demo, folder / "demo.op.onnx", target="fused-op")
    x = np.random.default_rng(0).standard_normal((2, 4, 32, 32)).astype(np.float32)
    np.savez(folder / "my_inputs.npz", x=x)
    (folder / "my_project").mkdir()
    (folder / "my_project" / "nets.py").write_text(NETS)
    return folder


@pytest.mark.parametrize(
    "command",
    [pytest.param(c, marks=_marks(c), id=c[len("gn-deploy ") :]) for c in examples()],
)
def test_example_runs(
    command: str,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(workspace)
    code = main(_expanded(shlex.split(command, comments=True))[1:])
    err = capsys.readouterr().err
    assert code == 0, f"{command} ({', '.join(examples()[command])}): {err}"


def test_build_examples_give_profiles_the_demo_model_accepts(workspace: Path) -> None:
    """Checked without a builder, so that examples which need one are right here too."""
    import onnx

    from gn_deploy.trt.profiles import profiles_for

    builds = [shlex.split(c, comments=True) for c in examples() if c.startswith("gn-deploy build")]
    assert builds
    for argv in builds:
        shapes = [argv[k + 1] for k, a in enumerate(argv) if a == "--shapes"]
        model = onnx.load(workspace / argv[2], load_external_data=False)
        assert profiles_for(model, shapes), argv


def test_help_text_is_wrapped_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    parsers = {"gn-deploy": build_parser(), **_subcommands()}
    for name, parser in parsers.items():
        text = parser.format_help().partition("\nexamples:\n")[0]
        assert max(map(len, text.splitlines())) <= 80, name
