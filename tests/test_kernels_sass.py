"""The kernels' Hopper machine code, read without a GPU: what guards their speed in CI.

Every vector specialisation moves x in 16-byte accesses (LDG.E.128, or LDGSTS.*.128 copies into
shared memory, read back as LDS.128), no kernel touches local memory (LDL/STL: spills or a
stack array), and SiLU's exponential carries no subnormal guard. The register kernel (a
candidate path) loads and stores each of a thread's vectors exactly once, in 16 bytes.
cuobjdump and the nvdisasm it calls come from PyPI (nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm,
in the dev extra).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from gn_deploy import kernels

ARCH = "sm_90"


def _cuobjdump() -> Path | None:
    """cuobjdump with nvdisasm beside it (cuobjdump runs nvdisasm to print machine code)."""
    beside_python = Path(sys.executable).parent.parent.glob(
        "lib/python*/site-packages/nvidia/*/bin"
    )
    on_path = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    for folder in [*beside_python, *on_path]:
        if (folder / "cuobjdump").is_file() and (folder / "nvdisasm").is_file():
            return folder / "cuobjdump"
    return None


pytestmark = [
    pytest.mark.skipif(
        not kernels.library_path().is_file(),
        reason=f"GN kernel library not built at {kernels.library_path()}: needs nvcc",
    ),
    pytest.mark.skipif(
        _cuobjdump() is None,
        reason="cuobjdump and nvdisasm not found "
        "(pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)",
    ),
]


@cache
def _functions() -> dict[str, str]:
    """Mangled kernel name -> its sm_90 SASS."""
    tool = _cuobjdump()
    assert tool is not None
    env = {**os.environ, "PATH": f"{tool.parent}:{os.environ.get('PATH', '')}"}
    out = subprocess.run(
        [str(tool), "-sass", "-arch", ARCH, str(kernels.library_path())],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    parts = re.split(r"^\s*Function : (\S+)\s*$", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _kernel(pattern: str) -> list[tuple[str, str]]:
    return [(name, sass) for name, sass in _functions().items() if re.search(pattern, name)]


def test_the_library_holds_every_kernel_for_hopper() -> None:
    names = " ".join(_functions())
    for kernel in ("onchip_kernel", "cluster_kernel", "stats_kernel", "normalize_kernel"):
        for t in ("If", "I6__half", "I13__nv_bfloat16"):
            assert re.search(rf"{kernel}{t}Li(1|4|8)E", names), f"{kernel} {t} missing"
    assert len(_kernel(r"tiled_kernel")) == 6  # 3 dtypes x 2 layouts
    assert len(_kernel(r"register_kernel")) == 24  # 3 dtypes x 4 vectors per thread x 2 layouts


WIDE_LOAD = re.compile(r"\b(LDG\.E\.128|LDGSTS\.E(\.\w+)*\.128)\b")
NARROW_HALF_LOAD = re.compile(r"\bLDG\.E\.U16\b")


@pytest.mark.parametrize(
    "pattern",
    [
        r"(onchip|cluster|stats|normalize)_kernelIfLi4E",
        r"(onchip|cluster|stats|normalize)_kernelI6__halfLi8E",
        r"(onchip|cluster|stats|normalize)_kernelI13__nv_bfloat16Li8E",
        r"tiled_kernel",
        r"register_kernel",
    ],
)
def test_vector_kernels_load_x_in_16_byte_accesses(pattern: str) -> None:
    found = _kernel(pattern)
    assert found, f"no kernel matches {pattern}"
    for name, sass in found:
        assert WIDE_LOAD.search(sass), f"{name}: no 128-bit global load"
        assert not NARROW_HALF_LOAD.search(sass), f"{name}: 16-bit loads of x"


def test_no_kernel_touches_local_memory() -> None:
    offenders = [name for name, sass in _functions().items() if re.search(r"\b(LDL|STL)\b", sass)]
    assert not offenders, f"local memory (spills or stack arrays) in {offenders}"


# Four 32-bit shared loads at +0, +4, +8, +0xc of one register: a 16-byte vector read in four.
SPLIT_SHARED_VECTOR = re.compile(
    r"LDS R\d+, \[(R\d+)\] ;(?:.*\n){1,6}.*LDS R\d+, \[\1\+0x4\] ;"
    r"(?:.*\n){1,6}.*LDS R\d+, \[\1\+0x8\] ;(?:.*\n){1,6}.*LDS R\d+, \[\1\+0xc\] ;"
)


@pytest.mark.parametrize(
    ("pattern", "no_split"),
    [
        (r"tiled_kernelI\w+Lb0E", True),
        (r"tiled_kernelI\w+Lb1E", False),  # sums runs of per-channel floats: scalar by nature
        (r"onchip_kernelI\w+Li(4|8)E", True),
        (r"cluster_kernelI\w+Li(4|8)E", True),
    ],
)
def test_staged_tiles_are_read_back_in_16_byte_vectors(pattern: str, no_split: bool) -> None:
    found = _kernel(pattern)
    assert found, f"no kernel matches {pattern}"
    for name, sass in found:
        assert re.search(r"\bLDS\.128\b", sass), f"{name}: no 128-bit shared load"
        if no_split:
            assert not SPLIT_SHARED_VECTOR.search(sass), f"{name}: a vector read as four LDS"


def test_silu_exponential_has_no_subnormal_guard() -> None:
    # __expf's non-flushing 2^x: compare with -126, halve, square; 1 + e makes it moot
    guard = re.compile(r"FSETP\.GEU\.AND P\d, PT, R\d+, -126, PT")
    for name, sass in _kernel(r"(tiled|onchip|cluster|normalize|register)_kernel"):
        assert "MUFU.EX2" in sass, f"{name}: no exponential (SiLU) found"
        assert not guard.search(sass), f"{name}: subnormal guard around 2^x"


def test_tiled_kernel_stores_y_streaming_in_16_bytes() -> None:
    for name, sass in _kernel(r"tiled_kernel"):
        assert re.search(r"\bSTG\.E\.EF\.128\b", sass), f"{name}: no 16-byte streaming store"


def test_register_kernel_moves_each_vector_once_in_16_bytes() -> None:
    # VPT vectors per thread: VPT 16-byte loads of x and VPT 16-byte stores of y, each once (no
    # reload); shared memory only for the reduction (as many shared loads whatever VPT: nothing
    # staged); the cluster barrier of the 2-block variant
    shared_loads: dict[str, set[int]] = {}
    for name, sass in _kernel(r"register_kernel"):
        variant = re.search(r"register_kernelI(\w+?)Li(\d)E(Lb\d)", name)
        assert variant, name
        vpt = int(variant.group(2))
        assert len(re.findall(r"\bLDG\.E\.128\b", sass)) == vpt, name
        assert len(re.findall(r"\bSTG\.E\.128\b", sass)) == vpt, name
        assert "LDGSTS" not in sass, f"{name}: copies into shared memory"
        key = variant.group(1) + variant.group(3)
        shared_loads.setdefault(key, set()).add(len(re.findall(r"\bLDS(\.\w+)*\b", sass)))
        assert "UCGABAR_WAIT" in sass, f"{name}: no cluster barrier"
    assert len(shared_loads) == 6
    assert all(len(counts) == 1 for counts in shared_loads.values()), shared_loads


def test_register_kernel_has_every_load_in_flight_before_using_x() -> None:
    # no arithmetic between a thread's first and last 16-byte load: one memory latency, not VPT
    for name, sass in _kernel(r"register_kernel"):
        lines = [line for line in sass.splitlines() if re.search(r"/\*[0-9a-f]{4}\*/", line)]
        loads = [i for i, line in enumerate(lines) if re.search(r"\bLDG\.E\.128\b", line)]
        between = lines[loads[0] : loads[-1]]
        used = [line for line in between if re.search(r"\b(FADD|FFMA|FMUL|HADD2)\b", line)]
        assert not used, f"{name}: x used before its last load is issued: {used[0].strip()}"
