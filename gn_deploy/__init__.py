"""gn-deploy: export, fuse, build and validate group-normalization models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "export_model",
    "fuse_model",
    "inspect_model",
    "ort_session_options",
    "run_onnx",
    "validate",
]

if TYPE_CHECKING:
    from gn_deploy.export import export_model
    from gn_deploy.fusion import fuse_model, inspect_model
    from gn_deploy.ort_library import session_options as ort_session_options
    from gn_deploy.parity import run_onnx, validate

# Public name -> the module defining it. No public name is also a submodule's name: importing
# the submodule would replace the function on the package.
_LAZY = {
    "export_model": "gn_deploy.export",
    "fuse_model": "gn_deploy.fusion",
    "inspect_model": "gn_deploy.fusion",
    "ort_session_options": "gn_deploy.ort_library",
    "run_onnx": "gn_deploy.parity",
    "validate": "gn_deploy.parity",
}
# Where a public name differs from the function's name in its module.
_RENAMED = {"ort_session_options": "session_options"}


def __getattr__(name: str) -> Any:
    """Import the public API lazily so that `import gn_deploy` never pulls in torch."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'gn_deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API and the module's own dunders (not its typing imports)."""
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
