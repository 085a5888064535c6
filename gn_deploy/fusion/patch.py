"""Write a fused model by patching the protobuf it was read from.

Re-serializing the whole IR costs time in proportion to the model; the rewrite only removes the
replaced nodes, puts the emitted ones in their place and swaps a few initializers, so those
edits are recorded while the IR is rewritten and applied to the loaded protobuf at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
import onnx_ir as ir

from gn_deploy.modelio import SOURCE_PROTO

MIN_IR_VERSION = 4


@dataclass
class Edits:
    """What a fusion changed in the main graph, in terms of the IR nodes read from the file."""

    order: list[ir.Node]  # the graph's nodes as loaded, index = position in the protobuf
    removed: set[ir.Node] = field(default_factory=set)
    inserted: dict[ir.Node, list[ir.Node]] = field(default_factory=dict)  # in place of a node
    added_initializers: list[ir.Value] = field(default_factory=list)
    removed_initializers: set[str] = field(default_factory=set)
    taken: set[str] = field(default_factory=set)  # node and value names in use

    @classmethod
    def of(cls, model: ir.Model) -> Edits:
        order = list(model.graph)
        taken = {n.name for n in order if n.name}
        taken.update(v.name for n in order for v in n.outputs if v.name)
        taken.update(model.graph.initializers)
        return cls(order=order, taken=taken)

    def unique(self, base: str) -> str:
        """``base``, or ``base_1``, ``base_2``, ...: a name no node or value has yet."""
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


def patched_bytes(model: ir.Model, edits: Edits) -> bytes:
    """Apply ``edits`` to the protobuf ``model`` was loaded from and serialize it."""
    proto: onnx.ModelProto = model.meta[SOURCE_PROTO]
    graph = proto.graph
    nodes: list[onnx.NodeProto] = []
    gone: set[str] = set()
    for ir_node, node in zip(edits.order, graph.node, strict=True):
        nodes.extend(ir.serde.serialize_node(n) for n in edits.inserted.get(ir_node, []))
        if ir_node in edits.removed:
            gone.update(node.output)
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [i for i in graph.initializer if i.name not in edits.removed_initializers]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for value in edits.added_initializers:
        assert value.const_value is not None
        tensor = ir.serde.serialize_tensor(value.const_value)
        tensor.name = value.name or ""  # _emit may have renamed it to stay unique
        graph.initializer.append(tensor)
    stale = gone - {name for node in nodes for name in node.output}
    if stale:
        kept_info = [v for v in graph.value_info if v.name not in stale]
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
    # IR 3 wanted every initializer listed as a graph input too; IR 4 dropped that rule and
    # any opset is valid at a newer IR version: the added gamma/beta need no input entries.
    proto.ir_version = max(proto.ir_version, MIN_IR_VERSION)
    del proto.opset_import[:]
    proto.opset_import.extend(
        onnx.helper.make_opsetid(domain, version) for domain, version in model.opset_imports.items()
    )
    return proto.SerializeToString()
