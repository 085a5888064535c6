from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

Exporter = Callable[..., Path]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exporter:
    """Export a TwoGN model once per configuration for the whole session."""
    pytest.importorskip("torch", reason="exporter tests need torch (gn-deploy[torch])")
    from tests.helpers import export_torch, spatial_shape, two_gn_module

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
            path = root / ("_".join(map(str, key)) + ".onnx")
            shape = (2, channels, *spatial_shape(rank))
            cache[key] = export_torch(module, path, exporter, opset, shape, dynamic)
        return cache[key]

    return get
