"""Reading and writing ONNX files: clear errors naming the file, atomic writes, external data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import onnx
import onnx.version_converter
import onnx_ir as ir
from google.protobuf.message import DecodeError

from gn_deploy.errors import GnDeployError, UsageError

SOURCE_OPSET = "gn_deploy.source_opset"
# The protobuf the IR was read from (its tensors are the IR's, no copy): patched on save.
SOURCE_PROTO = "gn_deploy.source_proto"


class OpsetUpgradeError(GnDeployError):
    """ONNX's version converter could not bring the model to the opset asked for."""


def value_dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """Each axis of a tensor's shape: its size, or where it is dynamic its name (``?`` when it
    has none)."""
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value.type.tensor_type.shape.dim
    ]


def shown_dims(dims: list[int | str]) -> str:
    """``[batch, 4, 32, 32]``."""
    return f"[{', '.join(map(str, dims))}]"


def _check_readable(p: Path) -> None:
    if not p.exists():
        raise UsageError(f"{p}: no such file")
    if p.is_dir():
        raise UsageError(f"{p}: is a directory, expected an .onnx file")
    if not os.access(p, os.R_OK):
        raise GnDeployError(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise GnDeployError(f"{p}: empty file, not an ONNX model")


def load_proto(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """An ONNX file's protobuf, external data left on disk; errors name the file."""
    p = Path(path)
    try:
        _check_readable(p)
        return onnx.load(p, load_external_data=False)
    except OSError as exc:
        raise GnDeployError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise GnDeployError(f"{p}: not a valid ONNX model (truncated or corrupt: {exc})") from exc


def load_model(
    path: str | os.PathLike[str], infer_shapes: bool = False, min_opset: int | None = None
) -> ir.Model:
    """Load an ONNX model, its external data left on disk until used.

    ``min_opset`` raises the default domain to at least that opset with ONNX's version
    converter (:class:`OpsetUpgradeError` when it cannot); ``model.meta[SOURCE_OPSET]`` keeps
    the file's own opset. ``infer_shapes`` runs ONNX shape inference (TorchScript exports carry
    no intermediate shapes). Both run on the protobuf, cheaper than through the IR.
    """
    p = Path(path)
    try:
        proto = load_proto(p)
        source_opset = _default_opset(proto)
        if min_opset is not None and source_opset < min_opset:
            proto = _upgraded(proto, min_opset, p)
        if infer_shapes:
            proto = _with_inferred_shapes(proto)
        model = ir.serde.deserialize_model(proto)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise GnDeployError(f"{p}: not a valid ONNX model (truncated or corrupt: {exc})") from exc
    if len(model.graph) == 0:
        raise GnDeployError(f"{p}: not a valid ONNX model (the graph has no nodes)")
    model.meta[SOURCE_OPSET] = source_opset
    model.meta[SOURCE_PROTO] = proto
    ir.external_data.set_base_dir(model.graph, p.parent)
    _check_external_data(model, p)
    return model


# ONNX propagates the values of Shape ops into Reshape only from this opset on.
_SHAPE_DATA_PROP_OPSET = 15


# Tensors above this size are weights: opset conversion and shape inference need only their
# type and shape, and copying their bytes into ONNX's C++ and back costs more than the work.
_WEIGHT_BYTES = 1024


def _without_weights(
    call: Callable[[onnx.ModelProto], onnx.ModelProto], proto: onnx.ModelProto
) -> onnx.ModelProto:
    """``call(proto)`` with large initializer bytes set aside, then put back in both models."""
    # ByteSize, not len(raw_data): reading raw_data copies the bytes out of the protobuf.
    stash = {
        i.name: i.raw_data
        for i in proto.graph.initializer
        if i.ByteSize() > _WEIGHT_BYTES and i.HasField("raw_data")
    }
    for init in proto.graph.initializer:
        if init.name in stash:
            init.ClearField("raw_data")
    try:
        result = call(proto)
    finally:
        for init in proto.graph.initializer:
            if init.name in stash:
                init.raw_data = stash[init.name]
    restored = 0
    for init in result.graph.initializer:
        if init.name in stash and not init.raw_data:
            init.raw_data = stash[init.name]
            restored += 1
    if restored != len(stash):  # the call renamed or dropped a weight: do it the plain way
        return call(proto)
    return result


def _default_opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _upgraded(proto: onnx.ModelProto, opset: int, path: Path | None = None) -> onnx.ModelProto:
    """The model at ``opset`` (ONNX's version converter), its IR version raised to match."""
    try:
        result = _without_weights(lambda m: onnx.version_converter.convert_version(m, opset), proto)
    except (RuntimeError, ValueError, onnx.version_converter.ConvertError) as exc:
        raise OpsetUpgradeError(
            f"{path}: ONNX's version converter cannot raise the model from opset "
            f"{_default_opset(proto)} to {opset}: {str(exc).strip().splitlines()[-1]}"
        ) from exc
    needed = onnx.helper.find_min_ir_version_for(list(result.opset_import), ignore_unknown=True)
    result.ir_version = max(result.ir_version, needed)
    if not result.functions and proto.functions:  # the converter drops model-local functions
        result.functions.extend(proto.functions)
    _keep_io_types(proto.graph, result.graph)
    return result


def _keep_io_types(source: onnx.GraphProto, converted: onnx.GraphProto) -> None:
    """Graph inputs, outputs and value_info keep their types through the version converter.

    Its own value_info loses the names of symbolic dims, and it takes a graph output's type
    from a value_info entry of the same name, which onnxconverter-common's fp16 leaves stale;
    the source's entries (graph inputs and outputs excepted) are kept instead.
    """
    declared = {v.name: v for v in [*source.input, *source.output]}
    for value in [*converted.input, *converted.output]:
        if value.name in declared:
            value.type.CopyFrom(declared[value.name].type)
    del converted.value_info[:]
    converted.value_info.extend(v for v in source.value_info if v.name not in declared)


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(proto, data_prop=True)


def _with_inferred_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Run ONNX shape inference, seeing through ``Reshape(·, Shape(x))`` at every opset.

    Below opset 15 ONNX cannot propagate ``Shape`` values, so inference runs on a copy converted
    to opset 15 and only its value shapes are copied back; the model itself keeps its opset.
    """
    if _default_opset(proto) >= _SHAPE_DATA_PROP_OPSET:
        return _without_weights(_infer, proto)
    try:
        upgraded = _upgraded(proto, _SHAPE_DATA_PROP_OPSET)
    except OpsetUpgradeError:  # no adapter for some op: plain inference
        return _without_weights(_infer, proto)
    inferred = _without_weights(_infer, upgraded)
    produced = {name for node in proto.graph.node for name in node.output}
    known = {v.name for v in proto.graph.value_info}
    proto.graph.value_info.extend(
        v for v in inferred.graph.value_info if v.name in produced and v.name not in known
    )
    return proto


def _check_external_data(model: ir.Model, path: Path) -> None:
    """Every external tensor's file lies in the model's folder and holds its bytes."""
    folder = path.parent.resolve()
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if not isinstance(tensor, ir.ExternalTensor):
            continue
        data = Path(tensor.base_dir or path.parent) / tensor.location
        where = f"{path}: tensor {value.name!r}"
        if Path(tensor.location).is_absolute() or folder not in data.resolve().parents:
            raise GnDeployError(
                f"{where} names external data {tensor.location!r} outside the model's folder"
            )
        if not data.is_file():
            raise GnDeployError(f"{where}: external data file {data} is missing")
        end = (tensor.offset or 0) + (tensor.length if tensor.length is not None else tensor.nbytes)
        if end > data.stat().st_size:
            raise GnDeployError(
                f"{where} reads bytes up to {end} of {data}, which has only "
                f"{data.stat().st_size} (truncated data file?)"
            )


def check_external_data(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """What :func:`load_model` checks of external data, for a protobuf from :func:`load_proto`."""
    _check_external_data(ir.serde.deserialize_model(proto), Path(path))


def uses_external_data(model: ir.Model) -> bool:
    return any(
        isinstance(v.const_value, ir.ExternalTensor) for v in model.graph.initializers.values()
    )
