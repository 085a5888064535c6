"""`GroupNormSite`: the canonical record of one group normalization found in a graph."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir


class Activation(enum.IntEnum):
    """The epilogue fused after the affine (values are the plugin op's `activation`)."""

    NONE = 0
    SILU = 1


class Layout(enum.Enum):
    """Where the channel axis is: NCHW puts it at axis 1, NHWC at the last axis."""

    NCHW = "NCHW"
    NHWC = "NHWC"


@dataclass
class GroupNormSite:
    """One GN: everything an emitter needs, in terms independent of the spelling it came from.

    ``nodes`` are the nodes the fused op replaces (constant producers around them are left to
    dead-code removal); ``output`` is the value the fused op takes over.
    """

    family: str
    x: ir.Value
    output: ir.Value
    num_groups: int
    epsilon: float
    channels: int
    nodes: list[ir.Node]
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None
    activation: Activation = Activation.NONE
    layout: Layout = Layout.NCHW
    warnings: list[str] = field(default_factory=list)
    # The default-domain opset under which ``nodes`` mean what the recognizer read (None: the
    # model's); the verifier runs them at it.
    opset: int | None = None
    # x is read as this channels-first shape: leading dims folded into the batch (the dynamo
    # exporter folds a video model's permute(0, 2, 1, 3, 4).reshape(B*F, C, H, W) into the
    # grouped Reshape, so x is [B, F, C, H, W]). None: x's own shape.
    view_shape: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        """A stable name for reports: the first replaced node's name."""
        return self.nodes[0].name or f"{self.nodes[0].op_type}@{self.x.name}"

    def gamma_or_ones(self) -> np.ndarray:
        g = np.ones(self.channels) if self.gamma is None else self.gamma
        return np.asarray(g, dtype=np.float32)

    def beta_or_zeros(self) -> np.ndarray:
        b = np.zeros(self.channels) if self.beta is None else self.beta
        return np.asarray(b, dtype=np.float32)


@dataclass
class Refusal:
    """A GN-like candidate that was not fused, with a reason a user can act on."""

    node: str
    op_type: str
    reason: str
    warnings: list[str] = field(default_factory=list)
    anchor: ir.Node | None = field(default=None, compare=False, repr=False)
