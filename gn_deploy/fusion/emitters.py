"""Emitters: turn a `GroupNormSite` into one node of a target.

Adding a target means adding an emitter here and nothing else. Each emitter also knows how to
run what it emits, which the verifier uses to prove every rewrite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
import onnx_ir as ir

from gn_deploy import plugin_op
from gn_deploy.errors import UsageError
from gn_deploy.fusion.graph import opset_version
from gn_deploy.fusion.recognizers.group_norm_op import FAMILY_21
from gn_deploy.fusion.site import GroupNormSite, Layout
from gn_deploy.modelio import SOURCE_OPSET

GROUPNORM_OPSET = 21


@dataclass
class Emitted:
    nodes: list[ir.Node]
    initializers: list[ir.Value]

    @property
    def output(self) -> ir.Value:
        return self.nodes[-1].outputs[0]


def _in_channels_first(
    site: GroupNormSite, x: ir.Value, prefix: str, make: Callable[[ir.Value], ir.Node]
) -> list[ir.Node]:
    """``make``'s op on x, between Transposes when the site is channels last.

    Neither ONNX GroupNormalization nor the plugin op takes channels-last tensors; TensorRT
    can turn these Transposes into the plugin's channels-last formats.
    """
    if site.view_shape is not None:  # x read as [N', C, ...]: reshape it first
        shape = ir.node(
            "Constant",
            [],
            attributes={"value": ir.tensor(np.asarray(site.view_shape, np.int64))},
            name=f"{prefix}/view_shape",
        )
        view = ir.node("Reshape", [x, shape.outputs[0]], name=f"{prefix}/view")
        return [shape, view, make(view.outputs[0])]
    if site.layout is Layout.NCHW:
        return [make(x)]
    assert x.shape is not None
    rank = len(x.shape)
    first = ir.node(
        "Transpose",
        [x],
        attributes={"perm": [0, rank - 1, *range(1, rank - 1)]},
        name=f"{prefix}/to_channels_first",
    )
    op = make(first.outputs[0])
    last = ir.node(
        "Transpose",
        [op.outputs[0]],
        attributes={"perm": [0, *range(2, rank), 1]},
        name=f"{prefix}/to_channels_last",
    )
    return [first, op, last]


def _initializer(name: str, array: np.ndarray) -> ir.Value:
    tensor = ir.tensor(array, name=name)
    return ir.Value(
        name=name, const_value=tensor, type=ir.TensorType(tensor.dtype), shape=tensor.shape
    )


class _RunsOnOrt:
    """Emitted ops run on ONNX Runtime (FusedGroupNorm through gn-deploy's op library)."""

    def run(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        from gn_deploy.backends.ort import run_small_model

        return run_small_model(model, feeds)


class OnnxEmitter(_RunsOnOrt):
    """Standard ONNX GroupNormalization-21 (per-channel scale and bias); SiLU stays separate."""

    name = "onnx"
    # GroupNormalization with per-channel scale exists from opset 21: load_model raises it.
    required_opset: int | None = GROUPNORM_OPSET
    folds_activation = False
    opset_imports: ClassVar[dict[str, int]] = {"": GROUPNORM_OPSET}

    def is_final(self, site: GroupNormSite) -> bool:
        return site.family == FAMILY_21 and len(site.nodes) == 1

    def unsupported(self, site: GroupNormSite) -> str:
        """Why this target cannot express the site faithfully ('' when it can)."""
        return ""

    def prepare(self, model: ir.Model) -> list[str]:
        """Notes on what loading did for this target (it raised the opset to 21)."""
        source = model.meta.get(SOURCE_OPSET, opset_version(model))
        if source >= GROUPNORM_OPSET:
            return []
        return [f"model opset upgraded from {source} to {GROUPNORM_OPSET} for GroupNormalization"]

    def emit(self, site: GroupNormSite, x: ir.Value, prefix: str) -> Emitted:
        dtype = x.dtype.numpy() if x.dtype is not None else np.float32
        gamma = _initializer(f"{prefix}.scale", site.gamma_or_ones().astype(dtype))
        beta = _initializer(f"{prefix}.bias", site.beta_or_zeros().astype(dtype))

        def make(value: ir.Value) -> ir.Node:
            return ir.node(
                "GroupNormalization",
                [value, gamma, beta],
                attributes={"num_groups": site.num_groups, "epsilon": site.epsilon},
                name=prefix,
            )

        return Emitted(_in_channels_first(site, x, prefix, make), [gamma, beta])


class FusedOpEmitter(_RunsOnOrt):
    """gn-deploy's own op `gn_deploy.FusedGroupNorm` with fp32 gamma/beta and SiLU folded: the
    TensorRT plugin runs it, and so does ONNX Runtime with gn-deploy's op library."""

    name = "fused-op"
    required_opset: int | None = None
    folds_activation = True
    opset_imports: ClassVar[dict[str, int]] = {plugin_op.DOMAIN: plugin_op.DOMAIN_VERSION}

    def __init__(self, channels_last: bool = False) -> None:
        # the op's channels_last attribute: for builders that cannot time formats (TensorRT-RTX)
        self.extra = {"channels_last": 1} if channels_last else {}

    def is_final(self, site: GroupNormSite) -> bool:
        return False

    def unsupported(self, site: GroupNormSite) -> str:
        """Why this target cannot express the site faithfully ('' when it can)."""
        if not (site.epsilon >= 0 and math.isfinite(site.epsilon)):
            return f"the plugin needs a finite epsilon >= 0, the model has {site.epsilon:g}"
        return ""

    def prepare(self, model: ir.Model) -> list[str]:
        model.opset_imports.setdefault(plugin_op.DOMAIN, plugin_op.DOMAIN_VERSION)
        return []

    def emit(self, site: GroupNormSite, x: ir.Value, prefix: str) -> Emitted:
        gamma = _initializer(f"{prefix}.gamma", site.gamma_or_ones())
        beta = _initializer(f"{prefix}.beta", site.beta_or_zeros())

        def make(value: ir.Value) -> ir.Node:
            return ir.node(
                plugin_op.OP_TYPE,
                [value, gamma, beta],
                attributes={
                    "num_groups": site.num_groups,
                    "epsilon": site.epsilon,
                    "activation": int(site.activation),
                    "plugin_namespace": plugin_op.PLUGIN_NAMESPACE,
                    "plugin_version": plugin_op.PLUGIN_VERSION,
                    **self.extra,
                },
                domain=plugin_op.DOMAIN,
                name=prefix,
            )

        return Emitted(_in_channels_first(site, x, prefix, make), [gamma, beta])


Emitter = OnnxEmitter | FusedOpEmitter

TARGETS = (OnnxEmitter.name, FusedOpEmitter.name)
# Earlier name of the fused-op target, still accepted.
ALIASES = {"trt-plugin": FusedOpEmitter.name}


def get_emitter(target: str, channels_last: bool = False) -> Emitter:
    target = ALIASES.get(target, target)
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    if target == FusedOpEmitter.name:
        return FusedOpEmitter(channels_last)
    if channels_last:
        raise UsageError(
            "--channels-last sets an attribute of gn-deploy's op: use --target fused-op"
        )
    return OnnxEmitter()
