"""Test helpers: build small GN models, export them with torch, count ops, run them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from gn_deploy import plugin_op


def op_counts(path: str | Path) -> Counter[str]:
    model = onnx.load(path, load_external_data=False)
    return Counter(n.op_type for n in model.graph.node)


def run_ort(path: str | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime on the CPU; FusedGroupNorm through gn-deploy's op library."""
    from gn_deploy.backends.ort import session

    return session(path).run(None, feeds)


def run_reference(path: str | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path), new_ops=[plugin_op.FusedGroupNorm])
    return [np.asarray(o) for o in evaluator.run(None, feeds)]


def two_gn_module(channels: int, groups: int, rank: int, affine: bool):
    """x → GN1 → SiLU, + x → GN2: two GroupNorms, the first with a SiLU epilogue."""
    import torch
    from torch import nn

    class TwoGN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gn1 = nn.GroupNorm(groups, channels, affine=affine)
            self.gn2 = nn.GroupNorm(groups, channels, eps=1e-3, affine=affine)
            if affine:
                for gn in (self.gn1, self.gn2):
                    nn.init.uniform_(gn.weight, 0.5, 1.5)
                    nn.init.uniform_(gn.bias, -0.5, 0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = nn.functional.silu(self.gn1(x))
            return self.gn2(h + x)

    torch.manual_seed(0)
    return TwoGN().eval()


def spatial_shape(rank: int) -> tuple[int, ...]:
    return {3: (7,), 4: (5, 6), 5: (3, 4, 5)}[rank]


def handwritten_gn_module(
    variance: str,
    norm: str,
    affine: str = "index",
    view5d: bool = False,
    groups: int = 4,
    channels: int = 8,
):
    """A GN written by hand in torch, in the spellings people use (fusion issue, family 1)."""
    import torch
    from torch import nn

    class HandWrittenGN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.rand(channels) + 0.5)
            self.b = nn.Parameter(torch.randn(channels))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, c, h, w = x.shape
            xg = x.view(n, groups, c // groups, h, w) if view5d else x.view(n, groups, -1)
            dims = (2, 3, 4) if view5d else (-1,)
            m = xg.mean(dims, keepdim=True)
            if variance == "var":
                v = xg.var(dims, unbiased=False, keepdim=True)
            elif variance == "sq":
                v = ((xg - m) ** 2).mean(dims, keepdim=True)
            else:
                v = (xg * xg).mean(dims, keepdim=True) - m * m
            if norm == "div":
                y = (xg - m) / torch.sqrt(v + 1e-5)
            elif norm == "rsqrt":
                y = (xg - m) * torch.rsqrt(v + 1e-5)
            elif norm == "recip":
                y = (xg - m) * (1.0 / torch.sqrt(v + 1e-5))
            else:
                y = (xg - m) * (v + 1e-5) ** -0.5
            y = y.reshape(n, c, h, w)
            if affine == "index":
                return y * self.w[None, :, None, None] + self.b[None, :, None, None]
            if affine == "view":
                return y * self.w.view(1, -1, 1, 1) + self.b.view(1, -1, 1, 1)
            return y

    torch.manual_seed(0)
    return HandWrittenGN().eval()


def export_torch(
    module: object,
    path: Path,
    exporter: str,
    opset: int,
    shape: tuple[int, ...] = (2, 8, 5, 6),
    dynamic: bool = False,
    dtype: str = "float32",
) -> Path:
    """Export ``module`` with one random input ``x`` of ``shape`` using torch's exporter."""
    import warnings

    import torch

    x = torch.randn(*shape).to(getattr(torch, dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            input_names=["x"],
            opset_version=opset,
            dynamo=exporter == "dynamo",
            verbose=False,
            dynamic_axes={"x": {0: "batch"}} if dynamic else None,
        )
    return path


def fused_proto(
    gamma: np.ndarray,
    beta: np.ndarray,
    element: int = onnx.TensorProto.FLOAT,
    dims: list[int] | None = None,
    **attributes: object,
) -> onnx.ModelProto:
    """One FusedGroupNorm node ``gn0`` over x of ``element`` type and ``dims`` (None: any
    shape) with the attributes given; IR version 10, which ONNX Runtime 1.20 still reads."""
    from onnx import helper, numpy_helper

    node = helper.make_node(
        "FusedGroupNorm", ["x", "gamma", "beta"], ["y"], name="gn0", domain="gn_deploy",
        **attributes,
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", element, dims)],
        [helper.make_tensor_value_info("y", element, dims)],
        [numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(beta, "beta")],
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("gn_deploy", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def plugin_model(path: Path, **attributes: object) -> Path:
    """:func:`fused_proto` over x [1, 32, 4, 4] float32, gamma and beta random, saved at path."""
    rng = np.random.default_rng(0)
    gamma, beta = (rng.standard_normal(32).astype(np.float32) for _ in range(2))
    onnx.save(fused_proto(gamma, beta, dims=[1, 32, 4, 4], **attributes), path)
    return path


def require_ort_library() -> None:
    """Skip the calling test module where gn-deploy's ONNX Runtime op library cannot be built
    (no C++ compiler), saying why."""
    import pytest

    from gn_deploy import ort_library
    from gn_deploy.errors import GnDeployError

    try:
        ort_library.library_path()
    except GnDeployError as exc:
        pytest.skip(f"needs gn-deploy's ONNX Runtime op library: {exc}", allow_module_level=True)
