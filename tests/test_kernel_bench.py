"""`gn-deploy bench kernels` on the CPU: the torch.compile peer is compiled and proven compiled.

torch.compile runs on the CPU with inductor and the system's C++ compiler, so the peer logic is
tested here; the timing itself needs a GPU (scripts/gpu_check.sh).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gn_deploy.errors import GnDeployError
from gn_deploy.kernel_bench import CompiledPeer, Floor, Row, _summary, bench_paths
from tests.kernel_support import needs_library

torch: Any = pytest.importorskip("torch", reason="the torch.compile peer needs torch")
group_norm = torch.nn.functional.group_norm


def _inputs(side: int) -> tuple[Any, ...]:
    return torch.randn(2, 8, side, side), 4, torch.rand(8) + 0.5, torch.randn(8)


def test_peer_runs_compiled_code_on_every_call() -> None:
    peer = CompiledPeer(torch, group_norm)
    args = _inputs(4)
    for _ in range(3):
        out = peer(*args)
    assert (peer.calls, peer.compiled_runs, peer.graphs) == (3, 3, 1)
    assert peer.fallback() is None
    torch.testing.assert_close(out, group_norm(*args))


def test_peer_never_called_is_not_a_pass() -> None:
    assert CompiledPeer(torch, group_norm).fallback() == "never called"


def test_recompile_past_the_limit_is_caught() -> None:
    # what the old bench did: one compiled function for every shape; past the recompile limit
    # dynamo runs group_norm eagerly (a log warning, the right values, no error)
    peer = CompiledPeer(torch, group_norm)
    with torch._dynamo.config.patch(recompile_limit=1):
        peer(*_inputs(4))
        args = _inputs(5)
        out = peer(*args)
    torch.testing.assert_close(out, group_norm(*args))
    assert (peer.calls, peer.compiled_runs) == (2, 1)
    assert peer.fallback() == (
        "2 calls ran 1 compiled graphs (1 compiled): dynamo fell back to eager or broke the graph"
    )


def test_a_new_torch_compile_shares_the_recompile_limit() -> None:
    # every torch.compile of group_norm wraps the same code object: a fresh torch.compile alone
    # does not avoid the limit, which is why each peer resets dynamo first
    peer = CompiledPeer(torch, group_norm)
    with torch._dynamo.config.patch(recompile_limit=1):
        torch.compile(group_norm, dynamic=False)(*_inputs(4))
        peer(*_inputs(5))
    assert peer.compiled_runs == 0
    assert peer.fallback() is not None


def test_a_fresh_peer_per_shape_compiles_every_shape() -> None:
    with torch._dynamo.config.patch(recompile_limit=1):
        for side in (3, 4, 5):
            peer = CompiledPeer(torch, group_norm)
            peer(*_inputs(side))
            assert peer.fallback() is None, side


def _row(name: str, layout: str, compiled_us: float, fallback: str | None = None) -> Row:
    floor = Floor(copy_gbs=4000.0, empty_us=1.0, l2_bytes=60 << 20)
    return Row(
        name,
        layout,
        "float16",
        128.0,
        "tiled",
        160.0,
        162.0,
        230.0,
        1900.0,
        compiled_us,
        floor,
        fallback,
    )


def test_a_row_without_a_compiled_peer_is_marked_invalid() -> None:
    bad = _row("sd-vae-512", "NHWC", 1885.0, "2 calls ran 1 compiled graphs")
    cells = [c.strip() for c in bad.markdown().split("|")]
    assert cells[12:14] == ["NOT COMPILED", "invalid"]
    assert "1885.0" not in bad.markdown()
    good = _row("sd-vae-512", "NCHW", 640.0)
    assert [c.strip() for c in good.markdown().split("|")][12:14] == ["640.0", "4.00x"]
    summary = _summary([good, bad])
    assert (
        "- >= 1.0x the best torch peer: worst 4.00x (1 rows without a valid torch.compile time)"
        in summary
    )
    assert summary[-1] == (
        "ERROR: torch.compile did not run compiled on sd-vae-512 NHWC: " + bad.compiled_fallback
    )
    valid = _summary([good, _row("sd-vae-512", "NHWC", 700.0)])
    assert not any(line.startswith("ERROR") for line in valid)
    assert "- >= 1.0x the best torch peer: worst 4.00x" in valid


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_bench_paths_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(GnDeployError, match="needs a CUDA GPU"):
        bench_paths(1)


@needs_library
def test_bench_paths_times_every_path_that_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    # the table logic without a GPU: an H200 description, and each path "timed" at a fixed
    # value (registers fastest)
    from gn_deploy import kernel_bench as kb
    from gn_deploy import kernels as k

    h200 = k.Device(132, 232448, 9, 0, 233472, k.Feature.CLUSTER | k.Feature.COOPERATIVE)
    props = SimpleNamespace(name="H200", multi_processor_count=132, L2_cache_size=60 << 20)
    cuda = SimpleNamespace(get_device_properties=lambda _: props, empty_cache=lambda: None)
    ms = {"ONCHIP": 0.004, "CLUSTER": 0.003, "STREAM": 0.005, "TILED": 0.006, "REGISTERS": 0.002}

    class Inputs:
        nbytes = 5 << 20

        def ours_fn(self, g: int, layout: str, path: k.LaunchPath) -> Any:
            return lambda i: ms[path.name]

    def graph_ms(torch: Any, fn: Any, repeat: int) -> float:
        if fn(0) == ms["CLUSTER"]:  # the cluster path fails to launch
            raise k.KernelError(k.Status.CUDA, "gn_forward")
        return fn(0)

    monkeypatch.setattr(kb, "_cuda_torch", lambda: SimpleNamespace(cuda=cuda, __version__="x"))
    monkeypatch.setattr(k, "query_device", lambda: h200)
    monkeypatch.setattr(kb, "make_inputs", lambda *args: Inputs())
    monkeypatch.setattr(kb, "_graph_ms", graph_ms)
    names = {shape[0] for shape in kb.KERNEL_SHAPES}
    rows = {
        tuple(cells[1:3]): cells[3:]
        for line in kb.bench_paths(1).splitlines()
        if line.split("|")[1:2] and line.split("|")[1].strip() in names
        for cells in [[c.strip() for c in line.split("|")]]
    }
    # sd-unet-64: 64 groups of 5120 vectors; NHWC has 10 channels per group (a vector would
    # span two groups), which the registers path refuses; a path that fails is said, not timed
    assert rows[("sd-unet-64", "NCHW")][:9] == [
        "5.0",
        "tiled",
        "4.0",
        "FAILED (CUDA)",
        "5.0",
        "6.0",
        "2.0",
        "registers",
        "2 x 320 x 8",
    ]
    nhwc = rows[("sd-unet-64", "NHWC")]
    assert nhwc[6:9] == ["refused", "onchip", "refused"]
    # an 8 MiB fp16 group is beyond every per-group path
    assert rows[("sdxl-vae-1024", "NCHW")][2:9] == [
        "refused",
        "refused",
        "5.0",
        "6.0",
        "refused",
        "stream",
        "refused",
    ]


def test_a_row_that_fell_back_fails_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from gn_deploy import bench
    from gn_deploy.cli import main

    table = "| sd-unet-64 | NCHW | NOT COMPILED | invalid |\nERROR: torch.compile did not run"
    monkeypatch.setattr(bench, "run", lambda *a, **k: table)
    assert main(["bench", "kernels"]) == 1
    monkeypatch.setattr(bench, "run", lambda *a, **k: table.splitlines()[0])
    assert main(["bench", "kernels"]) == 0
