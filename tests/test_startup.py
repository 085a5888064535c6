"""Start-up: a `fuse` process imports nothing it does not use (onnx-ir's sympy, ~0.4 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Exporter

FUSE_THEN_REPORT = """
import sys
from gn_deploy.cli import main
code = main(["fuse", sys.argv[1], "-o", sys.argv[2]])
print(code, type(sys.modules["sympy"]).__name__, "torch" in sys.modules)
import importlib.util
print(importlib.util.find_spec("sympy").name)  # what optional-dependency checks call
import onnx_ir as ir
print(ir.SymbolicDim("batch") * 2, type(sys.modules["sympy"]).__name__)
"""


def test_fuse_never_loads_sympy_and_sympy_still_works_when_read(
    exported: Exporter, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FUSE_THEN_REPORT, str(exported("torchscript", 17)),
         str(tmp_path / "o.onnx")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-3:] == ["0 _Deferred False", "sympy", "2*batch module"], done.stdout


def test_export_loads_the_deferred_modules_in_full(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="export needs torch")
    code = (
        "import sys\nfrom gn_deploy.cli import main\n"
        f"assert main(['export', '--model', 'gn_deploy.models:gn_block', '--input', 'x:2x8x4x4',"
        f" '-o', {str(tmp_path / 'm.onnx')!r}]) == 0\n"
        "import sympy\nprint(type(sympy).__name__, sympy.Symbol('n') + 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "module n + 1"
