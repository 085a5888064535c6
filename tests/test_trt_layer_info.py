"""Reading the builder's account of an engine: plugin layer formats and the engine's layer count.

The TensorRT-RTX text is the real `Layers:` message TensorRT-RTX 1.7 logged building the demo
model (`--target trt-plugin`, fp16, plugin asked for linear formats); the TensorRT one follows
the engine inspector's one-line form, whose formats read `Format/Datatype: ...`.
"""

from __future__ import annotations

import re
from pathlib import Path

from gn_deploy.trt.layer_info import engine_layers, plugin_formats

RTX_LAYERS = (Path(__file__).parent / "data" / "trt_rtx_1.7_layers_demo_fp16.txt").read_text()
ONNX_NODES = set(re.findall(r"\[ONNX Layer: ([^\]]*)\]", RTX_LAYERS))


def test_rtx_plugin_layers_and_their_formats() -> None:
    found = plugin_formats(RTX_LAYERS, ONNX_NODES)
    assert found is not None
    custom = [line for line in RTX_LAYERS.splitlines() if "LayerType: custom_layer" in line]
    assert len(found) == len(custom) == 8
    # every convolution, transpose and cast of the engine is left out, in engine order
    assert [f["node"] for f in found] == [
        re.search(r"\[ONNX Layer: ([^\]]*)\]", line).group(1) for line in custom
    ]
    for entry in found:
        assert entry["x"] == entry["y"] == "Half (Linear) Row major linear format"


def test_only_the_named_nodes_count() -> None:
    found = plugin_formats(RTX_LAYERS, ONNX_NODES)
    assert found is not None
    first = found[0]["node"]
    assert [f["node"] for f in plugin_formats(RTX_LAYERS, {first}) or []] == [first]
    assert plugin_formats(RTX_LAYERS, {"node_conv2d"}) == []


def test_engine_layers_counts_every_layer() -> None:
    count = engine_layers(RTX_LAYERS)
    transposes = RTX_LAYERS.count("LayerType: kgen")
    assert count is not None and count > transposes + 8
    # one line per layer after "Layers:", up to the I/O tensors' section
    assert count == RTX_LAYERS.splitlines().index("") - 1


def test_tensorrt_inspector_spelling() -> None:
    layers = "\n".join(
        [
            "Layers:",
            "Name: conv, LayerType: CaskConvolution, Inputs: [ { Name: x, Location: Device, "
            "Dimensions: [1,32,8,8], Format/Datatype: Channel major FP16 format where channel "
            "% 8 == 0 }], Outputs: [ { Name: c, Location: Device, Dimensions: [1,32,8,8], "
            "Format/Datatype: Channel major FP16 format where channel % 8 == 0 }], "
            "TacticValue: 0x1, Metadata: [ONNX Layer: conv]",
            "Name: gn, LayerType: PluginV3, Inputs: [ { Name: c, Location: Device, Dimensions: "
            "[1,32,8,8], Format/Datatype: Channel major FP16 format where channel % 8 == 0 }, "
            "{ Name: gamma, Location: Device, Dimensions: [32], Format/Datatype: Row major "
            "linear FP32 }], Outputs: [ { Name: y, Location: Device, Dimensions: [1,32,8,8], "
            "Format/Datatype: Channel major FP16 format where channel % 8 == 0 }], "
            "TacticValue: 0x0, Metadata: [ONNX Layer: gn]",
        ]
    )
    hwc8 = "Channel major FP16 format where channel % 8 == 0"
    assert plugin_formats(layers, {"gn", "conv"}) == [{"node": "gn", "x": hwc8, "y": hwc8}]
    assert engine_layers(layers) == 2


def test_nothing_logged_is_unknown_not_empty() -> None:
    assert plugin_formats("", {"gn"}) is None
    assert engine_layers("") is None
