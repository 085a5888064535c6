from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

Exporter = Callable[..., Path]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exporter:
    """Export a TwoGN model once per configuration for the whole session."""
    torch = pytest.importorskip("torch", reason="exporter tests need torch (gn-deploy[torch])")
    from tests.helpers import spatial_shape, two_gn_module

    cache: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("exported")

    def get(
        exporter: str,
        opset: int,
        rank: int = 4,
        channels: int = 8,
        groups: int = 4,
        affine: bool = True,
        dynamic: bool = False,
    ) -> Path:
        key = (exporter, opset, rank, channels, groups, affine, dynamic)
        if key not in cache:
            module = two_gn_module(channels, groups, rank, affine)
            x = torch.randn(2, channels, *spatial_shape(rank))
            path = root / ("_".join(map(str, key)) + ".onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    (x,),
                    str(path),
                    input_names=["x"],
                    output_names=["y"],
                    opset_version=opset,
                    dynamo=exporter == "dynamo",
                    verbose=False,
                    dynamic_axes={"x": {0: "batch"}} if dynamic else None,
                )
            cache[key] = path
        return cache[key]

    return get
