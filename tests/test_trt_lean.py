"""The plugin library in TensorRT's real (lean) runtime: registry, creator, fields, round trip."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.trt_support import INTERFACE_TEST, PLUGIN_LIBRARY, needs_lean_runtime

pytestmark = needs_lean_runtime


@pytest.fixture(scope="module")
def creator():
    import tensorrt_lean_bindings as trt

    registry = trt.get_plugin_registry()
    assert registry.load_library(str(PLUGIN_LIBRARY)) is not None
    found = registry.get_creator("FusedGroupNorm", "1", "gn_deploy")
    assert found is not None
    return found


def _fields(groups: int = 32, eps: float = 1e-5, act: int = 1):
    import tensorrt_lean_bindings as trt

    return trt.PluginFieldCollection(
        [
            trt.PluginField("num_groups", np.array([groups], np.int32), trt.PluginFieldType.INT32),
            trt.PluginField("epsilon", np.array([eps], np.float32), trt.PluginFieldType.FLOAT32),
            trt.PluginField("activation", np.array([act], np.int32), trt.PluginFieldType.INT32),
        ]
    )


def test_registry_finds_the_creator(creator) -> None:
    import tensorrt_lean_bindings as trt

    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == (
        "FusedGroupNorm",
        "1",
        "gn_deploy",
    )
    fields = [(f.name, f.type) for f in creator.field_names]
    assert fields == [
        ("num_groups", trt.PluginFieldType.INT32),
        ("epsilon", trt.PluginFieldType.FLOAT32),
        ("activation", trt.PluginFieldType.INT32),
        ("channels_last", trt.PluginFieldType.INT32),
    ]


def test_creates_plugin_for_valid_fields(creator) -> None:
    import tensorrt_lean_bindings as trt

    plugin = creator.create_plugin("gn", _fields(), trt.TensorRTPhase.BUILD)
    assert plugin is not None
    core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
    assert (core.plugin_name, core.plugin_namespace, core.plugin_version) == (
        "FusedGroupNorm",
        "gn_deploy",
        "1",
    )
    build = plugin.get_capability_interface(trt.PluginCapabilityType.BUILD)
    assert build.num_outputs == 1


@pytest.mark.parametrize(
    ("groups", "eps", "act"), [(0, 1e-5, 0), (-2, 1e-5, 0), (32, -1.0, 0), (32, 1e-5, 5)]
)
def test_refuses_invalid_fields(creator, groups: int, eps: float, act: int) -> None:
    import tensorrt_lean_bindings as trt

    assert creator.create_plugin("bad", _fields(groups, eps, act), trt.TensorRTPhase.BUILD) is None


def test_serialized_fields_round_trip() -> None:
    """TensorRT's Python bindings cannot call getFieldsToSerialize on a C++ plugin, so a small
    C++ program drives the same library through TensorRT's interfaces."""
    if not INTERFACE_TEST.is_file():
        pytest.skip(f"needs {INTERFACE_TEST} (built by make plugin)")
    result = subprocess.run(
        [str(INTERFACE_TEST), str(PLUGIN_LIBRARY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(" failed") and ", 0 failed" in result.stdout
