"""`gn-deploy bench kernels`: the GN kernels against torch on a GPU, against the copy roofline.

Times are per call, taken two ways: replays of a CUDA graph of `GRAPH_CALLS` calls (launch
overhead removed: what a TensorRT engine or a captured pipeline pays) and single launches
timed by events (launch included). Inputs rotate over enough buffers to exceed 3x L2, so that
no call reads what the previous one left in L2. Peers run in the same process on the same data.

torch.compile is compiled afresh for every shape and layout and proven to have run compiled
code on every call (`CompiledPeer`). A row where it did not shows `NOT COMPILED` and `invalid`
instead of its torch.compile time and ratio, the output ends with a line starting `ERROR:` per
such row (also printed to stderr), `gn-deploy bench` exits 1 and `scripts/gpu_check.sh` fails
its bench step on it.
"""

from __future__ import annotations

import datetime
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gn_deploy.errors import GnDeployError

# docs/design.md, "Benchmark shapes": name, N, C, spatial, G, dtype.
KERNEL_SHAPES = [
    ("sd-unet-64", 2, 320, (64, 64), 32, "float16"),
    ("sd-unet-32", 2, 640, (32, 32), 32, "float16"),
    ("sd-unet-16", 2, 1280, (16, 16), 32, "float16"),
    ("sd-unet-8", 2, 1280, (8, 8), 32, "float16"),
    ("sd-vae-256", 1, 512, (256, 256), 32, "float16"),
    ("sd-vae-512", 1, 256, (512, 512), 32, "float16"),
    ("sdxl-vae-1024", 1, 128, (1024, 1024), 32, "float16"),
    ("det-head", 2, 256, (100, 152), 32, "float32"),
    ("video-3d", 1, 64, (16, 64, 64), 32, "bfloat16"),
]
GRAPH_CALLS = 20


class CompiledPeer:
    """torch.compile of ``fn``, compiled afresh, counting the calls that ran compiled code.

    dynamo keeps compiled code per code object, and every torch.compile of a plain function
    shares one (the ``inner`` wrapper in torch/_dynamo/external_utils.py): a new torch.compile
    per shape still counts against the recompile limit (8), past which dynamo runs the function
    eagerly, with a log warning and no error. So a peer first resets dynamo, and compiles
    through inductor's ``compile_fx``, which is what ``backend="inductor"`` calls in the default
    mode, wrapped so that each run of a compiled graph is counted. ``fallback()`` says why a
    peer's calls did not each run exactly one compiled graph (None when they did).
    """

    def __init__(self, torch: Any, fn: Callable[..., Any]) -> None:
        torch._dynamo.reset()
        self.calls = 0
        self.compiled_runs = 0
        self.graphs = 0
        self._fn = torch.compile(fn, dynamic=False, backend=self._backend)

    def _backend(self, gm: Any, example_inputs: list[Any]) -> Callable[..., Any]:
        from torch._inductor.compile_fx import compile_fx

        compiled = compile_fx(gm, example_inputs)
        self.graphs += 1

        def run(*args: Any) -> Any:
            self.compiled_runs += 1
            return compiled(*args)

        # inductor's graphs take their inputs as one list; dynamo reads this to call them so
        run._boxed_call = getattr(compiled, "_boxed_call", False)  # type: ignore[attr-defined]
        return run

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self._fn(*args)

    def fallback(self) -> str | None:
        if self.calls == 0:
            return "never called"
        if self.compiled_runs == self.calls:
            return None
        return (
            f"{self.calls} calls ran {self.compiled_runs} compiled graphs "
            f"({self.graphs} compiled): dynamo fell back to eager or broke the graph"
        )


@dataclass
class Floor:
    copy_gbs: float  # device-to-device copy by a kernel, read + write
    empty_us: float  # one empty kernel inside a CUDA graph
    l2_bytes: int


def _events_ms(torch: Any, fn: Callable[[int], object], repeat: int) -> float:
    """Median per-call time of single launches (launch overhead included)."""
    for i in range(5):
        fn(i)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]
    for i in range(repeat):
        starts[i].record()
        fn(i)
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))


def _graph_ms(torch: Any, fn: Callable[[int], object], repeat: int) -> float:
    """Median per-call time over replays of a graph of GRAPH_CALLS calls (i rotates buffers)."""
    for i in range(3):
        fn(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        for i in range(GRAPH_CALLS):
            fn(i)
    graph.replay()
    times = []
    for _ in range(max(3, repeat // GRAPH_CALLS)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / GRAPH_CALLS)
    return statistics.median(times)


def _peer_ms(torch: Any, fn: Callable[[int], object], repeat: int) -> float:
    """A peer's time: the better of graph replay and single launches."""
    return min(_graph_ms(torch, fn, repeat), _events_ms(torch, fn, repeat))


def measure_floor(torch: Any, repeat: int) -> Floor:
    src = torch.empty(1 << 29, dtype=torch.float16, device="cuda").normal_()
    dst = torch.empty_like(src)
    ms = _graph_ms(torch, lambda i: torch.neg(src, out=dst), repeat)
    tiny = torch.zeros(1, device="cuda")
    empty_ms = _graph_ms(torch, lambda i: tiny.add_(1), repeat)
    props = torch.cuda.get_device_properties(0)
    return Floor(2 * src.numel() * 2 / ms / 1e6, empty_ms * 1e3, props.L2_cache_size)


@dataclass
class Row:
    name: str
    layout: str
    dtype: str
    mib: float
    path: str
    graph_us: float
    launch_us: float
    stream_us: float
    eager_us: float
    compiled_us: float
    floor: Floor
    compiled_fallback: str | None = None  # CompiledPeer.fallback(): compiled_us is invalid

    @property
    def best_peer_us(self) -> float:
        """The better torch peer; NaN when torch.compile's time is invalid."""
        return math.nan if self.compiled_fallback else min(self.eager_us, self.compiled_us)

    @property
    def gbs(self) -> float:
        return 2 * self.mib * 2**20 / self.graph_us / 1e3

    @property
    def floor_us(self) -> float:
        return self.floor.empty_us + 2 * self.mib * 2**20 / self.floor.copy_gbs / 1e3

    def markdown(self) -> str:
        compiled, ratio = "NOT COMPILED", "invalid"
        if not self.compiled_fallback:
            compiled = f"{self.compiled_us:.1f}"
            ratio = f"{self.best_peer_us / self.graph_us:.2f}x"
        return (
            f"| {self.name} | {self.layout} | {self.dtype} | {self.mib:.1f} | {self.path} | "
            f"{self.graph_us:.1f} | {self.launch_us:.1f} | {self.stream_us:.1f} | {self.gbs:.0f} | "
            f"{100 * self.gbs / self.floor.copy_gbs:.0f}% | {self.eager_us:.1f} | "
            f"{compiled} | {ratio} | {self.graph_us / self.floor_us:.2f} |"
        )


def _params(shape: tuple, layout: str) -> Any:
    from gn_deploy import kernels as k

    _, n, c, spatial, g, dtype = shape
    return k.make_params(
        n, c, math.prod(spatial), g, layout=k.Layout[layout], dtype=k.DType[dtype.upper()]
    )


def _planned_path(shape: tuple, layout: str) -> str:
    from gn_deploy import kernels as k

    plan = k.plan(_params(shape, layout), k.query_device())
    return k.LaunchPath(plan.path).name.lower()


@dataclass
class Inputs:
    """Buffers for one shape and layout, rotated past L2 (`sets` of each)."""

    xs: list[Any]  # torch's view: [N, C, *spatial], channels-last memory for NHWC
    ours: list[Any]  # the same memory as our kernels see it ([N, *spatial, C] for NHWC)
    ys: list[Any]
    gamma: Any
    beta: Any
    nbytes: int

    def ours_fn(self, g: int, layout: str, path: Any) -> Callable[[int], object]:
        """Call i of our kernel on buffer set i, on a forced path (or the planner's)."""
        from gn_deploy.kernels import group_norm

        sets = len(self.xs)

        def run(i: int) -> object:
            x, y = self.ours[i % sets], self.ys[i % sets]
            return group_norm(x, g, self.gamma, self.beta, layout=layout, out=y, path=path)

        return run


def make_inputs(torch: Any, shape: tuple, layout: str, l2_bytes: int) -> Inputs:
    _, n, c, spatial, _, dtype_name = shape
    dtype = getattr(torch, dtype_name)
    nbytes = n * c * math.prod(spatial) * dtype.itemsize
    sets = max(2, math.ceil(3 * l2_bytes / nbytes))
    gamma = torch.rand(c, device="cuda") + 0.5
    beta = torch.randn(c, device="cuda")
    xs = [torch.randn((n, c, *spatial), device="cuda").to(dtype) for _ in range(sets)]
    ours = xs
    if layout == "NHWC":
        fmt = torch.channels_last if len(spatial) == 2 else torch.channels_last_3d
        xs = [x.contiguous(memory_format=fmt) for x in xs]
        ours = [x.movedim(1, -1) for x in xs]  # the same memory seen as [N, *spatial, C]
    return Inputs(xs, ours, [torch.empty_like(x) for x in ours], gamma, beta, nbytes)


def measure_row(torch: Any, shape: tuple, layout: str, repeat: int, floor: Floor) -> Row:
    """One shape and layout: ours (graph and single launch), torch eager, torch.compile."""
    from gn_deploy.kernels import LaunchPath

    name, _, _, _, g, dtype_name = shape
    inputs = make_inputs(torch, shape, layout, floor.l2_bytes)
    xs, sets = inputs.xs, len(inputs.xs)
    dtype = getattr(torch, dtype_name)
    g_w, b_w = inputs.gamma.to(dtype), inputs.beta.to(dtype)
    ours = inputs.ours_fn(g, layout, LaunchPath.AUTO)
    two_pass = inputs.ours_fn(g, layout, LaunchPath.STREAM)

    def eager(i: int) -> object:
        return torch.nn.functional.group_norm(xs[i % sets], g, g_w, b_w)

    peer = CompiledPeer(torch, torch.nn.functional.group_norm)

    def comp(i: int) -> object:
        return peer(xs[i % sets], g, g_w, b_w)

    return Row(
        name,
        layout,
        dtype_name,
        inputs.nbytes / 2**20,
        _planned_path(shape, layout),
        _graph_ms(torch, ours, repeat) * 1e3,
        _events_ms(torch, ours, repeat) * 1e3,
        _graph_ms(torch, two_pass, repeat) * 1e3,
        _peer_ms(torch, eager, repeat) * 1e3,
        _peer_ms(torch, comp, repeat) * 1e3,
        floor,
        peer.fallback(),
    )


def _summary(rows: list[Row]) -> list[str]:
    by_shape: dict[str, dict[str, Row]] = {}
    for row in rows:
        by_shape.setdefault(row.name, {})[row.layout] = row
    large = [r for r in rows if r.mib >= 64]
    errors = fallback_errors(rows)
    vs_peer = [r.best_peer_us / r.graph_us for r in rows if not r.compiled_fallback]
    invalid = f" ({len(errors)} rows without a valid torch.compile time)" if errors else ""
    lines = [
        "",
        "Targets (issue 10):",
        f"- >= 85% of copy on every shape >= 64 MiB: worst "
        f"{min((100 * r.gbs / r.floor.copy_gbs for r in large), default=float('nan')):.0f}%",
        f"- >= 1.0x the best torch peer: worst {min(vs_peer, default=float('nan')):.2f}x{invalid}",
        f"- NHWC <= 1.10x NCHW: worst "
        f"{max(v['NHWC'].graph_us / v['NCHW'].graph_us for v in by_shape.values()):.2f}x",
        f"- small shapes (< 8 MiB) <= 1.5x the floor: worst "
        f"{max((r.graph_us / r.floor_us for r in rows if r.mib < 8), default=float('nan')):.2f}x",
    ]
    return lines + (["", *errors] if errors else [])


def fallback_errors(rows: list[Row]) -> list[str]:
    """One `ERROR:` line per row whose torch.compile peer did not run compiled."""
    return [
        f"ERROR: torch.compile did not run compiled on {r.name} {r.layout}: {r.compiled_fallback}"
        for r in rows
        if r.compiled_fallback
    ]


def _cuda_torch() -> Any:
    from gn_deploy.export import require_torch

    torch = require_torch()
    if not torch.cuda.is_available():
        raise GnDeployError("bench kernels needs a CUDA GPU (torch.cuda.is_available() is False)")
    return torch


# Every launch path a test or benchmark can force (gn_forward_path), candidates included.
FORCED_PATHS = ("ONCHIP", "CLUSTER", "STREAM", "TILED", "REGISTERS")


def bench_paths(repeat: int) -> str:
    """Every launch path forced on every benchmark shape and layout, beside the planner's choice:
    graph-replay us per call (as `bench kernels`), `refused` where the path cannot serve the
    shape. What decides whether a candidate path becomes a default."""
    from gn_deploy import kernels as k

    torch = _cuda_torch()
    props = torch.cuda.get_device_properties(0)
    device = k.query_device()
    head = [
        f"command: `python3 scripts/bench_paths.py --repeat {repeat}`",
        f"date: {datetime.date.today().isoformat()}; GPU: {props.name} "
        f"({props.multi_processor_count} SMs); torch {torch.__version__}",
        "",
        f"us per call: median over replays of a CUDA graph of {GRAPH_CALLS} calls, inputs "
        "rotated past 3x L2. `registers plan`: blocks per group x threads x 16-byte vectors "
        "per thread.",
        "",
        "| shape | layout | MiB | planner | "
        + " | ".join(f"{p.lower()} us" for p in FORCED_PATHS)
        + " | best | registers plan |",
        "|---|---|---|---|" + "---|" * (len(FORCED_PATHS) + 2),
    ]
    rows = []
    for shape in KERNEL_SHAPES:
        for layout in ("NCHW", "NHWC"):
            print(f"bench paths: {shape[0]} {layout}", file=sys.stderr, flush=True)
            inputs = make_inputs(torch, shape, layout, props.L2_cache_size)
            mib = inputs.nbytes / 2**20
            times: dict[str, float] = {}
            cells = dict.fromkeys(FORCED_PATHS, "refused")
            registers = "refused"
            for name in FORCED_PATHS:
                path = k.LaunchPath[name]
                try:
                    plan = k.plan(_params(shape, layout), device, path)
                except k.KernelError:
                    continue
                if path == k.LaunchPath.REGISTERS:
                    registers = f"{plan.chunks} x {plan.threads} x {plan.tiles}"
                try:
                    ms = _graph_ms(torch, inputs.ours_fn(shape[4], layout, path), repeat)
                except k.KernelError as exc:  # a candidate that fails to launch: said, not timed
                    cells[name] = f"FAILED ({exc.status.name})"
                    print(f"bench paths: {name.lower()}: {exc}", file=sys.stderr, flush=True)
                    continue
                times[name] = ms
                cells[name] = f"{ms * 1e3:.1f}"
            del inputs
            torch.cuda.empty_cache()
            best = min(times, key=times.__getitem__).lower() if times else "none"
            rows.append(
                f"| {shape[0]} | {layout} | {mib:.1f} | "
                f"{_planned_path(shape, layout)} | {' | '.join(cells.values())} | {best} | "
                f"{registers} |"
            )
    return "\n".join(head + rows)


def bench_kernels(repeat: int) -> str:
    torch = _cuda_torch()
    props = torch.cuda.get_device_properties(0)
    floor = measure_floor(torch, repeat)
    rows = []
    for shape in KERNEL_SHAPES:
        for layout in ("NCHW", "NHWC"):
            print(f"bench kernels: {shape[0]} {layout}", file=sys.stderr, flush=True)
            rows.append(measure_row(torch, shape, layout, repeat, floor))
            torch.cuda.empty_cache()
    for line in fallback_errors(rows):
        print(f"bench kernels: {line}", file=sys.stderr, flush=True)
    head = [
        f"command: `gn-deploy bench kernels --repeat {repeat}`",
        f"date: {datetime.date.today().isoformat()}; GPU: {props.name} "
        f"({props.multi_processor_count} SMs, L2 {props.L2_cache_size / 2**20:.0f} MiB); "
        f"torch {torch.__version__}",
        f"copy by a kernel, read + write: {floor.copy_gbs:.0f} GB/s; empty kernel in a graph: "
        f"{floor.empty_us:.1f} us",
        "",
        f"`us` is the median per call over replays of a CUDA graph of {GRAPH_CALLS} calls; "
        "peers get the better of that and single launches; torch.compile is compiled afresh "
        "per row and checked to have run compiled on every call (`NOT COMPILED` where it did "
        "not); `launch us` is a single launch "
        "timed by events. GB/s counts one read of x and one write of y. `vs floor`: our time "
        "over (empty kernel + bytes at copy bandwidth). `path`: the planner's choice; "
        "`stream us`: our two-pass stream path (x read twice) on the same data, the in-run "
        "baseline.",
        "",
        "| shape | layout | dtype | MiB | path | us | launch us | stream us | GB/s | of copy | "
        "torch us | torch.compile us | vs best peer | vs floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + [r.markdown() for r in rows] + _summary(rows))
