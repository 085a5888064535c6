"""What the builder chose for each plugin layer, read from its own account of the engine.

With ``ProfilingVerbosity.DETAILED`` both TensorRT (10, 11) and TensorRT-RTX log, at the end
of a build, one ``Layers:`` message: the engine inspector's one-line-per-layer description
(name, type, input and output tensors with their formats, metadata naming the ONNX node).
It is the only account there is without a GPU: reading the inspector itself needs the engine
deserialized, which needs a GPU the engine was built for. TensorRT writes a tensor's format as
``Format/Datatype: Row major linear FP16 format``, TensorRT-RTX as ``Datatype: Half, Format:
(Linear) Row major linear format``; both are kept as written.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any

LAYERS_MESSAGE = "Layers:"
_KEYS = (
    "Name",
    "LayerType",
    "Location",
    "Dimensions",
    "Strides",
    "StrideOrder",
    "Datatype",
    "Format",
)
_FIELD = re.compile(
    r"(Format/Datatype|{keys}): (.*?)(?=, (?:Format/Datatype|{keys}): |$)".format(
        keys="|".join(_KEYS)
    )
)
_TENSOR = re.compile(r"\{ ([^{}]*) \}")
_SECTION = re.compile(r"\b(Inputs|Constants|Outputs): \[")
# TensorRT-RTX: custom_layer; TensorRT's inspector: PluginV3 (PluginV2 for older plugins).
_PLUGIN_TYPE = re.compile(r"custom_layer|plugin", re.IGNORECASE)
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]*)\]")


def capturing_logger(trt: Any, runtime_name: str) -> Any:
    """A logger that prints warnings and errors to stderr and keeps the ``Layers:`` message.

    Its ``layers`` attribute holds that message (empty until a DETAILED build logs it).
    """
    levels = trt.ILogger.Severity
    shown = {levels.INTERNAL_ERROR, levels.ERROR, levels.WARNING}

    class Capturing(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.layers = ""

        def log(self, severity: Any, msg: str) -> None:
            if msg.startswith(LAYERS_MESSAGE):
                self.layers = msg
            elif severity in shown:
                level = str(severity).rsplit(".", 1)[-1].lower()
                print(f"{runtime_name}: {level}: {msg}", file=sys.stderr, flush=True)

    return Capturing()


def engine_layers(layers: str) -> int | None:
    """How many layers the engine has (reformatting layers included); None if not logged."""
    return len(_layer_lines(layers)) if layers else None


def plugin_formats(layers: str, nodes: Iterable[str]) -> list[dict[str, str]] | None:
    """Per plugin layer made from one of ``nodes`` (ONNX node names): the formats of its
    data input and output (``x``, ``y``) as the builder chose them, in engine order; None
    when the builder logged no description of the engine."""
    if not layers:
        return None
    wanted = set(nodes)
    found = []
    for line in _layer_lines(layers):
        header = dict(_FIELD.findall(line.split(", Inputs: [", 1)[0]))
        if not _PLUGIN_TYPE.search(header.get("LayerType", "")):
            continue
        named = _ONNX_LAYER.findall(line) or [header.get("Name", "")]
        node = next((n for n in named if n in wanted), None)
        if node is None:
            continue
        sections = _sections(line)
        inputs, outputs = sections.get("Inputs", []), sections.get("Outputs", [])
        if inputs and outputs:
            found.append({"node": node, "x": inputs[0], "y": outputs[0]})
    return found


def _layer_lines(layers: str) -> list[str]:
    """One line per layer: those after ``Layers:`` up to the first blank line (the I/O
    tensors and engine metadata follow it)."""
    lines = []
    for line in layers.splitlines()[1:]:
        if not line.strip():
            break
        lines.append(line)
    return lines


def _sections(line: str) -> dict[str, list[str]]:
    """The formats of the tensors listed under Inputs, Constants and Outputs of one layer."""
    marks = list(_SECTION.finditer(line))
    sections = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        span = line[mark.end() : following.start() if following else len(line)]
        sections[mark.group(1)] = [_format(body) for body in _TENSOR.findall(span)]
    return sections


def _format(tensor: str) -> str:
    fields = dict(_FIELD.findall(tensor))
    if "Format/Datatype" in fields:
        return fields["Format/Datatype"]
    return " ".join(v for v in (fields.get("Datatype"), fields.get("Format")) if v)
