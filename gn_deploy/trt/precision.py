"""Precision planning: TensorRT 10 builder flags, or TensorRT 11's strongly typed networks.

TensorRT 11 builds strongly typed networks only: the ONNX graph's own types decide. For fp16
gn-deploy converts the graph itself, keeping every GN op's gamma and beta (and statistics) fp32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from gn_deploy import plugin_op
from gn_deploy.errors import GnDeployError, UsageError

PRECISIONS = ("fp32", "fp16", "bf16")
_FLAGS = {"fp32": [], "fp16": ["FP16"], "bf16": ["BF16"]}


@dataclass(frozen=True)
class PrecisionPlan:
    precision: str
    strongly_typed: bool
    builder_flags: list[str] = field(default_factory=list)
    convert_to: str | None = None

    @property
    def cleared_flags(self) -> list[str]:
        """fp32 means fp32: TensorRT would otherwise run convolutions and matmuls in TF32."""
        return ["TF32"] if self.precision == "fp32" else []


def plan_precision(trt_major: int, precision: str) -> PrecisionPlan:
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if trt_major < 10:
        raise GnDeployError(f"TensorRT {trt_major} is too old: gn-deploy builds with 10 or 11")
    if trt_major == 10:
        return PrecisionPlan(precision, strongly_typed=False, builder_flags=_FLAGS[precision])
    if precision == "bf16":
        raise GnDeployError(
            "bf16 in a strongly typed build (TensorRT 11, TensorRT-RTX) needs a bf16 ONNX graph, "
            "which gn-deploy does not make yet (ONNX's Conv has no bf16 before opset 22); "
            "export the model in bfloat16 and build with --precision fp32 (strongly typed)"
        )
    return PrecisionPlan(
        precision, strongly_typed=True, convert_to="float16" if precision == "fp16" else None
    )


def convert_to_fp16(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
    """fp16 copy of an ONNX model for a strongly typed build.

    Every float32 tensor becomes float16 except where an op's schema demands float32 (Resize's
    scales, ...) and the gamma/beta of GN ops; graph inputs and outputs stay float32 behind Casts.
    The result passes ``onnx.checker`` with full checks.
    """
    model = ir.load(source)
    graph = model.graph
    keep = _fp32_inputs(model)
    for value in list(graph.initializers.values()):
        if value.dtype == ir.DataType.FLOAT and value not in keep and value.const_value is not None:
            value.const_value = ir.tensor(
                value.const_value.numpy().astype(np.float16), name=value.name
            )
            value.dtype = ir.DataType.FLOAT16
    for node in list(graph):
        _node_to_fp16(node)
    for value in graph.inputs:
        if value.dtype == ir.DataType.FLOAT:
            _cast_after(graph, value)
    for index, value in enumerate(graph.outputs):
        if value.dtype == ir.DataType.FLOAT:
            graph.outputs[index] = _cast_before_output(graph, value)
    for node in list(graph):
        for index, inp in enumerate(node.inputs):
            if (
                inp is not None
                and index in _float_only_inputs(model, node)
                and not inp.is_initializer()
            ):
                _cast_input(graph, node, index, ir.DataType.FLOAT)
    _reinfer_types(model)
    # Weights go to a data file beside the copy (the source's may be external, and models over
    # 2 GB cannot be checked in memory); the copy is checked where it lies.
    out = Path(output)
    ir.save(model, out, external_data=out.name + ".data")
    onnx.checker.check_model(str(out), full_check=True)


def _float_only_inputs(model: ir.Model, node: ir.Node) -> set[int]:
    """Input indices whose schema allows float32 but not float16 (Resize's roi and scales)."""
    if node.domain not in ("", "ai.onnx"):
        return set()
    try:
        schema = onnx.defs.get_schema(node.op_type, model.opset_imports.get("", 21), node.domain)
    except onnx.defs.SchemaError:
        return set()
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    only = set()
    for index, formal in enumerate(schema.inputs):
        types = allowed.get(formal.type_str, {formal.type_str})
        if "tensor(float)" in types and "tensor(float16)" not in types:
            only.add(index)
    return only


def _fp32_inputs(model: ir.Model) -> set[ir.Value]:
    """Initializers that stay float32: GN gamma/beta and float-only schema inputs."""
    keep: set[ir.Value] = set()
    for node in model.graph:
        if plugin_op.is_plugin_node(node):
            keep.update(v for v in node.inputs[1:3] if v is not None)
        for index in _float_only_inputs(model, node):
            if index < len(node.inputs) and node.inputs[index] is not None:
                keep.add(node.inputs[index])  # type: ignore[arg-type]
    return {v for v in keep if v.is_initializer()}


def _node_to_fp16(node: ir.Node) -> None:
    """Float32 constants and casts inside the graph become float16."""
    if node.domain not in ("", "ai.onnx"):
        return
    if node.op_type == "Cast" and node.attributes.get_int("to") == ir.DataType.FLOAT:
        node.attributes["to"] = ir.AttrInt64("to", ir.DataType.FLOAT16)
    for name in ("value",):
        attr = node.attributes.get(name)
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            tensor = attr.as_tensor()
            if tensor.dtype == ir.DataType.FLOAT:
                node.attributes[name] = ir.AttrTensor(
                    name, ir.tensor(tensor.numpy().astype(np.float16))
                )


def _cast_input(graph: ir.Graph, node: ir.Node, index: int, to: ir.DataType) -> None:
    source = node.inputs[index]
    assert source is not None
    cast = ir.node(
        "Cast", [source], attributes={"to": int(to)}, name=f"{node.name}/gn_deploy_cast{index}"
    )
    graph.insert_before(node, cast)
    node.replace_input_with(index, cast.outputs[0])


def _cast_after(graph: ir.Graph, value: ir.Value) -> None:
    """Feed the model's users of a float32 input through a Cast to float16."""
    users = list(value.uses())
    cast = ir.node(
        "Cast",
        [value],
        attributes={"to": int(ir.DataType.FLOAT16)},
        name=f"{value.name}/gn_deploy_to_fp16",
    )
    graph.insert_before(next(iter(graph)), cast)
    for use in users:
        use.node.replace_input_with(use.idx, cast.outputs[0])


def _cast_before_output(graph: ir.Graph, value: ir.Value) -> ir.Value:
    """A float32 output computed in float16 ends with a Cast back to float32."""
    name = value.name
    value.name = f"{name}/gn_deploy_fp16"
    cast = ir.node("Cast", [value], attributes={"to": int(ir.DataType.FLOAT)}, name=f"{name}/cast")
    graph.append(cast)
    out = cast.outputs[0]
    out.name, out.dtype, out.shape = name, ir.DataType.FLOAT, value.shape
    return out


def _reinfer_types(model: ir.Model) -> None:
    """Forget intermediate types and let ONNX shape inference derive them again."""
    graph = model.graph
    interface = set(graph.inputs) | set(graph.outputs)
    for node in graph:
        for value in node.outputs:
            if value not in interface:
                value.type = None
                value.shape = None
    ShapeInferencePass()(model)
