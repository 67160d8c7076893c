"""Paths the user gives: ``~`` and ``$VARS`` expanded, output files checked before the work that fills them,
and a rescue copy when a finished model cannot be written where it was asked to go.

Every path argument of learnkit (``Learner(path=)``, ``export``, ``save``, ``load_learner``, the data
constructors...) goes through `expand_path`, as pandas and PyTorch expand ``~``: ``learn.export("~/m.safetensors")``
writes into the home folder, not into a folder named ``~``.

>>> import os
>>> expand_path("~/models/m.safetensors") == Path.home() / "models" / "m.safetensors"
True
>>> os.environ["LK_DOCTEST_RUNS"] = "/srv/runs"
>>> expand_path("$LK_DOCTEST_RUNS/pets/export.safetensors").as_posix()
'/srv/runs/pets/export.safetensors'
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["expand_path", "output_file", "check_output_file", "write_or_rescue", "rescue_folder"]


def expand_path(path: str | os.PathLike) -> Path:
    """``path`` as a `Path`, with a leading ``~`` (or ``~user``) and ``$VAR`` / ``${VAR}`` expanded as a shell
    would (unset variables are left as they are).

    >>> expand_path(Path("data") / "pets")
    PosixPath('data/pets')
    """
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"a path must be a str or a pathlib.Path, got {type(path).__name__}: {path!r}")
    return Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))


def output_file(fname: str | os.PathLike, default_name: str, base: str | os.PathLike | None = None,
                what: str = "the file") -> Path:
    """Where to write ``fname``: expanded (`expand_path`), relative to ``base``. An empty name, or the name of an
    existing folder, becomes ``default_name`` (in ``base``, or in that folder), with a warning saying so, so that
    a finished model is never lost to a bad name.

    >>> import tempfile, warnings
    >>> d = Path(tempfile.mkdtemp())
    >>> output_file("m.safetensors", "export.safetensors", d) == d / "m.safetensors"
    True
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     output_file(d, "export.safetensors", what="the export") == d / "export.safetensors"  # a folder
    True
    >>> print(str(w[0].message).replace(str(d), "DIR"))
    DIR is a folder: writing the export into it as export.safetensors (DIR/export.safetensors)
    """
    text = os.fspath(fname) if isinstance(fname, (str, os.PathLike)) else fname
    if not isinstance(text, str):
        raise TypeError(f"the file name must be a str or a pathlib.Path, got {type(fname).__name__}: {fname!r}")
    base_path = expand_path(base) if base is not None else Path(".")
    if not text.strip():
        path = base_path / default_name
        warnings.warn(f"{what} got an empty file name; writing it to {path}", stacklevel=3)
        return path
    path = expand_path(text)
    if not path.is_absolute():
        path = base_path / path
    if path.is_dir():
        warnings.warn(f"{path} is a folder: writing {what} into it as {default_name} ({path / default_name})",
                      stacklevel=3)
        path = path / default_name
    return path


def check_output_file(path: str | os.PathLike, what: str = "the output") -> Path:
    """Raise before any work is done when ``path`` could not be written: it is a folder, a file is in the way of
    its folder, or the folder (or the nearest one that exists) is not writable. Returns the expanded path.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> check_output_file(d / "new" / "model.safetensors") == d / "new" / "model.safetensors"
    True
    >>> check_output_file(d)
    Traceback (most recent call last):
    ...
    IsADirectoryError: the output .../... is a folder; give a file name, e.g. .../model.safetensors
    """
    path = expand_path(path)
    if not path.name:
        raise ValueError(f"{what} needs a file name, got {os.fspath(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name, e.g. {path / 'model.safetensors'}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} {path} cannot be written: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{what} {path} cannot be written: the folder {folder} is not writable")
    return path


def rescue_folder() -> Path:
    """Where `write_or_rescue` puts a model that could not be written where asked:
    ``$LEARNKIT_RESCUE_DIR``, else ``learnkit-rescued`` in the system's temporary folder.

    >>> rescue_folder().name in ("learnkit-rescued", os.environ.get("LEARNKIT_RESCUE_DIR", "learnkit-rescued"))
    True
    """
    env = os.environ.get("LEARNKIT_RESCUE_DIR")
    return expand_path(env) if env else Path(tempfile.gettempdir()) / "learnkit-rescued"


def write_or_rescue(path: Path, write: Callable[[Path], Any], what: str) -> Path:
    """``write(path)``; if that fails with an ``OSError`` (a read-only folder, a file in the way, a full disk),
    ``write`` a rescue copy into `rescue_folder` and raise the error again, of the same type, saying where the
    rescue copy is. When the rescue fails too, the original error is raised as it was.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> write_or_rescue(d / "notes.txt", lambda p: p.write_text("kept"), "the notes") == d / "notes.txt"
    True
    >>> blocked = d / "notes.txt" / "inside.txt"                      # a file is in the way of the folder
    >>> try:
    ...     write_or_rescue(blocked, lambda p: p.write_text("kept"), "the notes")
    ... except OSError as e:
    ...     rescued = Path(str(e).split("was saved to ")[1].split(" instead")[0])
    >>> rescued.read_text()
    'kept'
    """
    try:
        write(path)
        return path
    except OSError as e:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        rescue = rescue_folder() / f"{path.stem or 'model'}-{stamp}-{os.getpid()}{path.suffix}"
        try:
            rescue.parent.mkdir(parents=True, exist_ok=True)
            write(rescue)
        except Exception:  # noqa: BLE001 - the rescue is best effort; the original error is the one to report
            raise e from None
        base = str(e)
        if base.startswith(f"[Errno {e.errno}] "):
            base = base[len(f"[Errno {e.errno}] "):]
        msg = f"{base}; {what} was saved to {rescue} instead (the file is complete: move it where you want it)"
        try:
            err = type(e)(e.errno, msg) if e.errno is not None else type(e)(msg)
        except TypeError:
            err = OSError(e.errno, msg) if e.errno is not None else OSError(msg)
        raise err from e
