"""Finding and loading gn-deploy's TensorRT plugin library (libgn_trt_plugin.so)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gn_deploy import plugin_op
from gn_deploy.errors import GnDeployError

PLUGIN_ENV = "GN_DEPLOY_TRT_PLUGIN"
LIBRARY_NAME = "libgn_trt_plugin.so"
_BUILD = Path(__file__).resolve().parents[2] / "build"
# Where `make plugin` (and a plain CMake build with TensorRT headers) puts it.
_CANDIDATES = (_BUILD / "groupnorm-trt" / LIBRARY_NAME, _BUILD / "groupnorm" / LIBRARY_NAME)


def find_plugin_library(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The plugin library: ``--plugin``, else $GN_DEPLOY_TRT_PLUGIN, else what `gn-deploy plugin
    build` made, else a checkout's build folder."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise GnDeployError(f"--plugin {path}: no such file")
        return path
    if os.environ.get(PLUGIN_ENV):
        path = Path(os.environ[PLUGIN_ENV])
        if not path.is_file():
            raise GnDeployError(f"${PLUGIN_ENV}={path}: no such file")
        return path
    from gn_deploy.trt.plugin_build import built_library

    for path in (built_library(), *_CANDIDATES):
        if path is not None and path.is_file():
            return path
    raise GnDeployError(
        f"the TensorRT plugin library {LIBRARY_NAME} was not found: build it with "
        "`gn-deploy plugin build --tensorrt-include /path/to/TensorRT/include` (or `make "
        f"plugin` in a checkout), or pass --plugin / set ${PLUGIN_ENV}"
    )


def load_plugin(trt: Any, path: Path) -> Any:
    """Load the library into TensorRT's plugin registry and return the FusedGroupNorm creator
    (loaded once per process: a second build in the same process finds it registered)."""
    registry = trt.get_plugin_registry()
    loaded = registry.get_creator(
        plugin_op.OP_TYPE, plugin_op.PLUGIN_VERSION, plugin_op.PLUGIN_NAMESPACE
    )
    if loaded is not None:
        return loaded
    if registry.load_library(str(path)) is None:
        raise GnDeployError(f"{path}: TensorRT's plugin registry could not load it")
    creator = registry.get_creator(
        plugin_op.OP_TYPE, plugin_op.PLUGIN_VERSION, plugin_op.PLUGIN_NAMESPACE
    )
    if creator is None:
        raise GnDeployError(
            f"{path}: loaded, but it registers no {plugin_op.PLUGIN_NAMESPACE}::"
            f"{plugin_op.OP_TYPE} v{plugin_op.PLUGIN_VERSION}"
        )
    return creator
