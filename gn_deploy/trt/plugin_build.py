"""`gn-deploy plugin build|path`: the TensorRT plugin library, built from the sources that ship
with the package (CMake + nvcc) into a per-user cache, wherever gn-deploy is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from gn_deploy.errors import GnDeployError, UsageError

SOURCES = Path(__file__).resolve().parents[1] / "plugin_src"
LIBRARY_NAME = "libgn_trt_plugin.so"


def cache_folder() -> Path:
    """Where `plugin build` puts its build: $XDG_CACHE_HOME/gn-deploy/plugin (~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gn-deploy" / "plugin"


def built_library() -> Path | None:
    """The library `plugin build` made, if it did."""
    path = cache_folder() / LIBRARY_NAME
    return path if path.is_file() else None


HEADER = "NvInferRuntime.h"
# Where the plugin's CMakeLists looks for TensorRT's headers without -DTensorRT_INCLUDE_DIR
# (with $TensorRT_ROOT/include first).
HEADER_FOLDERS = (
    "/usr/include",
    "/usr/local/include",
    "/usr/include/x86_64-linux-gnu",
    "/usr/local/tensorrt/include",
    "/opt/tensorrt/include",
)


def _found_headers() -> Path:
    """The first of the usual folders that holds TensorRT's headers (checked before any build
    step runs or the cache folder is touched)."""
    root = os.environ.get("TensorRT_ROOT")  # noqa: SIM112 (the name CMake reads)
    folders = [Path(root) / "include"] if root else []
    folders += map(Path, HEADER_FOLDERS)
    for folder in folders:
        if (folder / HEADER).is_file():
            return folder
    raise UsageError(
        f"no TensorRT headers ({HEADER}) in {', '.join(map(str, folders))}: pass "
        "--tensorrt-include DIR (a TensorRT install's or a NVIDIA/TensorRT checkout's include/)"
    )


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise GnDeployError(f"{name} not found: {hint}")
    return found


def build_plugin(tensorrt_include: str | os.PathLike[str] | None, cuda_archs: str | None) -> Path:
    """Configure and build the plugin library in the cache folder; return its path."""
    if not (SOURCES / "CMakeLists.txt").is_file():
        raise GnDeployError(f"{SOURCES}: the plugin sources are missing from this install")
    if tensorrt_include and not (Path(tensorrt_include) / HEADER).is_file():
        raise UsageError(f"--tensorrt-include {tensorrt_include}: no {HEADER} there")
    archs = [a.strip() for a in cuda_archs.split(",")] if cuda_archs is not None else []
    if not all(re.fullmatch(r"\d+[af]?", a) for a in archs):
        raise UsageError(f"--cuda-arch {cuda_archs!r}: expected numbers like 86,89,90 (or 90a)")
    include = Path(tensorrt_include) if tensorrt_include else _found_headers()
    cmake = _tool("cmake", "pip install cmake, or install it with your system's packages")
    nvcc = _tool("nvcc", "install the CUDA toolkit (nvcc) and put it on PATH")
    known = _nvcc_architectures(nvcc)
    unknown = [a for a in archs if known and a.rstrip("af") not in known]
    if unknown:
        raise UsageError(f"--cuda-arch {unknown[0]}: this nvcc builds for {', '.join(known)}")
    build = cache_folder() / "build"
    configure = [cmake, "-S", str(SOURCES), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    configure.append(f"-DTensorRT_INCLUDE_DIR={include.resolve()}")
    if cuda_archs is not None:
        configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={cuda_archs.replace(',', ';')}")
    _run(configure, "CMake could not configure the plugin build")
    _run(
        [cmake, "--build", str(build), "--target", "gn_trt_plugin", "-j"],
        "the plugin library did not build",
    )
    library = build / LIBRARY_NAME
    if not library.is_file():
        raise GnDeployError(f"{library}: not made by the build")
    target = cache_folder() / LIBRARY_NAME
    shutil.copy2(library, target)
    return target


def _nvcc_architectures(nvcc: str) -> list[str]:
    """The compute capabilities nvcc can build for, as "75", "80", ... ([] if it won't say)."""
    done = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=False)
    found = re.findall(r"compute_(\d+)", done.stdout) if done.returncode == 0 else []
    return sorted(set(found), key=int)


def _run(command: list[str], failure: str) -> None:
    """Run a build step, its output shown on stderr as it comes (captured, then shown, where
    stderr is no file, as under pytest)."""
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    try:
        stream: int | None = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        stream = None
    done = subprocess.run(
        command,
        stdout=stream if stream is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if stream is None and done.stdout:
        print(done.stdout, file=sys.stderr, end="")
    if done.returncode != 0:
        raise GnDeployError(f"{failure} (exit {done.returncode}; its output is above)")
