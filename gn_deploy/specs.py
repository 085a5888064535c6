"""Parsing the command line's small languages: input specs, dynamic axes, `module:attr` refs."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gn_deploy.errors import GnDeployError, UsageError

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool")
_NAME = r"[A-Za-z_][\w.\-/]*"


@dataclass(frozen=True)
class InputSpec:
    """``name:1x3x64x64[:dtype]``: one model input's name, concrete shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        m = re.fullmatch(rf"({_NAME}):(\d+(?:x\d+)*)(?::(\w+))?", text.strip())
        if not m:
            raise UsageError(
                f"--input {text!r}: expected NAME:DIMS[:DTYPE], for example x:1x3x64x64:float16"
            )
        dtype = m.group(3) or "float32"
        if dtype not in DTYPES:
            raise UsageError(
                f"--input {text!r}: unknown dtype {dtype!r}; one of {', '.join(DTYPES)}"
            )
        shape = tuple(int(d) for d in m.group(2).split("x"))
        if any(d == 0 for d in shape):
            raise UsageError(f"--input {text!r}: dimensions must be positive")
        return cls(m.group(1), shape, dtype)


def parse_dynamic(text: str) -> tuple[str, dict[int, str]]:
    """``name:0=batch,2=height``: which axes of an input are dynamic, and their names."""
    m = re.fullmatch(rf"({_NAME}):(.+)", text.strip())
    if not m:
        raise UsageError(f"--dynamic {text!r}: expected NAME:AXIS=LABEL[,AXIS=LABEL...]")
    axes: dict[int, str] = {}
    for part in m.group(2).split(","):
        am = re.fullmatch(r"(\d+)=([A-Za-z_]\w*)", part.strip())
        if not am:
            raise UsageError(f"--dynamic {text!r}: {part!r} is not AXIS=LABEL (e.g. 0=batch)")
        axes[int(am.group(1))] = am.group(2)
    return m.group(1), axes


def load_reference(ref: str, what: str = "--model") -> Any:
    """Resolve ``package.module:attr`` (or ``path/to/file.py:attr``) to the object it names."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(
            f"{what} {ref!r}: expected MODULE:ATTRIBUTE, e.g. gn_deploy.models:demo_unet"
        )
    try:
        module = _import(module_name)
    except GnDeployError as exc:  # a missing file or module: UsageError, as for any input
        raise type(exc)(f"{what} {ref!r}: {exc}") from exc
    except SystemExit as exc:  # user code that exits while being imported
        raise GnDeployError(
            f"{what} {ref!r}: importing {module_name!r} called sys.exit({exc.code!r})"
        ) from exc
    except Exception as exc:  # any import-time failure in user code
        raise GnDeployError(f"{what} {ref!r}: cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{what} {ref!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _private_name(path: Path) -> str:
    return f"_gn_deploy_user_model.{path.stem}"


def _import(module_name: str) -> Any:
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        # A private module name: a user's onnx.py or torch.py must not replace the real one.
        name = _private_name(path)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        named = exc.name is not None and (module_name + ".").startswith(exc.name + ".")
        error = UsageError if named else GnDeployError  # the module asked for, or one it imports
        raise error(f"no module named {exc.name!r}") from exc


def load_factory(ref: str) -> Callable[[], Any]:
    factory = load_reference(ref)
    if not callable(factory):
        raise GnDeployError(f"--model {ref!r}: {type(factory).__name__} is not callable")
    return factory


def _module_file(module: Any) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file and Path(file).is_file() else None


def source_files(ref: str | None, obj: object) -> list[Path]:
    """The files a loaded model came from: the ``--model`` reference's module, the module that
    defines ``obj``'s class, and every loaded module in those modules' folders (the user's
    package beside them). Call after the model was loaded."""
    modules = [sys.modules.get(type(obj).__module__)]
    if ref is not None:
        module_name = ref.partition(":")[0]
        modules.append(sys.modules.get(module_name))
        if module_name.endswith(".py"):
            modules.append(sys.modules.get(_private_name(Path(module_name))))
    files = [f for f in map(_module_file, modules) if f is not None]
    folders = {f.parent for f in files}
    for module in list(sys.modules.values()):
        file = _module_file(module)
        if file is not None and file not in files and folders & set(file.parents):
            files.append(file)
    return files
