"""`gn-deploy bench ort`: what each form of GroupNorm costs on ONNX Runtime's CPU provider.

Per layer: one GN + SiLU on the SD UNet and VAE shapes, as torch's sandwich (Reshape,
InstanceNormalization, Reshape, Mul, Add, Sigmoid, Mul), as GroupNormalization-21 + SiLU, as
gn-deploy's FusedGroupNorm (op library) and, for the floor, one copy of the same tensor (one
read, one write: Expand to its own shape, which ONNX Runtime runs in fp16 without the Casts it
puts around a Relu). End to end: models unfused, fused with `--target onnx` and with
`--target fused-op`. The cases compared in a row run in this process with the same inputs and
session options (ONNX Runtime's defaults but the thread count), timed in turns, so that the
ratios hold on a noisy machine. Each
session's optimized graph is read back: the ops ORT ran are listed, and a FusedGroupNorm case
whose graph lost the op, or whose output leaves the design tolerance of the float64
reference, stops the benchmark.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gn_deploy import plugin_op
from gn_deploy.bench_common import export_builtin
from gn_deploy.errors import GnDeployError
from gn_deploy.reference import group_norm_reference, relative_l2, tolerance_for

THREADS = (1, 2)
FORMS = ("sandwich", "groupnorm-21", "fused-op", "floor")
TARGETS = ("onnx", "fused-op")  # what the end-to-end table fuses each model for


@dataclass(frozen=True)
class LayerShape:
    name: str
    channels: int
    size: int  # height = width
    groups: int = 32

    @property
    def dims(self) -> list[int]:
        return [1, self.channels, self.size, self.size]


LAYER_SHAPES = (
    LayerShape("sd-unet-64", 320, 64),
    LayerShape("sd-unet-32", 640, 32),
    LayerShape("sd-unet-16", 1280, 16),
    LayerShape("sd-vae-128", 512, 128),
    LayerShape("sd-vae-256", 256, 256),
)
# Built-in models for the end-to-end table: factory and example input.
BUILTIN_MODELS = (("sd15_unet", "1x4x32x32"), ("sd_vae_decoder", "1x4x32x32"))


def _affine(shape: LayerShape) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.linspace(0.5, 1.5, shape.channels, dtype=np.float32),
        np.linspace(-0.5, 0.5, shape.channels, dtype=np.float32),
    )


def _silu(source: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Sigmoid", [source], ["sig"]),
        helper.make_node("Mul", [source, "sig"], ["y"]),
    ]


Layer = tuple[list[onnx.NodeProto], list[onnx.TensorProto]]  # nodes and initializers


def _sandwich(shape: LayerShape, dtype: type) -> Layer:
    gamma, beta = _affine(shape)
    groups = shape.groups
    nodes = [
        helper.make_node("Reshape", ["x", "grouped"], ["r"]),
        helper.make_node("InstanceNormalization", ["r", "ones", "zeros"], ["i"], epsilon=1e-5),
        helper.make_node("Reshape", ["i", "full"], ["r2"]),
        helper.make_node("Mul", ["r2", "gamma"], ["m"]),
        helper.make_node("Add", ["m", "beta"], ["n"]),
        *_silu("n"),
    ]
    consts = {
        "grouped": np.array([0, groups, -1], np.int64),
        "full": np.array(shape.dims, np.int64),
        "ones": np.ones(groups, dtype),
        "zeros": np.zeros(groups, dtype),
        "gamma": gamma.astype(dtype).reshape(-1, 1, 1),
        "beta": beta.astype(dtype).reshape(-1, 1, 1),
    }
    return nodes, [numpy_helper.from_array(v, k) for k, v in consts.items()]


def _groupnorm_21(shape: LayerShape, dtype: type) -> Layer:
    gamma, beta = _affine(shape)
    node = helper.make_node("GroupNormalization", ["x", "gamma", "beta"], ["n"],
                            num_groups=shape.groups, epsilon=1e-5)
    inits = [numpy_helper.from_array(gamma.astype(dtype), "gamma"),
             numpy_helper.from_array(beta.astype(dtype), "beta")]
    return [node, *_silu("n")], inits


def _fused_op(shape: LayerShape, dtype: type) -> Layer:
    gamma, beta = _affine(shape)
    node = helper.make_node(plugin_op.OP_TYPE, ["x", "gamma", "beta"], ["y"],
                            domain=plugin_op.DOMAIN, num_groups=shape.groups, epsilon=1e-5,
                            activation=1)
    return [node], [numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(beta, "beta")]


def _floor(shape: LayerShape, dtype: type) -> Layer:
    dims = numpy_helper.from_array(np.array(shape.dims, np.int64), "dims")
    return [helper.make_node("Expand", ["x", "dims"], ["y"])], [dims]


_BUILDERS = {"sandwich": _sandwich, "groupnorm-21": _groupnorm_21, "fused-op": _fused_op,
             "floor": _floor}


def layer_model(form: str, shape: LayerShape, dtype: type) -> onnx.ModelProto:
    """One GN + SiLU layer of ``shape`` in ``form`` (the floor: one copy)."""
    nodes, inits = _BUILDERS[form](shape, dtype)
    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        nodes, form, [helper.make_tensor_value_info("x", element, shape.dims)],
        [helper.make_tensor_value_info("y", element, shape.dims)], inits,
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid(plugin_op.DOMAIN, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


class Case:
    """One model for ONNX Runtime at a thread count, and the ops its session kept after
    optimizing. Sessions are opened per use and closed after it: the idle thread pool of
    another open session would take cores from the one being timed."""

    def __init__(self, model: onnx.ModelProto | Path, threads: int, workdir: Path) -> None:
        from gn_deploy.backends.ort import uses_fused_op

        proto = isinstance(model, onnx.ModelProto)
        self.source = model.SerializeToString() if proto else str(model)
        self.threads = threads
        self.fused = uses_fused_op(model)
        optimized = workdir / "optimized.onnx"
        self.open(optimized)
        kept = onnx.load(optimized, load_external_data=False)
        self.ops = Counter(n.op_type for n in kept.graph.node)

    def open(self, optimized: Path | None = None) -> Any:
        """A new session (its optimized graph written to ``optimized`` when given)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if optimized is not None:
            options.optimized_model_filepath = str(optimized)
        if self.fused:
            from gn_deploy import ort_library

            ort_library.register(options)
        return ort.InferenceSession(self.source, options, providers=["CPUExecutionProvider"])

    def run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        """The outputs of one run on a session of its own."""
        return list(self.open().run(None, feeds))


# Rounds of turns per row: a slow stretch of the machine lands on every case of the row alike.
ROUNDS = 10


def interleaved_ms(
    cases: dict[str, Case], feeds: dict[str, np.ndarray], repeat: int, rounds: int = ROUNDS
) -> dict[str, float]:
    """Median ms per case of ``repeat`` timed runs, taken in ``rounds`` rounds (at most one a
    run) that each run every case in turn, each turn on a session of its own (opened, run once
    untimed, timed, closed): a slow stretch of the machine costs every case alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    rounds = max(1, min(rounds, repeat))
    for r in range(rounds):
        share = repeat // rounds + (1 if r < repeat % rounds else 0)
        for name, case in cases.items():
            session = case.open()
            session.run(None, feeds)
            for _ in range(share):
                start = time.perf_counter()
                session.run(None, feeds)
                times[name].append(time.perf_counter() - start)
            del session
    return {name: statistics.median(t) * 1e3 for name, t in times.items() if t}


def _check_fused(case: Case, shape: LayerShape, x: np.ndarray) -> None:
    """The fused-op case ran gn-deploy's op and computed GN + SiLU within the design tolerance."""
    if case.ops.get(plugin_op.OP_TYPE) != 1:
        raise GnDeployError(f"bench ort: ONNX Runtime ran {dict(case.ops)}, not FusedGroupNorm")
    y = np.asarray(case.run({"x": x})[0], np.float64)
    gamma, beta = _affine(shape)
    ref = group_norm_reference(x.astype(np.float64), shape.groups, 1e-5, gamma, beta, 1)
    error = relative_l2(y, ref)
    if error > tolerance_for(str(x.dtype)):
        raise GnDeployError(f"bench ort: FusedGroupNorm on {shape.name} is off ({error:.2g})")


def _ops_text(ops: Counter[str]) -> str:
    return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(ops.items()))


def layer_rows(
    shapes: Sequence[LayerShape], repeat: int, workdir: Path
) -> tuple[list[str], dict[str, str]]:
    """The per-layer table's rows, and per form the ops ONNX Runtime ran."""
    rows, ran = [], {}
    for shape in shapes:
        for dtype in (np.float32, np.float16):
            x = np.random.default_rng(0).standard_normal(shape.dims).astype(dtype)
            for threads in THREADS:
                cases = {f: Case(layer_model(f, shape, dtype), threads, workdir) for f in FORMS}
                _check_fused(cases["fused-op"], shape, x)
                ran.update({form: _ops_text(case.ops) for form, case in cases.items()})
                ms = interleaved_ms(cases, {"x": x}, repeat)
                rows.append(
                    f"| {shape.name} {np.dtype(dtype).name} | {threads} | "
                    + " | ".join(f"{ms[f]:.3g}" for f in FORMS)
                    + f" | {ms['sandwich'] / ms['fused-op']:.2f} | "
                    f"{ms['fused-op'] / ms['floor']:.2f} |"
                )
    return rows, ran


def _feeds(path: Path) -> dict[str, np.ndarray]:
    """Random inputs of the model's types; dynamic dims (the built-in models' batch) at 1."""
    model = onnx.load(path, load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        tensor = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        feeds[inp.name] = rng.standard_normal(dims).astype(dtype)
    return feeds


def model_rows(paths: Sequence[Path], repeat: int, workdir: Path) -> list[str]:
    """The end-to-end table's rows: each model unfused and fused for both targets."""
    from gn_deploy.fusion import fuse_model

    rows = []
    for path in paths:
        fused_paths = {target: workdir / f"{path.stem}.{target}.onnx" for target in TARGETS}
        variants = {"unfused": path, **fused_paths}
        fuse_model(path, variants["onnx"], target="onnx")
        fused = fuse_model(path, variants["fused-op"], target="fused-op").count("fused")
        feeds = _feeds(path)
        for threads in THREADS:
            cases = {name: Case(p, threads, workdir) for name, p in variants.items()}
            ms = interleaved_ms(cases, feeds, repeat)
            rows.append(
                f"| {path.name} | {fused} | {threads} | {ms['unfused']:.3g} | "
                f"{ms['onnx']:.3g} | {ms['fused-op']:.3g} | {ms['unfused'] / ms['onnx']:.2f} | "
                f"{ms['unfused'] / ms['fused-op']:.2f} |"
            )
    return rows


def _machine() -> str:
    from gn_deploy import ort_library

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    return f"{cpu}; op library kernels: {ort_library.cpu_isa()}"


def bench_ort(
    models: Sequence[str | Path], repeat: int, shapes: Sequence[LayerShape] = LAYER_SHAPES
) -> str:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        layers, ran = layer_rows(shapes, repeat, workdir)
        paths = [Path(m) for m in models] or [
            export_builtin(workdir, factory, shape) for factory, shape in BUILTIN_MODELS
        ]
        ends = model_rows(paths, repeat, workdir)
    head = [
        f"command: `gn-deploy bench ort {''.join(f'{m} ' for m in models)}--repeat {repeat}`",
        f"date: {datetime.date.today().isoformat()}; machine: {_machine()}; "
        f"ONNX Runtime {ort.__version__} CPU, all graph optimizations, "
        f"{' and '.join(map(str, THREADS))} intra-op threads; the cases of a row timed "
        f"in {ROUNDS} rounds of turns, each turn on a session of its own (one open at a time), "
        "in one process",
        "",
        "## One GN + SiLU layer (median ms, N = 1, G = 32)",
        "",
        "| shape | threads | sandwich | GroupNormalization-21 | fused-op | floor (copy) | "
        "sandwich / fused-op | fused-op / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    proof = ["", "What ONNX Runtime ran (its optimized graph) for each form:", ""]
    proof += [f"- {form}: {ran[form]}" for form in FORMS]
    tail = [
        "",
        "## Models end to end (median ms)",
        "",
        "| model | GN fused | threads | unfused | `--target onnx` | `--target fused-op` | "
        "unfused / onnx | unfused / fused-op |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + layers + proof + tail + ends)
