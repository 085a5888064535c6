"""The Python API: names that hold, and the README's Python examples run as written."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from pathlib import Path

import pytest

import gn_deploy

README = Path(__file__).resolve().parents[1] / "README.md"


def test_public_names_are_not_submodules_and_survive_every_import() -> None:
    submodules = {m.name for m in pkgutil.iter_modules(gn_deploy.__path__)}
    public = [name for name in gn_deploy.__all__ if name != "__version__"]
    assert not submodules & set(public)
    for name in sorted(submodules - {"kernel_bench"}):  # kernel_bench wants a CUDA GPU
        importlib.import_module(f"gn_deploy.{name}")
    for name in public:
        assert callable(getattr(gn_deploy, name)), name


def test_dir_lists_the_api() -> None:
    public = {name for name in dir(gn_deploy) if not name.startswith("_")}
    assert public == set(gn_deploy.__all__) - {"__version__"}


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples_of_the_api() -> None:
    text = "\n".join(python_examples())
    for name in gn_deploy.__all__[1:]:
        assert f"gn_deploy.{name}(" in text, name


@pytest.mark.parametrize("code", python_examples())
def test_readme_python_examples_run(
    code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch", reason="the examples export a torch model")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    assert os.listdir(tmp_path)
