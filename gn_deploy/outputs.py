"""Every file gn-deploy writes goes through here: one guard, one writer.

- The guard refuses an output that is a file some input reads (a model, its external data) or
  another output of the same command, naming the option at fault.
- Each output is written whole to a hidden staging file beside its target
  (``.gn-deploy-stage-<pid>-...``) and renamed into place only once every output of the command
  is staged and checked: a command that fails writes nothing. Staging left by a killed process
  of this user is removed the next time a command writes to that folder.
- A replaced file keeps its permissions; a new one gets those the umask gives.
- A model with external data is written with a data file named for this write; the model is
  renamed last and the data it replaced is removed afterwards, so the model's path always names
  the old pair or the new pair, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import onnx
import onnx_ir as ir

from gn_deploy.errors import GnDeployError, UsageError

STAGE_PREFIX = ".gn-deploy-stage-"


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def external_data_files(model_path: str | os.PathLike[str]) -> list[Path]:
    """The files an ONNX model's external tensors name (resolved beside the model)."""
    path = Path(model_path)
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # not a readable model: it names no data of ours
        return []
    return proto_data_files(proto, path.parent)


def proto_data_files(proto: onnx.ModelProto, base: Path) -> list[Path]:
    files: list[Path] = []
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in tensor.external_data}
            location = entry.get("location")
            if location and base / location not in files:
                files.append(base / location)
    return files


def inputs_of(path: Path, data_files: Iterable[Path] | None = None) -> list[tuple[Path, str]]:
    """A model file and its external data files, with the role each plays, for :func:`guard`.

    ``data_files`` defaults to what the file names (:func:`external_data_files`).
    """
    files = external_data_files(path) if data_files is None else data_files
    return [(path, "the input model"), *((f, "the input's external data") for f in files)]


def model_files(model: ir.Model, path: Path) -> list[Path]:
    """A loaded model's file and the external data files its initializers read."""
    files = [path]
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if isinstance(tensor, ir.ExternalTensor):
            data = Path(tensor.base_dir or path.parent) / tensor.location
            if data not in files:
                files.append(data)
    return files


def guard(writes: Iterable[tuple[Path, str]], reads: Iterable[tuple[Path, str]]) -> None:
    """Refuse any output that is an input's file or another output (UsageError naming both)."""
    reads = list(reads)
    seen: list[tuple[Path, str]] = []
    for path, option in writes:
        try:
            _guard_one(path, option, reads, seen)
        except OSError as exc:  # a name too long, a folder we may not search, ...
            raise UsageError(f"{option} {path}: {exc.strerror or exc}") from exc
        seen.append((path, option))


def _guard_one(
    path: Path, option: str, reads: list[tuple[Path, str]], seen: list[tuple[Path, str]]
) -> None:
    for source, role in reads:
        if _same_file(path, source):
            raise UsageError(f"{option} {path}: is {role}; inputs are never overwritten")
    for other, other_option in seen:
        if _same_file(path, other):
            raise UsageError(f"{option} {path}: is also the file of {other_option}")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory, expected a file path")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {path.parent} does not exist")
    if len(path.name.encode()) > os.pathconf(path.parent, "PC_NAME_MAX"):
        raise UsageError(f"{option} {path}: file name too long")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"{option} {path}: folder {path.parent} is not writable")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: Path) -> None:
    """Remove staging files and folders of this user's processes that no longer run."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if not entry.name.startswith(STAGE_PREFIX):
                continue
            pid_text = entry.name[len(STAGE_PREFIX) :].split("-", 1)[0]
            try:
                stat = entry.lstat()
            except OSError:
                continue
            if not pid_text.isdigit() or stat.st_uid != os.getuid() or _alive(int(pid_text)):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _stage_name() -> str:
    return f"{STAGE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def _describe(exc: OSError, target: Path) -> str:
    reason = exc.strerror or str(exc)
    return f"{target}: cannot write ({reason})"


class Outputs:
    """Stage a command's outputs, then commit them all at once (or none, on any error).

    Use as a context manager; call :meth:`commit` at the end of the ``with`` block.
    """

    def __init__(self, protect: Iterable[Path] = ()) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (staged, target), renamed in this order
        self._dirs: list[Path] = []
        self._remove_after: list[Path] = []
        self._protect = list(protect)  # files never removed (what the inputs read)

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self._discard()

    def _discard(self) -> None:
        for staged, _ in self._staged:
            with contextlib.suppress(OSError):
                staged.unlink()
        for folder in self._dirs:
            shutil.rmtree(folder, ignore_errors=True)
        self._staged.clear()
        self._dirs.clear()

    def _temp_file(self, target: Path) -> Path:
        clean_stale(target.parent)
        try:
            fd, name = tempfile.mkstemp(prefix=_stage_name() + "-", dir=target.parent)
        except OSError as exc:
            raise GnDeployError(_describe(exc, target)) from exc
        os.close(fd)
        return Path(name)

    def stage_bytes(self, target: Path, data: bytes | memoryview) -> Path:
        """Write ``data`` to a staging file for ``target``; returns the staging file."""
        staged = self._temp_file(target)
        self._staged.append((staged, target))
        try:
            with open(staged, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise GnDeployError(_describe(exc, target)) from exc
        return staged

    def stage_text(self, target: Path, text: str) -> Path:
        return self.stage_bytes(target, text.encode())

    def stage_model(self, model: ir.Model, target: Path) -> Path:
        """Write ``model`` with its weights in ``<target>.<token>.data``; returns the staged model.

        The data file it replaces (what ``target`` named before) is removed after the commit.
        """
        folder = self.stage_folder(target)
        data_name = f"{target.name}.{secrets.token_hex(4)}.data"
        try:
            ir.save(model, folder / target.name, external_data=data_name)
        except OSError as exc:
            raise GnDeployError(_describe(exc, target)) from exc
        data = folder / data_name
        if data.exists() and data.stat().st_size > 0:  # all tensors small: no data file
            self._staged.append((data, target.parent / data_name))
        self._staged.append((folder / target.name, target))
        self.replaces_model(target)
        return folder / target.name

    def replaces_model(self, target: Path) -> None:
        """``target`` is a model being replaced: after the commit, remove the data files of
        ours (``<target>.*.data`` beside it) that the old model named and the new one does not
        (never one an input reads)."""
        if target.is_file():
            self._remove_after += [
                old
                for old in external_data_files(target)
                if old.parent == target.parent
                and old.name.startswith(target.name + ".")
                and old.name.endswith(".data")
            ]

    def stage_folder(self, target: Path) -> Path:
        """A fresh staging folder beside ``target``, for a writer that makes its own files;
        register them with :meth:`add`."""
        clean_stale(target.parent)
        folder = target.parent / _stage_name()
        try:
            folder.mkdir()
        except OSError as exc:
            raise GnDeployError(_describe(exc, target)) from exc
        self._dirs.append(folder)
        return folder

    def add(self, staged: Path, target: Path) -> None:
        """Commit ``staged`` (a file in a staging folder) to ``target``, after those before."""
        self._staged.append((staged, target))

    def commit(self) -> None:
        """Rename every staged file onto its target, in staging order; clean up.

        If a rename fails, the files this commit created under new names are removed again, so
        that nothing half-written stays behind (a replaced target keeps its old content).
        """
        umask_mode = _umask_mode()
        new_names = {target for _, target in self._staged}
        created: list[Path] = []
        try:
            for staged, target in self._staged:
                existed = target.exists()
                os.chmod(staged, target.stat().st_mode & 0o7777 if existed else umask_mode)
                os.replace(staged, target)
                if not existed:
                    created.append(target)
        except OSError as exc:
            for path in created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise GnDeployError(_describe(exc, target)) from exc
        self._staged.clear()
        for old in self._remove_after:
            if old not in new_names and not any(_same_file(old, p) for p in self._protect):
                with contextlib.suppress(OSError):
                    old.unlink()
        self._discard()


def write_file(target: Path, data: bytes | memoryview | str) -> Path:
    """Write one output whole (staged, then renamed into place)."""
    with Outputs() as outputs:
        outputs.stage_bytes(target, data.encode() if isinstance(data, str) else data)
        outputs.commit()
    return target
