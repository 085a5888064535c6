"""`bench` as a user meets it: progress while it runs, nothing unexplained, options that count."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gn_deploy.cli import main
from gn_deploy.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    plain = io.StringIO()
    with Progress(2, plain) as progress:
        progress.step("exporting")
        progress.step("fusing")
    assert plain.getvalue() == "[1/2] exporting\n[2/2] fusing\n"
    terminal = _Terminal()
    with Progress(2, terminal) as progress:
        progress.step("exporting a long name")
        progress.step("fusing")
    frames = terminal.getvalue().split("\r")[1:]
    assert len(frames) == 2 and terminal.getvalue().count("\n") == 1
    assert frames[0].startswith("[" + "." * 24 + "] 1/2 exporting")
    assert frames[1].startswith("[" + "#" * 12 + "." * 12 + "] 2/2 fusing")
    assert len(frames[1].rstrip("\n")) == len(frames[0])  # the longer line is blanked out


def test_bench_fuse_shows_progress_and_explains_the_peer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch", reason="exports a model")
    src = tmp_path / "demo.onnx"
    assert main(["export", "--model", "gn_deploy.models:demo_unet", "--input", "x:1x4x32x32",
                 "--exporter", "torchscript", "-o", str(src)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["bench", "fuse", str(src), "--repeat", "1"]) == 0
    out, err = capsys.readouterr()
    # its peer's symbolic shape inference fails on this model: said in its row, not printed bare
    assert "failed in shape inference" not in out.split("| model |")[0]
    (peer,) = [row for row in out.splitlines() if "peer:" in row]
    assert "symbolic shape inference failed on this model" in peer
    steps = [line for line in err.splitlines() if line.startswith("[")]
    assert steps[0] == "[1/6] demo.onnx: fuse --target onnx: warm-up"
    assert steps[-1].startswith("[6/6] demo.onnx: the peer: run 1/1")


@pytest.mark.parametrize("what", ["memory", "scaling", "kernels"])
def test_bench_that_makes_its_own_model_refuses_one(
    capsys: pytest.CaptureFixture[str], what: str
) -> None:
    assert main(["bench", what, "m.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"bench {what} m.onnx: takes no model" in err[0]


def test_bench_memory_shows_small_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "memory", "--gigabytes", "0.01"]) == 0
    out, err = capsys.readouterr()
    assert "[1/3] writing a model with 0.01 GB of weights" in err
    rows = [r for r in out.splitlines() if r.startswith(("| onnx", "| trt-plugin"))]
    assert len(rows) == 2
    for row in rows:
        weights = row.strip("|").split("|")[3].strip()
        assert float(weights) == pytest.approx(9 / 256, rel=0.01), row  # one 1024x1024x3x3 conv
