"""gn_deploy.FusedGroupNorm on ONNX Runtime: the custom-op library with the CPU kernels.

The library is built from the C++ sources that ship with the package (`plugin_src/cpu`, no CUDA
needed) by the machine's C++ compiler, once, into a per-user cache keyed by the sources, the
compiler and the flags; later calls load it from there. :func:`session_options` is what users
call: ONNX Runtime's SessionOptions with the op registered.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from gn_deploy.errors import GnDeployError
from gn_deploy.trt.plugin_build import SOURCES
from gn_deploy.trt.plugin_build import cache_folder as plugin_cache_folder

LIBRARY_ENV = "GN_DEPLOY_ORT_LIB"
FLAGS_ENV = "GN_DEPLOY_ORT_CXXFLAGS"
LIBRARY_NAME = "libgn_ort.so"
BUILD_LOG = "build.log"

_COMMON = ["-std=c++17", "-O3", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-psabi"]
# The kernels once per instruction set; the library picks one at run time (gn_cpu_isa).
_ISA_FLAGS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
}
_PLAIN_SOURCES = [
    "cpu/cpu_forward.cpp", "cpu/ort_op.cpp", "src/planner.cpp", "src/plugin_support.cpp"
]


def _isas() -> list[str]:
    return list(_ISA_FLAGS) if platform.machine() in ("x86_64", "AMD64") else ["baseline"]


def compiler() -> str:
    """The C++ compiler: $CXX, else c++, g++ or clang++ on PATH."""
    wanted = os.environ.get("CXX")
    for name in [wanted] if wanted else ["c++", "g++", "clang++"]:
        found = shutil.which(name)
        if found:
            return found
    raise GnDeployError(
        f"no C++ compiler found ({wanted or 'c++, g++, clang++'}): gn-deploy builds its ONNX "
        "Runtime op library from source once; install g++ (e.g. apt-get install g++) or set CXX"
    )


def _extra_flags() -> list[str]:
    return os.environ.get(FLAGS_ENV, "").split()


def _compile_jobs(out: Path) -> list[list[str]]:
    """One compiler command per object file."""
    include = ["-I", str(SOURCES / "include")]
    jobs = [
        [*_COMMON, *include, f"-DGN_ISA={isa}", *_ISA_FLAGS[isa], *_extra_flags(), "-c",
         str(SOURCES / "cpu" / "isa_kernels.cpp"), "-o", str(out / f"isa_{isa}.o")]
        for isa in _isas()
    ]
    for source in _PLAIN_SOURCES:
        obj = str(out / (Path(source).stem + ".o"))
        jobs.append([*_COMMON, *include, *_extra_flags(), "-c", str(SOURCES / source), "-o", obj])
    return jobs


def _inputs() -> list[Path]:
    """Every file the library is built from."""
    folders = [SOURCES / "cpu", SOURCES / "include" / "groupnorm"]
    files = {p for folder in folders for p in folder.iterdir()}
    return sorted(files | {SOURCES / s for s in _PLAIN_SOURCES})


def _key(cxx: str) -> str:
    """What the built library depends on: sources, compiler, flags, machine."""
    digest = hashlib.sha256()
    for path in _inputs():
        digest.update(path.name.encode() + path.read_bytes())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    digest.update(f"{version}{_COMMON}{_ISA_FLAGS}{_extra_flags()}{platform.machine()}".encode())
    return digest.hexdigest()[:16]


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise GnDeployError(
            f"building the ONNX Runtime op library failed ({Path(command[0]).name}):\n"
            f"{done.stderr.strip()}"
        )
    return done.stderr


def build_library(destination: Path) -> Path:
    """Compile and link the library into ``destination`` (replaced atomically); return its path.
    What the compiler said goes to ``build.log`` beside it (the tests require it empty)."""
    cxx = compiler()
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as tmp:
        out = Path(tmp)
        jobs = [[cxx, *job] for job in _compile_jobs(out)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            said = "".join(pool.map(_run, jobs))
        staged = out / LIBRARY_NAME
        objects = sorted(str(p) for p in out.glob("*.o"))
        said += _run([cxx, "-shared", *_extra_flags(), "-o", str(staged), *objects,
                      "-Wl,--no-undefined"])
        (destination.parent / BUILD_LOG).write_text(said)
        os.replace(staged, destination)
    return destination


def library_path() -> Path:
    """The library: $GN_DEPLOY_ORT_LIB when set, else the cached build, built on first use."""
    given = os.environ.get(LIBRARY_ENV)
    if given:
        path = Path(given)
        if not path.is_file():
            raise GnDeployError(f"{LIBRARY_ENV}={given}: no such file")
        return path
    return _cached_build()


@cache
def _cached_build() -> Path:
    """The library in the user cache, built there first if needed (once per process: the key
    reads every source)."""
    path = plugin_cache_folder().parent / "ort" / _key(compiler()) / LIBRARY_NAME
    if not path.is_file():
        print("gn-deploy: building the ONNX Runtime op library (once, about 15 s) ...",
              file=sys.stderr, flush=True)
        build_library(path)
    return path


@cache
def _cdll() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library_path()))
    lib.gn_cpu_isa.restype = ctypes.c_char_p
    return lib


def cpu_isa() -> str:
    """The instruction set the library's kernels run on this machine (avx512, avx2, baseline)."""
    return str(_cdll().gn_cpu_isa().decode())


def register(options: Any) -> Any:
    """Register the FusedGroupNorm op on an ``onnxruntime.SessionOptions``; returns it."""
    options.register_custom_ops_library(str(library_path()))
    return options


def session_options(threads: int = 0) -> Any:
    """``onnxruntime.SessionOptions`` with gn_deploy.FusedGroupNorm registered; ``threads``
    sets the intra-op thread count (0: ONNX Runtime's default, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return register(options)
