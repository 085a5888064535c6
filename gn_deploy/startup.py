"""Start-up of a `gn-deploy` process: what it need not import before it is used.

onnx-ir imports sympy (about 0.4 s, a third of a one-GN `fuse`) for arithmetic on symbolic
dims, which gn-deploy's commands do not do; its ``_symbolic_shapes`` module reads sympy's
functions at import. :func:`defer_sympy` puts a stand-in for each in ``sys.modules``: the
real module is imported, whole and as usual, the first time anything reads an attribute of
the stand-in (torch does, when `export` imports it), and every read goes to it from then on.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

SYMBOLIC_SHAPES = "onnx_ir._symbolic_shapes"


class _Deferred(types.ModuleType):
    """Stands in for a module until one of its attributes is read. Its ``__spec__`` is the
    module's own (what the import system and ``find_spec`` read of a module in sys.modules)."""

    def __init__(self, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(spec.name)
        self.__spec__ = spec

    def __getattr__(self, attr: str) -> Any:
        real = sys.modules.get(self.__name__)
        if real is None or real is self:
            sys.modules.pop(self.__name__, None)
            real = importlib.import_module(self.__name__)
        return getattr(real, attr)


def defer_sympy() -> None:
    """Defer sympy and onnx-ir's module that reads it (nothing when either is imported already,
    or onnx-ir has no such module)."""
    if "sympy" in sys.modules or "onnx_ir" in sys.modules:
        return
    sympy = importlib.util.find_spec("sympy")
    onnx_ir = importlib.util.find_spec("onnx_ir")  # a top-level name: found, not imported
    folders = (onnx_ir.submodule_search_locations or []) if onnx_ir is not None else []
    sources = [Path(f) / "_symbolic_shapes.py" for f in folders]
    source = next((s for s in sources if s.is_file()), None)
    shapes = importlib.util.spec_from_file_location(SYMBOLIC_SHAPES, source) if source else None
    if sympy is None or shapes is None:
        return
    for spec in (sympy, shapes):
        sys.modules[spec.name] = _Deferred(spec)
