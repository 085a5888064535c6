"""`gn-deploy plugin build|path`: the plugin library from the sources that ship with the package."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gn_deploy.cli import main
from gn_deploy.trt import plugin, plugin_build

ROOT = Path(__file__).resolve().parent.parent
HEADERS = Path(os.environ.get("TENSORRT_INCLUDE_DIR", ROOT / "build" / "trt-include" / "include"))


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No plugin library anywhere gn-deploy looks; a fresh cache folder."""
    monkeypatch.delenv(plugin.PLUGIN_ENV, raising=False)
    monkeypatch.setattr(plugin, "_CANDIDATES", ())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_path_without_a_library_says_how_to_build_one(
    nowhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugin", "path"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gn-deploy plugin build --tensorrt-include" in err[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--tensorrt-include", "/nonexistent"], "NvInferRuntime.h"),
        (["--cuda-arch", "sm_90"], "--cuda-arch"),
    ],
)
def test_bad_build_options(
    nowhere: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert main(["plugin", "build", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_no_tensorrt_headers_is_one_line_before_anything_runs(
    nowhere: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TensorRT_ROOT", raising=False)
    monkeypatch.setattr(plugin_build, "HEADER_FOLDERS", (str(nowhere / "include"),))
    assert main(["plugin", "build"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no TensorRT headers" in err[0] and "--tensorrt-include" in err[0]
    assert str(nowhere / "include") in err[0]
    assert not (nowhere / "cache").exists()


@pytest.mark.skipif(
    subprocess.run(["which", "nvcc"], capture_output=True).returncode != 0, reason="needs nvcc"
)
def test_an_architecture_nvcc_does_not_know_is_named(
    nowhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = nowhere / "include"
    headers.mkdir()
    (headers / "NvInferRuntime.h").write_text("")
    assert (
        main(["plugin", "build", "--tensorrt-include", str(headers), "--cuda-arch", "86,9999"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cuda-arch 9999" in err[0] and "86" in err[0]
    assert not (nowhere / "cache" / "gn-deploy" / "plugin" / "build").exists()


def test_the_wheel_carries_the_plugin_sources(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("gn_deploy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for source in ("CMakeLists.txt", "src/tiled_kernel.cuh", "src/trt_plugin.cpp",
                   "include/groupnorm/groupnorm.h"):  # fmt: skip
        assert f"gn_deploy/plugin_src/{source}" in names, source
    from gn_deploy import ort_library  # every file the ONNX Runtime op library is built from

    for path in ort_library._inputs():
        source = path.relative_to(ort_library.SOURCES).as_posix()
        assert f"gn_deploy/plugin_src/{source}" in names, source


@pytest.mark.skipif(
    not (HEADERS / "NvInferRuntime.h").is_file(),
    reason=f"needs TensorRT's headers (none at {HEADERS}; set TENSORRT_INCLUDE_DIR)",
)
@pytest.mark.skipif(
    subprocess.run(["which", "nvcc"], capture_output=True).returncode != 0, reason="needs nvcc"
)
def test_build_then_path(nowhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugin", "build", "--tensorrt-include", str(HEADERS), "--cuda-arch", "90"]) == 0
    built = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert built == nowhere / "cache" / "gn-deploy" / "plugin" / "libgn_trt_plugin.so"
    library = ctypes.CDLL(str(built))  # loads without libnvinfer
    assert hasattr(library, "getCreators") and hasattr(library, "setLoggerFinder")
    assert main(["plugin", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(built)
