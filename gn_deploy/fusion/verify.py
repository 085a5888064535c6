"""Prove each site before it is committed: the replaced subgraph and the emitted op must agree.

All sites are checked together: the replaced subgraphs go into one small model (run on ONNX
Runtime at the model's own opset) and the emitted ops into another (run by the emitter's
backend), each site with its own random input of a small concrete shape. The cost is per site,
independent of the size of the model around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from gn_deploy.backends.ort import run_small_model
from gn_deploy.fusion.constants import shape_root
from gn_deploy.fusion.emitters import Emitter
from gn_deploy.fusion.site import GroupNormSite, Layout
from gn_deploy.reference import relative_l2, tolerance_for

# Sizes picked for axes whose length is only known at run time (batch, then the others).
_BATCH = 2
_SPATIAL = 5
_IR_VERSION = 10


@dataclass
class Proof:
    ok: bool
    max_abs_error: float = float("nan")
    rel_l2: float = float("nan")
    reason: str = ""


def verify_sites(
    sites: list[GroupNormSite], model: ir.Model, emitter: Emitter, seed: int = 0
) -> list[Proof]:
    """One :class:`Proof` per site, in order (sites read at one opset are run together)."""
    by_opset: dict[int | None, list[int]] = {}
    for index, site in enumerate(sites):
        by_opset.setdefault(site.opset, []).append(index)
    proofs: list[Proof] = [Proof(False)] * len(sites)
    for indices in by_opset.values():
        batch = _verify_batch([sites[i] for i in indices], model, emitter, seed)
        for index, proof in zip(indices, batch, strict=True):
            proofs[index] = proof
    return proofs


def _verify_batch(
    sites: list[GroupNormSite], model: ir.Model, emitter: Emitter, seed: int
) -> list[Proof]:
    rng = np.random.default_rng(seed)
    feeds = [_random_input(site, rng) for site in sites]
    promoted = [f.astype(np.float32) if f.dtype == _BFLOAT16 else f for f in feeds]
    expected, failed_orig = _run_all(
        promoted, lambda idx: _promote_bfloat16(_original_model(sites, idx, model)), run_small_model
    )
    actual, failed_emit = _run_all(
        feeds, lambda idx: _emitted_model(sites, idx, emitter), emitter.run
    )
    proofs = []
    for i, site in enumerate(sites):
        if i in failed_orig:
            proofs.append(
                Proof(False, reason=f"the matched subgraph fails to run: {failed_orig[i]}")
            )
        elif i in failed_emit:
            proofs.append(Proof(False, reason=f"the emitted op fails to run: {failed_emit[i]}"))
        else:
            proofs.append(_compare(site, expected[i], actual[i]))
    return proofs


Runner = Callable[[onnx.ModelProto, dict[str, np.ndarray]], list[np.ndarray]]


def _run_all(
    feeds: list[np.ndarray], build: Callable[[list[int]], onnx.ModelProto], run: Runner
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Run every site in one model; if that fails, run each alone to find the failing ones."""
    indices = list(range(len(feeds)))
    if not indices:
        return {}, {}
    try:
        outputs = run(build(indices), {f"s{i}/x": feeds[i] for i in indices})
        return dict(zip(indices, outputs, strict=True)), {}
    except Exception:  # some site breaks the batch; find which below
        pass
    results: dict[int, np.ndarray] = {}
    failures: dict[int, str] = {}
    for i in indices:
        try:
            results[i] = run(build([i]), {f"s{i}/x": feeds[i]})[0]
        except Exception as exc:  # any backend error is a reason to refuse this site
            failures[i] = _first_line(exc)
    return results, failures


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


_BFLOAT16 = ir.DataType.BFLOAT16.numpy()


def _promote_bfloat16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The matched subgraphs with bf16 made float32.

    What is proved, that the subgraph is a GN, does not depend on the dtype; evaluated in bf16
    arithmetic (ONNX's reference evaluator: ONNX Runtime has no bf16 kernels for these ops on
    the CPU) its statistics would be off by ~1e-2 before any fusion.
    """
    bf16, f32 = onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT
    graph = model.graph
    for info in [*graph.input, *graph.output]:
        if info.type.tensor_type.elem_type == bf16:
            info.type.tensor_type.elem_type = f32
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == bf16:
            array = onnx.numpy_helper.to_array(tensor).astype(np.float32)
            graph.initializer[index].CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == bf16:
                attr.i = f32
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == bf16:
                array = onnx.numpy_helper.to_array(attr.t).astype(np.float32)
                attr.t.CopyFrom(onnx.numpy_helper.from_array(array, attr.t.name))
    return model


def _compare(site: GroupNormSite, expected: np.ndarray, actual: np.ndarray) -> Proof:
    dtype = str(actual.dtype)
    if expected.shape != actual.shape:
        return Proof(False, reason=f"shape {actual.shape} differs from {expected.shape}")
    err = relative_l2(actual, expected)
    max_abs = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
    tol = tolerance_for(dtype)
    if not err <= tol:
        return Proof(False, max_abs, err, f"outputs differ: relative L2 {err:.2e} > {tol:.0e}")
    return Proof(True, max_abs, err)


def concrete_shape(site: GroupNormSite) -> tuple[int, ...]:
    assert site.x.shape is not None
    dims = []
    for axis, dim in enumerate(site.x.shape):
        if isinstance(dim, int):
            dims.append(dim)
        elif axis == 0:
            dims.append(_BATCH)
        else:
            dims.append(site.channels if _is_channel_axis(site, axis) else _SPATIAL)
    return tuple(dims)


def _is_channel_axis(site: GroupNormSite, axis: int) -> bool:
    assert site.x.shape is not None
    return axis == (1 if site.layout is Layout.NCHW else len(site.x.shape) - 1)


def _random_input(site: GroupNormSite, rng: np.random.Generator) -> np.ndarray:
    """Per-channel offsets and scales, so that wrong grouping or wrong statistics show."""
    shape = concrete_shape(site)
    axis = 1 if site.layout is Layout.NCHW else len(shape) - 1
    if site.view_shape is not None:  # channels sit after the leading axes folded into N
        axis = len(shape) - len(site.view_shape) + 1
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    offset = rng.uniform(-3, 3, bshape).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, bshape).astype(np.float32)
    x = rng.standard_normal(shape, dtype=np.float32) * scale + offset
    dtype = site.x.dtype.numpy() if site.x.dtype is not None else np.float32
    return x.astype(dtype)


def _value_info(name: str, value: ir.Value, shape: tuple[int, ...] | None) -> onnx.ValueInfoProto:
    elem = value.dtype.value if value.dtype is not None else onnx.TensorProto.FLOAT
    return onnx.helper.make_tensor_value_info(name, elem, shape)


@dataclass
class _Closure:
    """What the verifier extracts of a site from its graph."""

    nodes: list[ir.Node]
    initializers: list[ir.Value]
    root: ir.Value | None  # the graph input x is a cast of, when the site reads it
    shape_only: list[ir.Value]  # other graph inputs the site reads only the shape of


def _closure(site: GroupNormSite) -> _Closure:
    """The nodes computing ``site.output`` from ``site.x`` and constants, in order.

    Exporters compute a grouped shape from a graph input: the Shape of x before its Cast to
    fp16 (then x is fed, cast back), or of the model's input when the batch size is traced
    from there (then a stand-in of the concrete shape is made for it).
    """
    order: list[ir.Node] = []
    initializers: dict[str, ir.Value] = {}
    seen: set[ir.Node] = set()
    root = shape_root(site.x)
    read_root: list[ir.Value] = []
    shape_only: list[ir.Value] = []

    def visit(value: ir.Value) -> None:
        if value is site.x:
            return
        node = value.producer()
        if node is None:
            if value is root and value.const_value is None:
                read_root[:] = [value]
                return
            if value.const_value is None:
                raise ValueError(f"the site depends on graph input {value.name!r}")
            initializers[value.name or ""] = value
            return
        if node in seen:
            return
        seen.add(node)
        for inp in node.inputs:
            if inp is None:
                continue
            if node.op_type == "Shape" and _is_graph_input(inp) and inp not in (site.x, root):
                if inp not in shape_only:
                    shape_only.append(inp)
                continue
            visit(inp)
        order.append(node)

    visit(site.output)
    return _Closure(order, list(initializers.values()), next(iter(read_root), None), shape_only)


def _is_graph_input(value: ir.Value) -> bool:
    return value.producer() is None and value.const_value is None


def _stand_in_shape(site: GroupNormSite, value: ir.Value) -> list[int]:
    """A concrete shape for a graph input the site reads only the shape of: its static dims,
    the test shape of x where a symbolic dim is x's too, 1 elsewhere."""
    assert value.shape is not None
    test = concrete_shape(site)
    x_dims = list(site.x.shape or [])
    dims = []
    for dim in value.shape:
        if isinstance(dim, int):
            dims.append(dim)
        elif dim in x_dims:
            dims.append(test[x_dims.index(dim)])
        else:
            dims.append(1)
    return dims


def _original_model(
    sites: list[GroupNormSite], indices: list[int], model: ir.Model
) -> onnx.ModelProto:
    """One model holding each site's matched subgraph, its names prefixed ``s{i}/``."""
    graph = onnx.GraphProto(name="verify")
    for i in indices:
        site = sites[i]
        closure = _closure(site)
        nodes, inits, root = closure.nodes, closure.initializers, closure.root
        prefix = f"s{i}/"

        root_name = root.name if root is not None else None

        def rename(
            name: str,
            site: GroupNormSite = site,
            prefix: str = prefix,
            root_name: str | None = root_name,
        ) -> str:
            if not name:
                return name  # an omitted optional input
            if name == root_name:
                return f"{prefix}root"
            return f"{prefix}x" if name == site.x.name else f"{prefix}v/{name}"

        if root is not None:  # the graph input x was cast from: x cast back to its type
            to = root.dtype.value if root.dtype is not None else onnx.TensorProto.FLOAT
            graph.node.append(
                onnx.helper.make_node("Cast", [f"{prefix}x"], [rename(root.name or "")], to=to)
            )
        for value in closure.shape_only:
            shape = onnx.numpy_helper.from_array(np.asarray(_stand_in_shape(site, value), np.int64))
            graph.node.append(
                onnx.helper.make_node(
                    "ConstantOfShape", [rename(f"{value.name}/shape")], [rename(value.name or "")]
                )
            )
            shape.name = rename(f"{value.name}/shape")
            graph.initializer.append(shape)
        for node in nodes:
            proto = ir.serde.serialize_node(node)
            proto.input[:] = [rename(n) for n in proto.input]
            proto.output[:] = [rename(n) for n in proto.output]
            graph.node.append(proto)
        for value in inits:
            tensor = _embedded(value)
            tensor.name = rename(tensor.name)
            graph.initializer.append(tensor)
        graph.input.append(_value_info(f"{prefix}x", site.x, concrete_shape(site)))
        graph.output.append(_value_info(rename(site.output.name or ""), site.output, None))
    imports = dict(model.opset_imports)
    if sites[indices[0]].opset is not None:
        imports[""] = sites[indices[0]].opset
    opsets = [onnx.helper.make_opsetid(d, v) for d, v in imports.items()]
    return onnx.helper.make_model(graph, opset_imports=opsets, ir_version=_IR_VERSION)


def _embedded(value: ir.Value) -> onnx.TensorProto:
    """The initializer's data inside the proto (the verifier's model has no external files)."""
    assert value.const_value is not None
    return ir.serde.serialize_tensor(ir.tensor(value.const_value.numpy(), name=value.name))


def _emitted_model(
    sites: list[GroupNormSite], indices: list[int], emitter: Emitter
) -> onnx.ModelProto:
    inputs, outputs, nodes, inits = [], [], [], []
    for i in indices:
        site = sites[i]
        x = ir.Value(name=f"s{i}/x", type=site.x.type, shape=ir.Shape(concrete_shape(site)))
        emitted = emitter.emit(site, x, f"s{i}/gn")
        out = emitted.output
        out.name, out.type = f"s{i}/y", site.x.type
        inputs.append(x)
        outputs.append(out)
        nodes.extend(emitted.nodes)
        inits.extend(emitted.initializers)
    opsets = {"": 21, **emitter.opset_imports}
    graph = ir.Graph(inputs, outputs, nodes=nodes, initializers=inits, opset_imports=opsets)
    return ir.serde.serialize_model(ir.Model(graph, ir_version=_IR_VERSION))
